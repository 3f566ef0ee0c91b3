"""Does dtq's Worker itself, with no supervisor, Redis or other process around it, make a
plugin's pure-Python loop slower than the same loop in a plain process?

Each round starts a fresh parent interpreter (a new address-layout draw, see
scripts/layout_aa.py) that forks two children at once, one per mode, both spinning
side by side on the two CPUs; so both children share the parent's draw and the
machine's moment. The ratio is that of the two children's median loop user CPU,
first two loops left out (both modes speed up over their first loops). Modes:

    plain    calls the spin loop (timed_spin) in a loop
    plugin   calls the TimedSpin plugin's process() in a loop
    worker   a dtq Worker.serve() fed all its jobs at once through a pipe (a
             supervisor sends long jobs one at a time; no supervisor runs here),
             writing its outcome frames to the parent

    .venv/bin/python scripts/worker_pair.py [--rounds 36] [--loops 10] [--modes plain,worker]

On the ninth session's AMD EPYC VM, 36 rounds each: worker/plain 1.017, 1.034 and 1.091
(1.051 and 1.056 over 24 rounds in an earlier form), plugin/plain 1.001. Single rounds spread 0.8-1.2: the
two CPUs are not equally fast at the same moment, so only medians of many rounds say
anything. ~4 s per round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench.spin import calibrate  # noqa: E402

_PARENT = f"""
import json, os, sys
sys.path.insert(0, {str(ROOT)!r})
from dtq.plugin_loader import load_plugins
from dtq.supervisor.messages import FrameReader, encode_job
from dtq.supervisor.worker import Worker
from scripts.bench.spin import timed_spin

n, loops, modes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
plugins = load_plugins(["scripts.bench.dtq_plugins:TimedSpin"], entry_point_group=None)


def run(mode, out_fd):
    if mode == "plain":
        os.write(out_fd, json.dumps([timed_spin(n)["user"] for _ in range(loops)]).encode())
    elif mode == "plugin":
        spin = plugins["timed_spin"]
        os.write(out_fd, json.dumps([spin.process({{"iterations": n}}, None)["user"]
                                     for _ in range(loops)]).encode())
    else:
        jobs_r, jobs_w = os.pipe()
        os.write(jobs_w, b"".join(encode_job(f"j{{i}}", "q", 1, "timed_spin",
                                             json.dumps({{"iterations": n}}), None, None)
                                  for i in range(loops)))
        os.close(jobs_w)
        Worker(jobs_r, out_fd, plugins).serve()


def loop_times(mode, data):
    if mode != "worker":
        return json.loads(data)
    return [json.loads(m["r"])["user"] for m in FrameReader().feed(data) if m.get("t") == "ok"]


children = {{}}
for mode in modes:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        run(mode, w)
        os._exit(0)
    os.close(w)
    children[mode] = (pid, r)
got = {{}}
for mode, (pid, r) in children.items():
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.waitpid(pid, 0)
    got[mode] = loop_times(mode, data)
print(json.dumps(got))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=36)
    parser.add_argument("--loops", type=int, default=10, help="spins per child")
    parser.add_argument("--modes", default="plain,worker", help="two of plain, plugin, worker")
    parser.add_argument("--seconds", type=float, default=0.15, help="one loop, calibrated")
    args = parser.parse_args()
    base, other = args.modes.split(",")
    if base == other or not {base, other} <= {"plain", "plugin", "worker"}:
        parser.error("--modes takes two different modes of plain, plugin, worker")
    iterations = calibrate(args.seconds)
    ratios = []
    for rnd in range(args.rounds):
        order = (base, other) if rnd % 2 == 0 else (other, base)  # which child forks first
        out = subprocess.run([sys.executable, "-c", _PARENT, str(iterations), str(args.loops), *order],
                             capture_output=True, text=True, cwd=ROOT, timeout=300, check=True)
        got = json.loads(out.stdout)
        ratios.append(statistics.median(got[other][2:]) / statistics.median(got[base][2:]))
        print(f"round {rnd + 1}: {other}/{base} {ratios[-1]:.3f}", file=sys.stderr, flush=True)
    ratios.sort()
    print(f"{args.rounds} rounds, {args.loops} spins of {iterations:,} iterations per child: loop user "
          f"CPU {other}/{base} median {statistics.median(ratios):.3f} "
          f"(range {ratios[0]:.3f}-{ratios[-1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
