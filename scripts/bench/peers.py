"""Measurements of one peer (Celery, RQ, Dramatiq, Huey), run in the peers' venv.

Every peer module exposes the same hooks (worker_argv, enqueue_noop,
enqueue_stamp, DRAIN_SCALE, BULK_API), so each measurement is written once.
"""

from __future__ import annotations

import importlib
import os
import random
import sys
import time
from pathlib import Path

import redis

from scripts.bench.common import ROOT, drain_timeout, log_path, percentile, time_completions
from scripts.bench.peer_common import DONE_KEY, STARTS_KEY
from scripts.bench.procs import Group

WARMUP_JOBS = 10


def _peer(tool: str):
    return importlib.import_module(f"scripts.bench.peer_{tool}")


def _client() -> redis.Redis:
    return redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])


def _start_worker(tool: str, what: str) -> Group:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = _peer(tool).worker_argv(Path(sys.executable).parent)
    return Group(argv, log_path(tool, what), cwd=ROOT, env=env)


def _alive_check(worker: Group):
    def alive() -> None:
        if worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited {worker.proc.returncode}: {worker.log_tail()}")
    return alive


def drain(tool: str, jobs: int) -> dict:
    """Enqueue n no-op jobs with no worker running, then time the worker draining them."""
    peer, client = _peer(tool), _client()
    n = max(100, jobs // peer.DRAIN_SCALE)
    client.flushall()
    peer.enqueue_noop(n)
    worker = _start_worker(tool, "drain")
    try:
        def count() -> int:
            return int(client.get(DONE_KEY) or 0)
        result = time_completions(count, n, _alive_check(worker), 60.0, drain_timeout(n))
    finally:
        worker.stop()
    client.flushall()
    return result


def _one_latency(peer, client: redis.Redis, timeout: float) -> float:
    t0 = time.time()
    peer.enqueue_stamp()
    popped = client.blpop([STARTS_KEY], timeout=timeout)
    if popped is None:
        raise TimeoutError(f"stamp job did not start within {timeout:.0f} s")
    return float(popped[1]) - t0


def latency(tool: str, samples: int) -> dict:
    """Enqueue-to-start latency of single jobs on an idle, warmed-up pool."""
    peer, client = _peer(tool), _client()
    client.flushall()
    worker = _start_worker(tool, "latency")
    try:
        _one_latency(peer, client, 60.0)
        for _ in range(WARMUP_JOBS):
            _one_latency(peer, client, 10.0)
        values = []
        for _ in range(samples):
            time.sleep(random.uniform(0.005, 0.02))
            values.append(_one_latency(peer, client, 10.0))
    finally:
        worker.stop()
    client.flushall()
    return {"p50_ms": percentile(values, 50) * 1e3, "p99_ms": percentile(values, 99) * 1e3}


def bulk(tool: str, jobs: int) -> dict:
    """Rate of enqueueing n jobs with the tool's bulk (or best looped) API, no worker."""
    peer, client = _peer(tool), _client()
    client.flushall()
    start = time.perf_counter()
    peer.enqueue_noop(jobs)
    elapsed = time.perf_counter() - start
    client.flushall()
    return {"jobs_per_s": jobs / elapsed, "jobs": jobs, "api": peer.BULK_API}


MEASURES = {"drain": drain, "latency": latency, "bulk": bulk}
