"""Pool sizing, supervisor-wide timeouts, memory of a job's children, and a pool that keeps
serving while one of its workers is killed."""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager

import psutil
import pytest
from supervisor_proc import running
from waiting import wait_until

from dtq import JobFailed

pytestmark = [pytest.mark.process, pytest.mark.timeout(60)]


@contextmanager
def affinity(cores: set[int]):
    """Run the block on ``cores`` only: a process started in it inherits them."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def registered_workers(queue, name: str) -> int | None:
    """The pool size the supervisor ``name`` announces in the registry (None: not there yet)."""
    return next((s.workers for s in queue.engine.supervisors() if s.name == name), None)


def steady(predicate, checks: int = 10, interval: float = 0.05) -> bool:
    """Whether ``predicate`` holds on every one of ``checks`` looks (it must not drift)."""
    for _ in range(checks):
        if not predicate():
            return False
        time.sleep(interval)
    return True


def failed_attempt(queue, job_id: str, timeout: float = 15) -> tuple[str, dict]:
    """The reason and the record of a single-attempt job that must fail."""
    with pytest.raises(JobFailed) as err:
        queue.result(job_id, timeout=timeout)
    (attempt,) = queue.status(job_id).history
    return err.value.reason, attempt


# --- 1. --workers auto -----------------------------------------------------------------------
@pytest.mark.parametrize("restrict", [False, True], ids=["all-cores", "one-core"])
def test_workers_auto_starts_one_worker_per_usable_core(start_supervisor, queue, restrict):
    cores = os.sched_getaffinity(0)
    allowed = {min(cores)} if restrict else cores
    name = f"box-auto-{len(allowed)}"
    with affinity(allowed):  # the supervisor inherits the affinity: "auto" must honour it
        sup = start_supervisor("--workers", "auto", "--name", name)
    expected = len(allowed)
    wait_until(lambda: registered_workers(queue, name) == expected, timeout=10,
               message=f"registry shows {expected} workers")
    wait_until(lambda: len(sup.worker_pids()) == expected, timeout=10,
               message=f"{expected} worker processes")
    assert steady(lambda: len(sup.worker_pids()) == expected), sup.worker_pids()
    assert f"starting: {expected} workers" in sup.output()
    assert os.sched_getaffinity(sup.pid) == allowed


# --- 2. supervisor-wide timeout and its ceiling ----------------------------------------------
def test_supervisor_default_timeout_applies_to_a_job_without_one(start_supervisor, queue):
    bare = queue.enqueue("sleep", {"seconds": 1000}, max_attempts=1)
    own = queue.enqueue("sleep", {"seconds": 1000}, timeout=0.5, max_attempts=1)
    start_supervisor("--workers", "2", "--timeout", "1", plugins=("Sleep",))
    reason, attempt = failed_attempt(queue, bare)
    assert reason == "timeout after 1 s"
    assert 0.9 <= attempt["wall"] < 5, attempt
    reason, attempt = failed_attempt(queue, own)
    assert reason == "timeout after 0.5 s"  # the job's own timeout wins over the default
    assert 0.4 <= attempt["wall"] < 5, attempt


def test_timeout_ceiling_caps_longer_timeouts(start_supervisor, queue):
    longer = queue.enqueue("sleep", {"seconds": 1000}, timeout=60, max_attempts=1)
    bare = queue.enqueue("sleep", {"seconds": 1000}, max_attempts=1)  # default 30 s, capped too
    shorter = queue.enqueue("sleep", {"seconds": 1000}, timeout=0.5, max_attempts=1)
    start_supervisor("--workers", "3", "--timeout", "30", "--timeout-ceiling", "1",
                     plugins=("Sleep",))
    for job_id in (longer, bare):
        reason, attempt = failed_attempt(queue, job_id)
        assert reason == "timeout after 1 s"
        assert 0.9 <= attempt["wall"] < 5, attempt
    reason, attempt = failed_attempt(queue, shorter)
    assert reason == "timeout after 0.5 s"  # a ceiling never lengthens a shorter timeout
    assert 0.4 <= attempt["wall"] < 5, attempt


# --- 3. memory of the worker's children ------------------------------------------------------
@pytest.mark.parametrize("how", ["subprocess", "fork"])
def test_memory_limit_counts_the_workers_children(start_supervisor, queue, tmp_path, how):
    pidfile = tmp_path / "pids"
    limit = 150 * 2**20
    job_id = queue.enqueue("child_eats_memory", {"how": how, "mib": 2000, "step": 0.003,
                                                 "pidfile": str(pidfile)},
                           memory_limit="150M", max_attempts=1)
    after = queue.enqueue("noop", {})
    sup = start_supervisor("--workers", "1", plugins=("Noop", "ChildEatsMemory"))
    wait_until(pidfile.exists, timeout=10, message="child started")
    worker, child = (int(p) for p in pidfile.read_text().split())
    try:
        try:
            worker_rss = psutil.Process(worker).memory_info().rss
        except psutil.NoSuchProcess:  # already killed: its size was read by the supervisor
            worker_rss = 0
        assert worker_rss < limit / 2  # the worker itself stays small: the child is the eater
        reason, attempt = failed_attempt(queue, job_id, timeout=20)
        assert reason.startswith("memory limit exceeded: peak "), reason
        assert reason.endswith("> limit 150.0 MiB"), reason
        assert attempt["peak_rss"] > limit
        # the child never exits by itself (it holds on even when an allocation is refused)
        wait_until(lambda: not running(child) and not running(worker), timeout=5,
                   message="the child and its worker gone")
        assert queue.result(after, timeout=10)["pid"] != worker  # a fresh worker took over
        assert sup.proc.poll() is None
    finally:  # a child that escaped the kill is no longer below the supervisor: ours to end
        for pid in (child, worker):
            if running(pid):
                os.kill(pid, signal.SIGKILL)


# --- 4. the pool serves on while a worker is killed --------------------------------------------
@pytest.mark.parametrize("plugin, data, timeout, reason", [
    ("sleep", {"seconds": 1000}, 2.0, "timeout after 2 s"),   # hangs until its timeout
    ("segfault", {"spin": 2.0}, None, "killed by SIGSEGV"),    # dies after 2 s of CPU
], ids=["hang", "segfault"])
def test_pool_serves_other_jobs_while_one_worker_is_killed(start_supervisor, queue, plugin,
                                                          data, timeout, reason):
    sup = start_supervisor("--workers", "2", plugins=("Sleep", "Segfault"))
    wait_until(lambda: len(sup.worker_pids()) == 2, timeout=10, message="two workers")
    options = {"max_attempts": 1, **({"timeout": timeout} if timeout else {})}
    bad = queue.enqueue(plugin, data, **options)
    wait_until(lambda: queue.status(bad).state == "running", timeout=10, message="bad job running")
    short = [queue.enqueue("sleep", {"seconds": 0.05}) for _ in range(10)]

    got, attempt = failed_attempt(queue, bad)
    assert got == reason
    decided = attempt["finished_at"]
    statuses = [queue.wait(job_id, timeout=15) for job_id in short]
    assert [s.state for s in statuses] == ["done"] * 10
    finished = sorted(s.history[-1]["finished_at"] for s in statuses)
    before = [t for t in finished if t < decided]
    assert len(before) >= 5, (finished, decided)  # served while the bad job still ran
    assert sup.proc.poll() is None
