"""Does dtq's Worker itself, with no supervisor, Redis or other process around it, make a
plugin's pure-Python loop slower than the same loop in a plain process or a Pool child?

Each round starts a fresh parent interpreter (a new address-layout draw, see
scripts/layout_aa.py) that forks two children at once, one per mode, both spinning
side by side on the two CPUs; so both children share the parent's draw and the
machine's moment. The ratio is that of the two children's median loop user CPU,
first two loops left out (every mode speeds up over its first loops). Modes:

    plain    calls the spin loop (timed_spin) in a loop
    plugin   calls the TimedSpin plugin's process() in a loop
    worker   a dtq Worker.serve() fed all its jobs at once through a pipe, writing its
             outcome frames to the parent
    fed      a dtq Worker forked by the child, which feeds it one job at a time and
             waits for each outcome, as a supervisor feeds a worker long jobs
    pool     a multiprocessing Pool(1) forked by the child, all tasks mapped at once
    pool-fed the same Pool(1), given one task at a time (apply), each after the last result

    .venv/bin/python scripts/worker_pair.py [--rounds 96] [--loops 10] [--modes pool,fed]

On the ninth session's AMD EPYC VM, 96 rounds each: worker/pool 1.005, plain/pool
0.995, pool-fed/pool 1.026, fed/pool-fed 1.000, fed/pool 1.036. dtq's worker runs the
loop as fast as a Pool child fed the same way; being handed one job at a time costs
~2.5 % whoever does the handing. Single rounds spread 0.7-1.5 (the two CPUs are not
equally fast at the same moment): use 96 rounds, ~1.5 s each.
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

MODES = ("plain", "plugin", "worker", "fed", "pool", "pool-fed")

_PARENT = f"""
import json, multiprocessing, os, sys
sys.path.insert(0, {str(ROOT)!r})
from dtq.plugin_loader import load_plugins
from dtq.supervisor.messages import FrameReader, encode_job
from dtq.supervisor.worker import Worker
from scripts.bench.spin import timed_spin

n, loops, modes = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
plugins = load_plugins(["scripts.bench.dtq_plugins:TimedSpin"], entry_point_group=None)


def jobs(count):
    return b"".join(encode_job(f"j{{i}}", "q", 1, "timed_spin", json.dumps({{"iterations": n}}), None, None)
                    for i in range(count))


def outcomes(data, reader=None):  # a reader of its own keeps a frame split across reads
    return [json.loads(m["r"])["user"] for m in (reader or FrameReader()).feed(data) if m.get("t") == "ok"]


def fed():  # a worker of this process's own, fed one job at a time: this process supervises it
    jobs_r, jobs_w = os.pipe()
    up_r, up_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(jobs_w)
        os.close(up_r)
        Worker(jobs_r, up_w, plugins).serve()
    os.close(jobs_r)
    os.close(up_w)
    reader, times = FrameReader(), []
    for _ in range(loops):
        os.write(jobs_w, jobs(1))
        want = len(times) + 1
        while len(times) < want:
            times += outcomes(os.read(up_r, 1 << 16), reader)
    os.close(jobs_w)
    os.waitpid(pid, 0)
    return times


def run(mode, out_fd):
    if mode == "plain":
        times = [timed_spin(n)["user"] for _ in range(loops)]
    elif mode == "plugin":
        spin = plugins["timed_spin"]
        times = [spin.process({{"iterations": n}}, None)["user"] for _ in range(loops)]
    elif mode == "fed":
        times = fed()
    elif mode == "pool":
        with multiprocessing.get_context("fork").Pool(1) as pool:
            times = [r["user"] for r in pool.map(timed_spin, [n] * loops, chunksize=1)]
    elif mode == "pool-fed":
        with multiprocessing.get_context("fork").Pool(1) as pool:
            times = [pool.apply(timed_spin, (n,))["user"] for _ in range(loops)]
    else:
        jobs_r, jobs_w = os.pipe()
        os.write(jobs_w, jobs(loops))
        os.close(jobs_w)
        Worker(jobs_r, out_fd, plugins).serve()
    os.write(out_fd, json.dumps(times).encode())


def loop_times(mode, data):
    return outcomes(data) if mode == "worker" else json.loads(data)


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
    parser.add_argument("--rounds", type=int, default=96)
    parser.add_argument("--loops", type=int, default=10, help="spins per child")
    parser.add_argument("--modes", default="pool,fed", help="two of " + ", ".join(MODES))
    parser.add_argument("--seconds", type=float, default=0.15, help="one loop, calibrated")
    args = parser.parse_args()
    base, other = args.modes.split(",")
    if base == other or not {base, other} <= set(MODES):
        parser.error("--modes takes two different modes of " + ", ".join(MODES))
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
