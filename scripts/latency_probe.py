"""Where the idle-pool latency goes: the enqueue call, the push to the worker, and
what a round trip to Redis costs on this machine after an idle gap.

    .venv/bin/python scripts/latency_probe.py [--samples 300]

Prints medians (and p10/p90/p99/max) of: a PING after a 5-20 ms gap and back to back; the
enqueue script's own time in Redis (INFO commandstats) with gaps and back to back;
then, with a warmed-up supervisor of 2 workers, the enqueue call, enqueue to the
job's start (what scripts/bench_supervisor.py reports), and the call's return to
the start (negative: the job started before the call returned). Runs its own
redis-server on a free port.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from scripts.bench_supervisor import PrivateRedis  # noqa: E402


def gap() -> None:
    time.sleep(random.uniform(0.005, 0.02))


def show(name: str, seconds: list[float]) -> None:
    v = sorted(seconds)
    print(f"  {name:34} p50 {statistics.median(v) * 1e3:6.3f} ms   p10 {v[len(v) // 10] * 1e3:6.3f}"
          f"   p90 {v[9 * len(v) // 10] * 1e3:6.3f}   p99 {v[99 * len(v) // 100] * 1e3:6.3f}"
          f"   max {v[-1] * 1e3:6.3f}")


def timed(call: Callable[[], object], samples: int, with_gaps: bool) -> list[float]:
    out = []
    for _ in range(samples):
        if with_gaps:
            gap()
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def script_usec(client: redis.Redis, call: Callable[[], object], samples: int, with_gaps: bool) -> float:
    client.config_resetstat()
    timed(call, samples, with_gaps)
    return float(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    server = PrivateRedis()
    os.environ["BENCH_REDIS_URL"] = server.url
    from scripts.bench import dtq_side

    client = redis.Redis.from_url(server.url)
    sup = None
    try:
        print("round trips and the enqueue script, no supervisor running:")
        show("PING after a 5-20 ms gap", timed(client.ping, args.samples, True))
        show("PING back to back", timed(client.ping, args.samples, False))
        q = dtq_side._queue("probe")
        enqueue = lambda: q.enqueue("noop", {})  # noqa: E731
        for with_gaps in (True, False):
            usec = script_usec(client, enqueue, args.samples, with_gaps)
            print(f"  enqueue.lua in Redis, {'after gaps   ' if with_gaps else 'back to back '}"
                  f"       {usec:6.1f} us per call")
        dtq_side._flush()
        print("with an idle, warmed-up supervisor of 2 workers:")
        q = dtq_side._queue()
        sup = dtq_side._supervisor("latency-probe", burst=False)
        dtq_side._warm_up(q, sup)
        call, total, after = [], [], []
        for i in range(args.samples):
            gap()
            t0 = time.time()
            job_id = q.enqueue("noop", {"i": i})
            t1 = time.time()
            started = q.result(job_id, timeout=10.0)["started"]
            call.append(t1 - t0)
            total.append(started - t0)
            after.append(started - t1)
        show("enqueue call", call)
        show("enqueue to job start", total)
        show("call's return to job start", after)
    finally:
        if sup is not None:
            sup.stop()
        client.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
