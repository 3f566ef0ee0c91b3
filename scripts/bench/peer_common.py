"""What every peer's tasks share: a per-process Redis client and the two probes.

The no-op task INCRs a counter (how the driver counts completions); the stamp
task pushes time.time() at its start (how the driver measures latency).
The client is created lazily per pid so that no connection crosses a fork.
"""

from __future__ import annotations

import os
import time

import redis

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6399/0")
QUEUE = "bench"
DONE_KEY = "bench:done"
STARTS_KEY = "bench:starts"

_client: tuple[int, redis.Redis] | None = None


def bench_redis() -> redis.Redis:
    """A Redis client owned by the calling process."""
    global _client
    if _client is None or _client[0] != os.getpid():
        _client = (os.getpid(), redis.Redis.from_url(REDIS_URL))
    return _client[1]


def record_done() -> None:
    bench_redis().incr(DONE_KEY)


def record_start() -> None:
    bench_redis().rpush(STARTS_KEY, repr(time.time()))
