"""The real `dtq supervise`: jobs run, results land, crashes are decoded and survived."""

from __future__ import annotations

import pytest
from waiting import wait_until

from dtq import JobFailed, Queue

pytestmark = pytest.mark.process


def finished(queue: Queue, job_id: str):
    return lambda: queue.status(job_id).finished


def test_burst_runs_every_job_and_exits_zero(start_supervisor, queue):
    ids = queue.enqueue_many([{"job": {"plugin": "noop", "data": {"i": i}}} for i in range(300)])
    sup = start_supervisor("--workers", "2", "--burst")
    assert sup.wait(30) == 0, sup.output()
    results = [queue.result(i, timeout=1) for i in ids]
    assert [r["echo"]["i"] for r in results] == list(range(300))
    assert len({r["pid"] for r in results}) == 2  # both workers served
    assert queue.stats()["done"] == 300
    assert sup.alive_leftovers() == []


def test_queues_run_in_the_order_given(start_supervisor, redis_url):
    high, low = Queue(redis_url, queue="high"), Queue(redis_url, queue="low")
    low_ids = low.enqueue_many([{"job": {"plugin": "noop", "data": {"q": "low"}}} for _ in range(20)])
    high_ids = high.enqueue_many([{"job": {"plugin": "noop", "data": {"q": "high"}}} for _ in range(20)])
    sup = start_supervisor("--workers", "1", "--queues", "high,low", "--burst")
    assert sup.wait(30) == 0, sup.output()
    high_ends = [high.status(i).finished_at for i in high_ids]
    low_starts = [low.status(i).history[0]["started_at"] for i in low_ids]
    assert max(high_ends) <= min(low_starts)  # one worker: every high job before any low one
    assert (high.stats()["done"], low.stats()["done"]) == (20, 20)


def test_idle_supervisor_picks_up_a_new_job(start_supervisor, queue):
    sup = start_supervisor("--workers", "1")
    wait_until(lambda: len(sup.worker_pids()) == 1, message="worker forked")
    job_id = queue.enqueue("noop", {"x": 1})
    assert queue.result(job_id, timeout=10)["echo"] == {"x": 1}


def test_segfault_is_decoded_and_the_next_job_runs(start_supervisor, queue):
    bad = queue.enqueue("segfault", {}, max_attempts=1)
    good = queue.enqueue("noop", {"after": "segfault"})
    start_supervisor("--workers", "1", plugins=("Noop", "Segfault"))
    with pytest.raises(JobFailed) as err:
        queue.result(bad, timeout=10)
    assert err.value.reason == "killed by SIGSEGV"
    assert queue.result(good, timeout=10)["echo"] == {"after": "segfault"}


def test_a_crashed_attempt_is_charged_the_cpu_it_used(start_supervisor, queue):
    """The worker is reaped before its attempt is recorded: its CPU time comes from the
    reaping (wait4), since /proc no longer has it."""
    bad = queue.enqueue("segfault", {"spin": 0.4}, max_attempts=1)
    start_supervisor("--workers", "1", plugins=("Segfault",))
    with pytest.raises(JobFailed):
        queue.result(bad, timeout=20)
    (attempt,) = queue.status(bad).history
    assert attempt["reason"] == "killed by SIGSEGV" and attempt["cpu"] >= 0.35


def test_a_crash_in_a_batch_of_short_jobs_is_charged_to_the_crashing_job(start_supervisor, queue):
    """Short jobs go to a worker in batches and their outcomes out together. A segfault
    right after a no-op must not take the no-op's finished attempt along as a failure,
    nor let the crashing job go uncharged."""
    before = queue.enqueue_many([{"job": {"plugin": "noop", "data": {"i": i}}} for i in range(300)])
    bad = queue.enqueue("segfault", {}, max_attempts=1)
    after = queue.enqueue_many([{"job": {"plugin": "noop", "data": {"i": i}}} for i in range(300)])
    sup = start_supervisor("--workers", "1", "--burst", plugins=("Noop", "Segfault"))
    assert sup.wait(60) == 0, sup.output()
    assert queue.status(bad).error == "killed by SIGSEGV"
    charged = [i for i in before + after if queue.status(i).failures or queue.status(i).state != "done"]
    assert charged == []
    assert sup.alive_leftovers() == []


