"""RQ tasks and driver hooks: `rq worker-pool -n 2` (a forked work horse per job)."""

from __future__ import annotations

from pathlib import Path

from redis import Redis
from rq import Queue

from scripts.bench.peer_common import QUEUE, REDIS_URL, record_done, record_start

# RQ forks a work horse per job (~75 jobs/s here), so its drain uses N / 20 jobs.
DRAIN_SCALE = 20
BULK_API = "Queue.enqueue_many (one pipeline)"

_queue: Queue | None = None


def noop(i=0):
    record_done()


def stamp(i=0):
    record_start()


def _q() -> Queue:
    global _queue
    if _queue is None:
        _queue = Queue(QUEUE, connection=Redis.from_url(REDIS_URL))
    return _queue


def worker_argv(bin_dir: Path) -> list[str]:
    return [
        str(bin_dir / "rq"), "worker-pool", "-n", "2", "--url", REDIS_URL,
        "--logging-level", "WARNING", QUEUE,
    ]


def enqueue_noop(n: int) -> None:
    jobs = [Queue.prepare_data(noop, (i,), result_ttl=0) for i in range(n)]
    _q().enqueue_many(jobs)


def enqueue_stamp() -> None:
    _q().enqueue(stamp, result_ttl=0)
