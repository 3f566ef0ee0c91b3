"""Does the spin loop run slower in a dtq worker than in a Pool child because of the
process it runs in, or because of what runs beside it?

Each round starts every variant afresh (new interpreters, so a new address-layout
draw each time, see scripts/layout_aa.py), one variant at a time, in alternating
order, and records the median loop user CPU of its spins (each timed inside the
process that runs it). Printed: each variant's median, and the median of its
round-by-round ratios to the first variant. Variants:

    pool      a Pool(1) child            pool2     a Pool(2), both children spinning
    bare      a child forked by a bare interpreter
    imports   the same, its parent having imported what the supervisor imports
    dtq       `dtq supervise --burst --workers 1`
    dtq2      `dtq supervise --burst --workers 2`, both workers spinning
    dtq2w     the same after 10 no-op jobs, as the benchmark warms a supervisor up

    .venv/bin/python scripts/cpu_variants.py [--rounds 12] [--cpus 1] [--variants pool,dtq,bare]
                                             [--loops 3] [--seconds 0.2]

With --cpus 1 (the default) everything runs on CPU 1 alone: the loop's own speed in
each kind of process. With --cpus 0,1 and the two-process variants the loops share the
machine as in the benchmark. Runs its own redis-server; ~5 s per variant and round.

On the ninth session's AMD EPYC VM: alone on one CPU (30 rounds) a dtq worker ran the
loop at 1.015 of a Pool(1) child, a bare forked child at 1.058; on both CPUs dtq2 ran at
1.022 of pool2 with 3 spins per worker (30 rounds) and at 1.071 with --loops 20 (12
rounds). The gap grows with the jobs a worker runs (docs/benchmarks.md, ninth session).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench.spin import calibrate  # noqa: E402
from scripts.bench_supervisor import PrivateRedis  # noqa: E402

VARIANTS = ("pool", "pool2", "bare", "imports", "dtq", "dtq2", "dtq2w")
_SUPERVISOR_IMPORTS = ("import dtq.cli.main, dtq.cli.supervise, dtq.supervisor.supervisor, "
                       "dtq.engine.redis_engine, psutil, redis, scripts.bench.dtq_plugins")

_FORKED_CHILD = f"""
import json, os, sys
sys.path.insert(0, {str(ROOT)!r})
IMPORTS
from scripts.bench.spin import timed_spin
n = int(sys.argv[1])
r, w = os.pipe()
if os.fork() == 0:
    os.write(w, json.dumps([timed_spin(n)["user"] for _ in range(int(sys.argv[2]))]).encode())
    os._exit(0)
os.close(w)
print(os.read(r, 65536).decode())
os.wait()
"""

_POOL = f"""
import json, multiprocessing, sys
sys.path.insert(0, {str(ROOT)!r})
from scripts.bench.spin import timed_spin
n, loops, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with multiprocessing.get_context("fork").Pool(k) as pool:
    print(json.dumps([r["user"] for r in pool.map(timed_spin, [n] * (loops * k), chunksize=1)]))
"""


class Variants:
    def __init__(self, cpus: str, iterations: int, loops: int, redis_url: str) -> None:
        from dtq import Queue

        self.cpus, self.n, self.loops, self.url = cpus, iterations, loops, redis_url
        self.queue = Queue(redis_url, queue="variants")

    def _python(self, code: str, *args: object) -> list[float]:
        argv = ["taskset", "-c", self.cpus, sys.executable, "-c", code, str(self.n), str(self.loops),
                *map(str, args)]
        out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=300, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def _dtq(self, workers: int, noops: int = 0) -> list[float]:
        if noops:
            self.queue.enqueue_many([{"job": {"plugin": "noop", "data": {}}}] * noops)
        ids = self.queue.enqueue_many([{"job": {"plugin": "timed_spin", "data": {"iterations": self.n}}}]
                                      * (self.loops * workers))
        subprocess.run(["taskset", "-c", self.cpus, sys.executable, "-m", "dtq", "--log-level", "warning",
                        "--redis-url", self.url, "supervise", "--workers", str(workers), "--queues",
                        "variants", "--no-entry-points", "--plugin",
                        "scripts.bench.dtq_plugins:TimedSpin", "--plugin", "scripts.bench.dtq_plugins:Noop",
                        "--burst"],
                       cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300, check=True)
        return [self.queue.result(job_id, timeout=10)["user"] for job_id in ids]

    def run(self, name: str) -> float:
        got = {"pool": lambda: self._python(_POOL, 1),
               "pool2": lambda: self._python(_POOL, 2),
               "bare": lambda: self._python(_FORKED_CHILD.replace("IMPORTS", "")),
               "imports": lambda: self._python(_FORKED_CHILD.replace("IMPORTS", _SUPERVISOR_IMPORTS)),
               "dtq": lambda: self._dtq(1),
               "dtq2": lambda: self._dtq(2),
               "dtq2w": lambda: self._dtq(2, noops=10)}[name]()
        return statistics.median(got)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--cpus", default="1", help="taskset CPU list for every variant")
    parser.add_argument("--variants", default="pool,dtq,bare,imports")
    parser.add_argument("--seconds", type=float, default=0.2, help="one loop, calibrated")
    parser.add_argument("--loops", type=int, default=3, help="spins per worker or child")
    args = parser.parse_args()
    names = args.variants.split(",")
    if unknown := sorted(set(names) - set(VARIANTS)):
        parser.error(f"unknown variants {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    redis = PrivateRedis()
    try:
        variants = Variants(args.cpus, calibrate(args.seconds), args.loops, redis.url)
        loops: dict[str, list[float]] = {name: [] for name in names}
        for rnd in range(args.rounds):
            for name in (names if rnd % 2 == 0 else names[::-1]):
                loops[name].append(variants.run(name))
            print(f"round {rnd + 1}: " + ", ".join(f"{n} {loops[n][-1]:.3f} s" for n in names),
                  file=sys.stderr, flush=True)
    finally:
        redis.stop()
    base = names[0]
    print(f"{args.rounds} rounds on CPUs {args.cpus}, {args.loops} spins per worker or child; median "
          "loop user CPU:")
    for name in names:
        ratios = sorted(a / b for a, b in zip(loops[name], loops[base], strict=True))
        print(f"  {name:8} median {statistics.median(loops[name]):.4f} s, against {base}: median "
              f"{statistics.median(ratios):.3f} (range {ratios[0]:.3f}-{ratios[-1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
