"""Redis that answers but refuses writes for a while (maxmemory reached): the supervisor
keeps the outcomes of jobs that end meanwhile, stays up, and records each once later."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from redis_server import RedisServer, running_server
from supervisor_proc import SupervisorProcess
from waiting import wait_until

from dtq import Queue

pytestmark = pytest.mark.process

JOBS = 3


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """Each test its own server: they change its maxmemory and replication."""
    yield from running_server()


@pytest.fixture
def supervisors() -> Iterator[list[SupervisorProcess]]:
    started: list[SupervisorProcess] = []
    yield started
    for sup in started:
        sup.cleanup()


def test_outcomes_of_jobs_ending_while_redis_is_out_of_memory_are_recorded_later(
        server, supervisors):
    queue = Queue(server.url)
    ids = [queue.enqueue("sleep", {"seconds": 1}) for _ in range(JOBS)]
    sup = SupervisorProcess(server.url, "--workers", str(JOBS), "--lease", "30",
                            "--heartbeat", "0.2", "--poll", "0.1", "--backoff", "0.05",
                            plugins=("Sleep",), fast=False)
    supervisors.append(sup)
    wait_until(lambda: all(queue.status(i).state == "running" for i in ids), timeout=15,
               message="every job running")
    admin = server.client()
    try:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)
        time.sleep(2)  # the jobs end while every write is refused
        assert sup.proc.poll() is None, sup.output()
        assert [queue.status(i).state for i in ids] == ["running"] * JOBS  # nothing recorded yet
        assert "refuses commands: OOM" in sup.output()
        admin.config_set("maxmemory", 0)
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
    for job_id in ids:
        status = queue.wait(job_id, timeout=20)
        assert status.state == "done", (status, sup.output()[-3000:])
        assert status.attempt == 1 and len(status.history) == 1, status.history
    assert queue.stats()["done"] == JOBS
    assert sup.proc.poll() is None
    assert "Traceback" not in sup.output()
