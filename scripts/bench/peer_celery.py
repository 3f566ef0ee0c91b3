"""Celery tasks and driver hooks: prefork pool, Redis broker, no result backend."""

from __future__ import annotations

from pathlib import Path

from celery import Celery

from scripts.bench.peer_common import QUEUE, REDIS_URL, record_done, record_start

app = Celery("bench", broker=REDIS_URL)
app.conf.task_default_queue = QUEUE
app.conf.task_ignore_result = True
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True

DRAIN_SCALE = 1
BULK_API = "apply_async in a loop on one producer"


@app.task(name="bench.noop")
def noop(i=0):
    record_done()


@app.task(name="bench.stamp")
def stamp(i=0):
    record_start()


def worker_argv(bin_dir: Path) -> list[str]:
    return [
        str(bin_dir / "celery"), "-A", "scripts.bench.peer_celery", "worker",
        "--pool", "prefork", "--concurrency", "2", "--queues", QUEUE,
        "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]


def enqueue_noop(n: int) -> None:
    with app.producer_or_acquire() as producer:
        for i in range(n):
            noop.apply_async((i,), producer=producer)


def enqueue_stamp() -> None:
    stamp.apply_async()
