"""Operator commands with a real supervisor running: pause/resume, cancel, dead retry, top."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from supervisor_proc import SupervisorProcess
from waiting import wait_until

from dtq import Queue
from dtq.engine.redis_engine import RedisEngine

pytestmark = [pytest.mark.redis, pytest.mark.process]

REPO = Path(__file__).resolve().parents[2]
PLUGINS = ("Noop", "Sleep", "Exit")


def dtq(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dtq", "--redis-url", url, *args],
                          capture_output=True, text=True, timeout=30, cwd=REPO)


@pytest.fixture
def start_supervisor(start_supervisor: Callable[..., SupervisorProcess]) -> Callable[..., SupervisorProcess]:
    """The shared fixture, with this file's plugins."""
    return functools.partial(start_supervisor, plugins=PLUGINS)


@pytest.fixture
def engine(redis_url: str) -> RedisEngine:
    return RedisEngine(redis_url)


def state(engine: RedisEngine, job_id: str, queue: str = "default") -> str:
    status = engine.status(job_id, queue)
    return status.state if status else "missing"


def test_pause_stops_claiming_running_jobs_go_on_and_resume_restarts(redis_url, engine,
                                                                     start_supervisor) -> None:
    start_supervisor("--workers", "2", "--name", "box1")
    q = Queue(redis_url)
    q.enqueue("sleep", {"seconds": 1.0}, id="long")
    wait_until(lambda: state(engine, "long") == "running", 15, message="long running")
    assert dtq(redis_url, "pause", "default").returncode == 0
    q.enqueue("noop", None, id="after-pause")
    wait_until(lambda: state(engine, "long") == "done", 10, message="running job finished")
    # a free worker and a wake-up for a whole second: claimed by now, were the queue not paused
    assert state(engine, "after-pause") == "queued"
    assert dtq(redis_url, "resume", "default").returncode == 0
    wait_until(lambda: state(engine, "after-pause") == "done", 5, message="claimed after resume")


def test_cancel_of_a_running_job_ends_it_cancelled_within_a_second(redis_url, engine,
                                                                   start_supervisor) -> None:
    start_supervisor("--workers", "1", "--name", "box1")
    q = Queue(redis_url)
    q.enqueue("sleep", {"seconds": 60}, id="victim", max_attempts=3)
    wait_until(lambda: state(engine, "victim") == "running", 15, message="victim running")
    started = time.monotonic()
    done = dtq(redis_url, "cancel", "victim")
    assert done.returncode == 0 and "its supervisor stops it now" in done.stdout
    wait_until(lambda: state(engine, "victim") == "cancelled", 3, message="victim cancelled")
    assert time.monotonic() - started < 1.5  # includes starting the dtq command itself
    q.enqueue("noop", None, id="next")  # the pool goes on; the victim is not run again
    wait_until(lambda: state(engine, "next") == "done", 10, message="next job done")
    victim = engine.status("victim", "default")
    assert (victim.state, victim.attempt, victim.failures, victim.error) == (
        "cancelled", 1, 0, "cancelled by operator")


def test_dead_retry_puts_a_job_back_and_a_supervisor_runs_it(redis_url, engine,
                                                             start_supervisor) -> None:
    start_supervisor("--workers", "1", "--name", "box1")
    q = Queue(redis_url)
    q.enqueue("exit", {"code": 3, "fail_attempts": 1}, id="flaky", max_attempts=1)
    wait_until(lambda: state(engine, "flaky") == "dead", 15, message="flaky dead")
    assert "exit code 3" in dtq(redis_url, "dead", "list").stdout
    assert dtq(redis_url, "dead", "retry", "flaky").returncode == 0
    wait_until(lambda: state(engine, "flaky") == "done", 10, message="flaky done after retry")
    status = engine.status("flaky", "default")
    assert (status.result, status.attempt, status.failures) == ({"attempt": 2}, 2, 0)
    assert [r.get("event") for r in status.history] == [None, "retried", None]


def test_top_once_shows_the_supervisor_its_workers_and_the_queue(redis_url, engine,
                                                                 start_supervisor) -> None:
    sup = start_supervisor("--workers", "2", "--name", "topbox", "--grace", "0.2")
    q = Queue(redis_url)
    q.enqueue("sleep", {"seconds": 30}, id="busy-one", memory_limit="1G")
    wait_until(lambda: state(engine, "busy-one") == "running", 15, message="job running")
    wait_until(lambda: any(w.get("job") == "busy-one" for s in engine.supervisors()
                           for w in s.extra.get("workers", [])), 5, message="registry shows the job")
    done = dtq(redis_url, "top", "--once", "--interval", "0.3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "\x1b" not in done.stdout and all(len(line) <= 80 for line in lines), done.stdout
    assert any(line.startswith("topbox ") and " running " in line for line in lines), done.stdout
    worker_pids = set(sup.worker_pids())
    shown = {int(m.group(1)) for line in lines if (m := re.match(r"topbox\s+(\d+) ", line))}
    assert shown and shown <= worker_pids, (shown, worker_pids)
    busy = next(line for line in lines if "busy-one" in line)
    assert re.search(r"busy-one\s+sleep\s+\S+s\s+\d+\s+[\d.]+[KMG]/1\.0G$", busy), busy
    assert any(re.match(r"default\s+0\s+0\s+1\s+[\d.]+\s+[\d.]+\s+0\s*$", line) for line in lines), lines
