"""Does the spin loop's speed depend on what the code around it holds, in a dtq worker
and in a Pool child?

The same loop reached four ways (the "call sites"):

    direct   the loop called straight away
    held     called after a getrusage whose record stays alive through the loop
    dropped  called after the same getrusage, its record dropped first
    timed    through timed_spin (a getrusage and a clock read before it, one more frame)

dtq side: fresh supervisors (2 workers each), the four call sites taking turns in
batches of 8 jobs of one plugin (the job's data names the site); a job's figure is the
wall time its worker records. Pool side: fresh
Pool(2)s mapping the four functions in turn, timed per batch. Printed: each call
site's time against ``held``, per worker (dtq) or per pool, and their medians.

    .venv/bin/python scripts/cpu_callsite.py [--supervisors 6] [--pools 6] [--batches 3]

On the tenth session's Intel Xeon VM (defaults, 12 workers and 6 pools): in the workers
direct 1.024 (range 1.019-1.032), dropped 1.020 and timed 1.001 of held; in Pool
children 1.005, 1.001 and 1.002. Holding one record moves where the loop's short-lived
ints land in the allocator; a worker's loop felt that by ~2 %, a Pool child's hardly.
Runs its own redis-server; ~2.5 minutes.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dtq.plugin import JobContext, Plugin  # noqa: E402
from scripts.bench.spin import calibrate, spin, timed_spin  # noqa: E402
from scripts.bench_supervisor import PrivateRedis  # noqa: E402

SITES = ("direct", "held", "dropped", "timed")
BATCH = 8


def direct(n: int) -> int:
    return spin(n)


def held(n: int) -> int:
    record = resource.getrusage(resource.RUSAGE_SELF)
    return spin(n) + len(record)


def dropped(n: int) -> int:
    resource.getrusage(resource.RUSAGE_SELF)
    return spin(n)


def timed(n: int) -> int:
    timed_spin(n)
    return 0


FUNCTIONS = {"direct": direct, "held": held, "dropped": dropped, "timed": timed}


class CallSite(Plugin):
    """Runs the loop through the call site named by the job's data."""

    name = "callsite"

    def process(self, data: Any, ctx: JobContext) -> Any:
        return {"r": FUNCTIONS[data["site"]](int(data["iterations"])), "pid": os.getpid()}


def _against_held(row: dict[str, float]) -> str:
    return ", ".join(f"{site} {row[site] / row['held']:.3f}" for site in SITES)


def _report(label: str, rows: list[dict[str, float]]) -> None:
    for site in SITES:
        ratios = sorted(row[site] / row["held"] for row in rows)
        print(f"  {label} {site:8}/held: median {statistics.median(ratios):.3f} "
              f"(range {ratios[0]:.3f}-{ratios[-1]:.3f})")


def in_workers(supervisors: int, batches: int, iterations: int) -> list[dict[str, float]]:
    """Per worker, the median job wall time of each call site."""
    redis = PrivateRedis()
    os.environ["BENCH_REDIS_URL"] = redis.url
    os.environ["BENCH_DTQ_ARGS"] = "--plugin scripts.cpu_callsite:CallSite"
    from scripts.bench import dtq_side as side

    rows = []
    try:
        for k in range(supervisors):
            queue = side._queue(f"callsite-{k}")
            sup = side._supervisor(f"callsite-{k}", burst=False, queue=f"callsite-{k}")
            walls: dict[int, dict[str, list[float]]] = {}
            try:
                side._warm_up(queue, sup)
                for b in range(batches):
                    for site in (SITES if b % 2 == 0 else SITES[::-1]):
                        data = {"site": site, "iterations": iterations}
                        job = {"job": {"plugin": "callsite", "data": data}}
                        for job_id in queue.enqueue_many([job] * BATCH):
                            status = queue.wait(job_id, 120)
                            if status.state != "done":
                                raise RuntimeError(f"job {job_id} ended {status.state}: {status.error}")
                            per_site = walls.setdefault(status.result["pid"], {s: [] for s in SITES})
                            per_site[site].append(float(status.history[-1]["wall"]))
            finally:
                sup.stop()
            for pid, per_site in walls.items():
                if all(per_site.values()):
                    rows.append({site: statistics.median(v) for site, v in per_site.items()})
                    print(f"supervisor {k} worker {pid}: " + _against_held(rows[-1]), file=sys.stderr,
                          flush=True)
    finally:
        redis.stop()
    return rows


def in_pools(pools: int, batches: int, iterations: int) -> list[dict[str, float]]:
    """Per fresh Pool(2), the median batch wall time of each call site."""
    rows = []
    for p in range(pools):
        times: dict[str, list[float]] = {s: [] for s in SITES}
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.map(spin, [1000] * 4)  # both children started
            for b in range(batches):
                for site in (SITES if b % 2 == 0 else SITES[::-1]):
                    start = time.perf_counter()
                    pool.map(FUNCTIONS[site], [iterations] * BATCH, chunksize=1)
                    times[site].append(time.perf_counter() - start)
        rows.append({site: statistics.median(v) for site, v in times.items()})
        print(f"pool {p}: " + _against_held(rows[-1]), file=sys.stderr, flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--supervisors", type=int, default=6)
    parser.add_argument("--pools", type=int, default=6)
    parser.add_argument("--batches", type=int, default=3, help="batches of 8 jobs per call site")
    parser.add_argument("--seconds", type=float, default=0.25, help="one loop, calibrated")
    args = parser.parse_args()
    iterations = calibrate(args.seconds)
    workers = in_workers(args.supervisors, args.batches, iterations)
    pools = in_pools(args.pools, args.batches, iterations)
    print(f"{iterations:,} iterations per loop; each call site against 'held':")
    _report("dtq workers", workers)
    _report("Pool(2)    ", pools)
    return 0


if __name__ == "__main__":
    sys.exit(main())
