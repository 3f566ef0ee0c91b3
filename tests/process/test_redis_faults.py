"""Redis going away: the supervisor waits, keeps its jobs running, and delivers later."""

from __future__ import annotations

import time

import pytest
from redis_server import RedisServer, free_port
from supervisor_proc import SupervisorProcess
from waiting import wait_until

from dtq import Queue

pytestmark = pytest.mark.process


@pytest.fixture
def durable_redis():
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always", port=free_port())
    yield server
    server.cleanup()


@pytest.fixture
def supervisors():
    started: list[SupervisorProcess] = []
    yield started
    for sup in started:
        sup.cleanup()


def test_redis_unreachable_at_start_is_waited_for(durable_redis, supervisors):
    sup = SupervisorProcess(durable_redis.url, "--workers", "1", plugins=("Noop",))
    supervisors.append(sup)
    time.sleep(3)
    assert sup.proc.poll() is None, sup.output()
    early = sup.output()
    assert "unreachable" in early and "Traceback" not in early
    assert early.count("unreachable") <= 2  # one line every few seconds, not one per tick
    assert len(sup.worker_pids()) == 1  # the pool is up and does not fork-loop
    durable_redis.start()
    queue = Queue(durable_redis.url)
    assert queue.result(queue.enqueue("noop", {"n": 1}), timeout=20)["echo"] == {"n": 1}
    assert "reachable again" in sup.output()


def test_outcome_of_a_job_that_ends_while_redis_is_down_is_delivered(durable_redis, supervisors):
    durable_redis.start()
    queue = Queue(durable_redis.url)
    job_id = queue.enqueue("sleep", {"seconds": 1.5})
    sup = SupervisorProcess(durable_redis.url, "--workers", "1", "--lease", "30",
                            "--poll", "0.1", plugins=("Sleep",), fast=False)
    supervisors.append(sup)
    wait_until(lambda: queue.status(job_id).state == "running", timeout=10, message="running")
    workers = sup.worker_pids()
    durable_redis.stop()
    time.sleep(2.5)  # the job ends while Redis is away
    assert sup.proc.poll() is None and sup.worker_pids() == workers  # no exit, no fork loop
    durable_redis.start()
    status = queue.wait(job_id, timeout=20)
    assert status.state == "done" and status.attempt == 1
    assert status.result["slept"] == 1.5
    assert "Traceback" not in sup.output()


def test_a_supervisor_started_while_redis_is_down_does_not_recover_its_own_new_claims(
        durable_redis, supervisors):
    durable_redis.start()
    queue = Queue(durable_redis.url)
    ids = [queue.enqueue("sleep", {"seconds": 0.5}) for _ in range(2)]
    durable_redis.stop()
    sup = SupervisorProcess(durable_redis.url, "--workers", "2", "--name", "box-a",
                            plugins=("Sleep",))
    supervisors.append(sup)
    time.sleep(1.5)
    durable_redis.start()
    for job_id in ids:
        status = queue.wait(job_id, timeout=20)
        assert status.state == "done"
        assert status.attempt == 1, status.history  # claimed once, never "recovered" from itself


def test_waiting_for_redis_does_not_spin(durable_redis, supervisors):
    import psutil

    sup = SupervisorProcess(durable_redis.url, "--workers", "1", plugins=("Noop",))
    supervisors.append(sup)
    wait_until(lambda: "unreachable" in sup.output(), timeout=10, message="Redis found missing")
    before = psutil.Process(sup.pid).cpu_times()
    time.sleep(2)
    after = psutil.Process(sup.pid).cpu_times()
    used = (after.user + after.system) - (before.user + before.system)
    assert used < 0.2, f"the supervisor used {used:.2f} s of CPU in 2 s while Redis was away"
