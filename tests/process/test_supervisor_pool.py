"""Pool size, live scaling, no prefetch, plugin loading."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from supervisor_proc import dtq_env
from waiting import wait_until

pytestmark = pytest.mark.process


def dtq(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dtq", "--redis-url", redis_url, *args],
                          capture_output=True, text=True, env=dtq_env(), timeout=30)


def test_claims_no_more_jobs_than_free_workers(start_supervisor, queue):
    for _ in range(6):
        queue.enqueue("sleep", {"seconds": 0.5})
    start_supervisor("--workers", "2", plugins=("Sleep",))
    wait_until(lambda: queue.stats()["running"] == 2, timeout=10, message="two running")
    seen = []
    deadline = time.monotonic() + 10
    while (stats := queue.stats())["done"] < 6:  # three rounds of two, sampled throughout
        assert time.monotonic() < deadline, f"only {stats['done']} of 6 done"
        seen.append(stats["running"])
        time.sleep(0.05)
    assert len(seen) >= 10 and max(seen) <= 2


def test_scale_from_the_command_line_and_with_signals(start_supervisor, queue, redis_url):
    sup = start_supervisor("--workers", "1", "--name", "box-s")
    wait_until(lambda: len(sup.worker_pids()) == 1, timeout=10, message="one worker")
    out = dtq(redis_url, "scale", "--name", "box-s", "3")
    assert out.returncode == 0, out.stderr
    wait_until(lambda: len(sup.worker_pids()) == 3, timeout=10, message="three workers")
    sup.signal(signal.SIGTTOU)
    wait_until(lambda: len(sup.worker_pids()) == 2, timeout=10, message="two workers")
    sup.signal(signal.SIGTTIN)
    wait_until(lambda: len(sup.worker_pids()) == 3, timeout=10, message="three again")
    listing = dtq(redis_url, "supervisors")
    assert "box-s" in listing.stdout and " 3 " in listing.stdout
    assert dtq(redis_url, "scale", "--name", "nobody", "2").returncode == 1


def test_shrinking_never_kills_a_busy_worker(start_supervisor, queue, redis_url):
    job_id = queue.enqueue("sleep", {"seconds": 1.5})
    sup = start_supervisor("--workers", "2", "--name", "box-t", plugins=("Sleep",))
    wait_until(lambda: queue.status(job_id).state == "running", timeout=10, message="running")
    assert dtq(redis_url, "scale", "--name", "box-t", "0").returncode == 0
    wait_until(lambda: len(sup.worker_pids()) <= 1, timeout=10, message="idle worker retired")
    assert queue.wait(job_id, timeout=10).state == "done"
    wait_until(lambda: len(sup.worker_pids()) == 0, timeout=10, message="busy one retired after")


def test_plugin_that_fails_to_import_stops_the_supervisor(start_supervisor):
    sup = start_supervisor("--plugin", "no_such_module:Thing", plugins=())
    assert sup.wait(20) == 2
    assert "failed to import" in sup.output() and "no_such_module" in sup.output()
    assert "Traceback" not in sup.output()


VERSIONED = """
from dtq.plugin import Plugin

class Versioned(Plugin):
    name = "versioned"

    def process(self, data, ctx):
        return {version!r}
"""


def test_sighup_runs_edited_plugin_code_and_survives_a_broken_edit(start_supervisor, queue, tmp_path,
                                                                    monkeypatch):
    module = tmp_path / "hup_plugin.py"
    module.write_text(VERSIONED.format(version="v1"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # a same-second edit must not reuse .pyc
    sup = start_supervisor("--workers", "1", "--plugin", "hup_plugin:Versioned", plugins=())
    assert queue.result(queue.enqueue("versioned", {}), timeout=10) == "v1"
    module.write_text(VERSIONED.format(version="v2"))
    sup.signal(signal.SIGHUP)
    wait_until(lambda: "plugins reloaded" in sup.output(), timeout=10, message="reloaded")
    assert queue.result(queue.enqueue("versioned", {}), timeout=10) == "v2"
    module.write_text("this is not python(\n")
    sup.signal(signal.SIGHUP)
    wait_until(lambda: "reload failed" in sup.output(), timeout=10, message="reload refused")
    assert "SyntaxError" in sup.output() and sup.proc.poll() is None
    assert queue.result(queue.enqueue("versioned", {}), timeout=10) == "v2"  # the old code runs on


def test_sighup_replaces_idle_workers(start_supervisor, queue):
    sup = start_supervisor("--workers", "2")
    before = set(wait_until(lambda: len(sup.worker_pids()) == 2 and sup.worker_pids(), timeout=10))
    sup.signal(signal.SIGHUP)
    wait_until(lambda: len(set(sup.worker_pids()) - before) == 2, timeout=10, message="new workers")
    assert queue.result(queue.enqueue("noop", {}), timeout=10)


def test_short_jobs_batched_behind_one_that_runs_long_run_elsewhere_meanwhile(start_supervisor, queue):
    """Very short jobs go to workers in batches; when one of them runs long, the jobs
    queued behind it in its worker's pipe must not wait for it: they go back and the
    other worker runs them while it still runs."""
    short = {"job": {"plugin": "sleep", "data": {"seconds": 0}}}
    ids = queue.enqueue_many([short] * 80)
    long_id = queue.enqueue("sleep", {"seconds": 3})
    behind = queue.enqueue_many([short] * 150)
    start_supervisor("--workers", "2", plugins=("Sleep",))
    long_done = queue.wait(long_id, timeout=30)
    assert long_done.state == "done"
    long_end = long_done.history[-1]["finished_at"]
    ends = [queue.wait(i, timeout=10).history[-1]["finished_at"] for i in ids + behind]
    assert max(ends) < long_end - 1.0, "short jobs waited for the long one"
