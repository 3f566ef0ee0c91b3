"""Engine throughput against a private local redis-server: bulk enqueue, and claim+complete.

    .venv/bin/python scripts/bench_engine.py [--jobs 100000] [--batch 500] [--runs 5]

bulk enqueue: Queue.enqueue_many of N small jobs (validation included), jobs/s.
claim+complete: one holder claims `batch` jobs and completes them in one call,
until the queue is empty, jobs/s; each completion carries an attempt record as
the supervisor formats it (JSON text built once per job). Each figure is the median of --runs runs; the
server is flushed between runs. Nothing else is measured (no workers, no fork).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from redis_server import RedisServer  # noqa: E402

from dtq import Queue  # noqa: E402
from dtq.engine.base import Outcome  # noqa: E402
from dtq.engine.redis_engine import RedisEngine  # noqa: E402


def bench_enqueue(url: str, jobs: int) -> float:
    queue = Queue(url, queue="bench")
    envelopes = [{"job": {"plugin": "noop", "data": {"i": i}}} for i in range(jobs)]
    t0 = time.perf_counter()
    queue.enqueue_many(envelopes)
    return jobs / (time.perf_counter() - t0)


def bench_claim_complete(url: str, jobs: int, batch: int) -> float:
    engine = RedisEngine(url)
    done = 0
    t0 = time.perf_counter()
    while True:
        claimed = engine.claim("bench", "bench-holder", batch, 60.0).jobs
        if not claimed:
            break
        now = time.time()
        outcomes = [Outcome(j, "done", "null", record=(  # the record as the supervisor sends it
            f'{{"attempt":{j.attempt},"holder":"bench-holder","started_at":{now!r},'
            f'"finished_at":{now!r},"wall":0.0001,"cpu":0.0001,"peak_rss":0}}'))
                    for j in claimed]
        done += engine.finish("bench-holder", outcomes).count("done")
    elapsed = time.perf_counter() - t0
    assert done == jobs, f"completed {done} of {jobs}"
    return jobs / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}")
    print(f"command: {' '.join(sys.argv)}")
    server = RedisServer().start()
    enqueue, claim = [], []
    try:
        for _ in range(args.runs):
            server.client().flushall()
            enqueue.append(bench_enqueue(server.url, args.jobs))
            claim.append(bench_claim_complete(server.url, args.jobs, args.batch))
    finally:
        server.cleanup()
    print(f"bulk enqueue:            {statistics.median(enqueue):>9,.0f} jobs/s  "
          f"(runs: {', '.join(f'{x:,.0f}' for x in enqueue)})")
    print(f"claim+complete (x{args.batch}): {statistics.median(claim):>9,.0f} jobs/s  "
          f"(runs: {', '.join(f'{x:,.0f}' for x in claim)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
