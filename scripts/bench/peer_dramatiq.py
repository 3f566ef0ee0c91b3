"""Dramatiq actors and driver hooks: Redis broker, 2 processes x 1 thread."""

from __future__ import annotations

from pathlib import Path

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from scripts.bench.peer_common import QUEUE, REDIS_URL, record_done, record_start

dramatiq.set_broker(RedisBroker(url=REDIS_URL))

DRAIN_SCALE = 1
BULK_API = "actor.send in a loop (no bulk API)"


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def noop(i=0):
    record_done()


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def stamp(i=0):
    record_start()


def worker_argv(bin_dir: Path) -> list[str]:
    return [
        str(bin_dir / "dramatiq"), "scripts.bench.peer_dramatiq",
        "--processes", "2", "--threads", "1", "--queues", QUEUE,
    ]


def enqueue_noop(n: int) -> None:
    for i in range(n):
        noop.send(i)


def enqueue_stamp() -> None:
    stamp.send()
