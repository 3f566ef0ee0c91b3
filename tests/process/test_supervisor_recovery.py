"""No job is lost when a supervisor dies, stops, or comes back under the same name."""

from __future__ import annotations

import signal
import time

import pytest
from waiting import wait_until

pytestmark = pytest.mark.process


def test_sigkilled_supervisor_jobs_are_recovered_by_another(start_supervisor, queue, tmp_path):
    ledger = tmp_path / "ledger"
    ids = [queue.enqueue("ledger", {"ledger": str(ledger), "seconds": 1.5, "n": i}) for i in range(2)]
    a = start_supervisor("--workers", "2", "--name", "box-a", plugins=("Ledger",))
    wait_until(lambda: queue.stats()["running"] == 2, timeout=10, message="both jobs running")
    a.descendants()
    a.signal(signal.SIGKILL)
    a.wait(5)
    killed_at = time.monotonic()
    # its workers die with it (PDEATHSIG): nothing keeps running the jobs on the dead box
    wait_until(lambda: a.alive_leftovers() == [], timeout=5, message="orphans gone")
    b = start_supervisor("--workers", "2", "--name", "box-b", plugins=("Ledger",))
    for job_id in ids:
        status = queue.wait(job_id, timeout=20)
        assert status.state == "done"
        assert status.history[0]["reason"].startswith("lease expired: supervisor box-a")
    # recovered within lease (1 s) + a recovery interval (0.5 s) + the job (1.5 s) + slack
    assert time.monotonic() - killed_at < 6
    runs = ledger.read_text().split("\n")[:-1]
    assert sorted(r.split()[0] for r in runs) == sorted(ids)  # each ran to the end exactly once
    assert b.proc.poll() is None


def test_restart_under_the_same_name_recovers_at_once(start_supervisor, queue):
    job_id = queue.enqueue("sleep", {"seconds": 0.3})
    a = start_supervisor("--workers", "1", "--name", "box-a", "--lease", "60",
                         plugins=("Sleep",), fast=False)
    wait_until(lambda: queue.stats()["running"] == 1, timeout=10, message="job running")
    a.signal(signal.SIGKILL)
    a.wait(5)
    t0 = time.monotonic()
    start_supervisor("--workers", "1", "--name", "box-a", "--lease", "60", "--poll", "0.1",
                     plugins=("Sleep",), fast=False)
    status = queue.wait(job_id, timeout=20)
    assert status.state == "done"
    assert time.monotonic() - t0 < 10  # far less than the 60 s lease
    assert "box-a restarted" in status.history[0]["reason"]


def test_graceful_stop_lets_running_jobs_finish(start_supervisor, queue):
    job_id = queue.enqueue("sleep", {"seconds": 1.0})
    waiting = queue.enqueue("sleep", {"seconds": 1.0})
    sup = start_supervisor("--workers", "1", "--grace", "20", plugins=("Sleep",))
    wait_until(lambda: queue.status(job_id).state == "running", timeout=10, message="running")
    sup.signal(signal.SIGTERM)
    assert sup.wait(20) == 0
    assert queue.status(job_id).state == "done"
    assert queue.status(waiting).state == "queued"  # never started, left for others
    assert queue.stats()["running"] == 0


def test_grace_over_gives_the_running_job_back(start_supervisor, queue):
    job_id = queue.enqueue("sleep", {"seconds": 100})
    sup = start_supervisor("--workers", "1", "--grace", "0.5", plugins=("Sleep",))
    wait_until(lambda: queue.status(job_id).state == "running", timeout=10, message="running")
    sup.signal(signal.SIGTERM)
    assert sup.wait(15) == 0
    status = queue.status(job_id)
    assert status.state == "queued" and status.failures == 0


def test_second_sigint_stops_at_once_and_gives_back(start_supervisor, queue):
    job_id = queue.enqueue("sleep", {"seconds": 100})
    sup = start_supervisor("--workers", "1", "--grace", "100", plugins=("Sleep",))
    wait_until(lambda: queue.status(job_id).state == "running", timeout=10, message="running")
    sup.signal(signal.SIGINT)
    time.sleep(0.3)
    assert sup.proc.poll() is None  # still draining
    sup.signal(signal.SIGINT)
    assert sup.wait(10) == 0
    assert queue.status(job_id).state == "queued"
    wait_until(lambda: sup.alive_leftovers() == [], timeout=5, message="workers gone")


def test_lease_is_renewed_for_long_jobs(start_supervisor, queue):
    job_id = queue.enqueue("sleep", {"seconds": 3})
    a = start_supervisor("--workers", "1", "--name", "a", plugins=("Sleep",))
    start_supervisor("--workers", "1", "--name", "b", plugins=("Sleep",))
    status = queue.wait(job_id, timeout=20)
    assert status.state == "done" and status.attempt == 1  # never recovered from a live holder
    assert a.proc.poll() is None
