"""Huey tasks and driver hooks: RedisHuey (blocking pop), 2 worker processes."""

from __future__ import annotations

from pathlib import Path

from huey import RedisHuey

from scripts.bench.peer_common import QUEUE, REDIS_URL, record_done, record_start

huey = RedisHuey(QUEUE, url=REDIS_URL)

DRAIN_SCALE = 1
BULK_API = "task() in a loop (no bulk API)"


@huey.task()
def noop(i=0):
    record_done()


@huey.task()
def stamp(i=0):
    record_start()


def worker_argv(bin_dir: Path) -> list[str]:
    return [
        str(bin_dir / "huey_consumer"), "scripts.bench.peer_huey.huey",
        "-k", "process", "-w", "2", "--quiet",
    ]


def enqueue_noop(n: int) -> None:
    for i in range(n):
        noop(i)


def enqueue_stamp() -> None:
    stamp()
