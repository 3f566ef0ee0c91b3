"""Timeouts and memory limits are enforced from outside the worker, whatever the job does."""

from __future__ import annotations

import os
import time

import psutil
import pytest
from supervisor_proc import running
from waiting import wait_until

from dtq import JobFailed

pytestmark = pytest.mark.process


@pytest.mark.parametrize("plugin, data", [
    ("spin", {"seconds": 60}),            # pure Python
    ("sleep", {"seconds": 1000}),         # blocked in C (time.sleep)
    ("block_in_c", {"seconds": 1000}),    # libc sleep with SIGTERM blocked
    ("ignore_term", {"seconds": 1000}),   # ignores the soft signal
])
def test_timeout_stops_the_job_and_the_next_one_runs(start_supervisor, queue, plugin, data):
    job_id = queue.enqueue(plugin, data, timeout=0.5, max_attempts=1)
    after = queue.enqueue("noop", {"after": plugin})
    start_supervisor("--workers", "1", plugins=("Noop", "Spin", "Sleep", "BlockInC", "IgnoreTerm"))
    t0 = time.monotonic()
    with pytest.raises(JobFailed) as err:
        queue.result(job_id, timeout=15)
    assert err.value.reason == "timeout after 0.5 s"
    assert time.monotonic() - t0 < 10
    assert queue.result(after, timeout=10)["echo"] == {"after": plugin}


def test_timeout_kills_grandchildren(start_supervisor, queue, tmp_path):
    pidfile = tmp_path / "pids"
    job_id = queue.enqueue("grandchildren", {"children": 2, "pidfile": str(pidfile)},
                           timeout=1.0, max_attempts=1)
    sup = start_supervisor("--workers", "1", plugins=("Grandchildren",))
    wait_until(pidfile.exists, timeout=10, message="grandchildren started")
    pids = [int(p) for p in wait_until(lambda: pidfile.read_text().split(), message="pids")]
    assert all(psutil.pid_exists(p) for p in pids)
    with pytest.raises(JobFailed, match="timeout after 1 s"):
        queue.result(job_id, timeout=15)

    def gone() -> bool:
        return not any(running(p) for p in pids)
    wait_until(gone, timeout=5, message="grandchildren killed")
    assert sup.proc.poll() is None


def test_memory_limit_kills_with_a_clear_reason(start_supervisor, queue):
    job_id = queue.enqueue("eat_memory", {"mib": 2000, "step": 0.002}, memory_limit="150M",
                           max_attempts=1)
    after = queue.enqueue("noop", {})
    start_supervisor("--workers", "1", plugins=("Noop", "EatMemory"))
    with pytest.raises(JobFailed) as err:
        queue.result(job_id, timeout=20)
    assert err.value.reason.startswith("memory limit exceeded: ")
    assert "> limit 150.0 MiB" in err.value.reason
    assert queue.result(after, timeout=10)
    peak = queue.status(job_id).history[0]["peak_rss"]
    assert peak > 150 * 2**20


def test_supervisor_default_memory_limit_applies(start_supervisor, queue):
    job_id = queue.enqueue("eat_memory", {"mib": 2000, "step": 0.002}, max_attempts=1)
    start_supervisor("--workers", "1", "--memory-limit", "120M", plugins=("EatMemory",))
    with pytest.raises(JobFailed, match="memory limit exceeded"):
        queue.result(job_id, timeout=20)


def test_job_under_its_memory_limit_passes(start_supervisor, queue):
    job_id = queue.enqueue("eat_memory", {"mib": 30, "step": 0.001}, memory_limit="300M")
    start_supervisor("--workers", "1", plugins=("EatMemory",))
    assert queue.result(job_id, timeout=20) == {"held_mib": 30}


def test_no_process_left_after_a_stop(start_supervisor, queue):
    queue.enqueue("sleep", {"seconds": 1000}, timeout=100)
    sup = start_supervisor("--workers", "2", "--grace", "0.2", plugins=("Sleep",))
    wait_until(lambda: queue.stats()["running"] == 1, timeout=10, message="job running")
    sup.descendants()
    sup.signal(15)
    assert sup.wait(15) == 0
    wait_until(lambda: sup.alive_leftovers() == [], timeout=5, message="everything gone")
    assert os.getpgid(os.getpid()) != sup.pid


def test_kernel_limit_backs_up_the_sampler(start_supervisor, queue):
    # readings once a minute: only the worker's RLIMIT_DATA can stop this job in time
    job_id = queue.enqueue("eat_memory", {"mib": 3000, "step": 0}, memory_limit="100M",
                           max_attempts=1)
    start_supervisor("--workers", "1", "--memory-sample", "60", plugins=("EatMemory",))
    with pytest.raises(JobFailed) as err:
        queue.result(job_id, timeout=20)
    assert err.value.reason == "memory limit exceeded: allocation refused (limit 100 MiB)"


def test_workers_are_recycled_after_max_jobs(start_supervisor, queue):
    ids = [queue.enqueue("noop", {"i": i}) for i in range(40)]
    start_supervisor("--workers", "1", "--max-jobs-per-worker", "10", plugins=("Noop",))
    pids = [queue.result(i, timeout=20)["pid"] for i in ids]
    per_worker = [pids.count(p) for p in dict.fromkeys(pids)]
    assert len(per_worker) >= 4  # 40 jobs, 9-11 per worker
    assert all(n <= 11 for n in per_worker)


def test_worker_whose_idle_memory_grew_is_recycled(start_supervisor, queue):
    leak = queue.enqueue("leak", {"mib": 150})
    after = queue.enqueue("noop", {})
    start_supervisor("--workers", "1", "--idle-memory-limit", "100M", plugins=("Noop", "Leak"))
    leaked_in = queue.result(leak, timeout=20)["pid"]
    assert queue.result(after, timeout=20)["pid"] != leaked_in


def test_worker_whose_idle_memory_keeps_growing_is_recycled_by_default(start_supervisor, queue):
    """No option given: a worker that idles 256 MiB above where it idled after its first job
    is replaced after the job that grew it; small growth is left alone."""
    start_supervisor("--workers", "1", plugins=("Noop", "Leak"))
    first = queue.result(queue.enqueue("leak", {"mib": 20}), timeout=20)["pid"]
    time.sleep(1.1)  # idle readings of one worker are at most a second apart
    assert queue.result(queue.enqueue("leak", {"mib": 50}), timeout=20)["pid"] == first
    time.sleep(1.1)
    assert queue.result(queue.enqueue("leak", {"mib": 300}), timeout=20)["pid"] == first
    assert queue.result(queue.enqueue("noop", {}), timeout=20)["pid"] != first