def test_exit_code_then_retry_succeeds(start_supervisor, queue):
    job_id = queue.enqueue("exit", {"code": 3, "fail_attempts": 1}, max_attempts=3)
    start_supervisor("--workers", "1", plugins=("Exit",))
    assert queue.result(job_id, timeout=10) == {"attempt": 2}
    history = queue.status(job_id).history
    assert history[0]["reason"] == "exit code 3"
    assert "reason" not in history[1]
    assert {"wall", "cpu", "peak_rss"} <= set(history[1])


def test_exception_retries_then_dead_letters_with_every_reason(start_supervisor, queue):
    job_id = queue.enqueue("raise", {"message": "boom"}, max_attempts=3, backoff=0.05)
    start_supervisor("--workers", "1", plugins=("Raise",))
    with pytest.raises(JobFailed):
        queue.result(job_id, timeout=15)
    status = queue.status(job_id)
    assert status.state == "dead"
    assert status.failures == 3
    assert [h["reason"].split(" (at")[0] for h in status.history] == ["RuntimeError: boom"] * 3


def test_permanent_error_dead_letters_at_once(start_supervisor, queue):
    job_id = queue.enqueue("raise", {"permanent": True, "message": "bad input"}, max_attempts=5)
    start_supervisor("--workers", "1", plugins=("Raise",))
    with pytest.raises(JobFailed, match="bad input"):
        queue.result(job_id, timeout=10)
    assert queue.status(job_id).failures == 1


def test_unknown_plugin_fails_with_a_clear_reason(start_supervisor, queue):
    job_id = queue.enqueue("no_such_plugin", {})
    start_supervisor("--workers", "1")
    with pytest.raises(JobFailed, match="unknown plugin 'no_such_plugin'"):
        queue.result(job_id, timeout=10)


def test_result_sent_before_the_worker_died_counts(start_supervisor, queue):
    job_id = queue.enqueue("exit_after_result", {"after": 0.1}, max_attempts=3)
    sup = start_supervisor("--workers", "1", plugins=("ExitAfterResult", "Noop"))
    assert queue.result(job_id, timeout=10) == {"attempt": 1}
    wait_until(lambda: "exit code 5" in sup.output(), message="the worker's death is logged")
    status = queue.status(job_id)
    assert status.state == "done" and status.attempt == 1 and len(status.history) == 1
    assert queue.result(queue.enqueue("noop", {}), timeout=10)  # a fresh worker serves


def test_progress_is_visible_while_running(start_supervisor, queue):
    job_id = queue.enqueue("progress", {"steps": 20, "step": 0.1})
    start_supervisor("--workers", "1", plugins=("Progress",))
    progress = wait_until(lambda: queue.status(job_id).progress, timeout=10, message="progress")
    assert "step" in progress["message"] and 0 < progress["fraction"] <= 1
    assert queue.result(job_id, timeout=10) == "ok"


def test_status_command_shows_attempt_figures(start_supervisor, queue, redis_url):
    import subprocess
    import sys

    from supervisor_proc import dtq_env

    job_id = queue.enqueue("exit", {"code": 3, "fail_attempts": 1})
    start_supervisor("--workers", "1", plugins=("Exit",))
    queue.result(job_id, timeout=10)
    out = subprocess.run([sys.executable, "-m", "dtq", "--redis-url", redis_url, "status", job_id],
                         capture_output=True, text=True, env=dtq_env(), timeout=30).stdout
    assert "state: done" in out
    assert "attempt 1:" in out and "exit code 3" in out
    assert "wall" in out and "cpu" in out and "peak" in out


def test_the_plugin_context_carries_the_job_and_its_deadline(start_supervisor, queue):
    job_id = queue.enqueue("context", {}, timeout=30)
    start_supervisor("--workers", "1", plugins=("Context",))
    seen = queue.result(job_id, timeout=10)
    assert seen["job_id"] == job_id and seen["attempt"] == 1 and seen["queue"] == "default"
    assert 25 < seen["time_left"] <= 30


def test_jobs_enqueued_after_a_burst_run_are_not_claimed_for_it(start_supervisor, queue):
    first = queue.enqueue("noop", {"n": 1})
    sup = start_supervisor("--workers", "2", "--burst")
    assert sup.wait(30) == 0
    assert queue.status(first).state == "done"
    later = queue.enqueue("noop", {"n": 2})  # nobody stands by for it any more
    assert queue.status(later).state == "queued"
