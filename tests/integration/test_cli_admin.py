"""Operator commands against a real Redis: dtq stats, dead, pause/resume, top --once.

Dead jobs and attempt records are made through the engine (claim, then finish with
a failure), so the commands read exactly what supervisors write.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dtq import keys
from dtq.cli.admin_stats import normalise_reason, percentile, plugin_percentiles
from dtq.engine.base import Outcome, SupervisorInfo
from dtq.engine.redis_admin import JobSample, RedisAdmin
from dtq.engine.redis_engine import RedisEngine
from dtq.job import build_job

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]


def dtq(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dtq", "--redis-url", url, *args], input=stdin,
                          capture_output=True, text=True, timeout=30, cwd=REPO)


@pytest.fixture
def engine(redis_url: str) -> RedisEngine:
    return RedisEngine(redis_url)


def fail_attempts(engine: RedisEngine, job_id: str, reasons: list[str], *, queue: str = "default",
                  plugin: str = "p", priority: int = 0, records: list[dict[str, Any]] | None = None) -> None:
    """Enqueue a job that fails once per reason (the last failure dead-letters it)."""
    opts = {"queue": queue, "max_attempts": len(reasons), "backoff": 0, "priority": priority}
    engine.enqueue(build_job(plugin, {"n": job_id}, job_id, opts))
    for i, reason in enumerate(reasons):
        claimed = [j for j in engine.claim(queue, "box", 100, 30).jobs if j.id == job_id]
        assert claimed, f"{job_id} not claimable for attempt {i + 1}"
        record = {"attempt": claimed[0].attempt, "reason": reason, "wall": 1.0, "cpu": 0.5,
                  "peak_rss": 2**20, **((records or [{}] * len(reasons))[i])}
        assert engine.finish("box", [Outcome(claimed[0], "retry", reason=reason, record=record)])


def test_dead_list_is_newest_first_paged_and_shows_reason_and_failures(redis_url) -> None:
    ticks = itertools.count()
    start = time.time()
    # a clock that moves 10 ms per reading: "newest" is never a tie within a millisecond
    engine = RedisEngine(redis_url, clock=lambda: start + next(ticks) * 0.01)
    fail_attempts(engine, "old", ["exit code 3"])
    fail_attempts(engine, "mid", ["killed by SIGSEGV", "killed by SIGSEGV"], plugin="crashy")
    fail_attempts(engine, "new", ["timeout after 30 s"], queue="images")
    done = dtq(redis_url, "dead", "list")
    assert done.returncode == 0, done.stderr
    rows = [line.split()[0] for line in done.stdout.splitlines()[1:-1]]
    assert rows == ["new", "mid", "old"]
    mid = next(line for line in done.stdout.splitlines() if line.startswith("mid"))
    assert re.search(r"\b2 crashy\s+killed by SIGSEGV$", mid)
    assert done.stdout.splitlines()[-1] == "1-3 of 3 dead jobs"

    page = dtq(redis_url, "dead", "list", "--limit", "1", "--offset", "1")
    assert [line.split()[0] for line in page.stdout.splitlines()[1:-1]] == ["mid"]
    only = dtq(redis_url, "dead", "list", "--queue", "images")
    assert [line.split()[0] for line in only.stdout.splitlines()[1:-1]] == ["new"]


def test_dead_show_has_every_attempts_reason(redis_url, engine) -> None:
    fail_attempts(engine, "j1", ["exit code 3", "memory limit exceeded: peak 2.0 GiB > limit 1.0 GiB"])
    done = dtq(redis_url, "dead", "show", "j1")
    assert done.returncode == 0, done.stderr
    assert "state: dead (memory limit exceeded" in done.stdout
    assert "attempt 1: " in done.stdout and "- exit code 3" in done.stdout
    assert "attempt 2: " in done.stdout and "peak 2.0 GiB > limit 1.0 GiB" in done.stdout
    as_json = json.loads(dtq(redis_url, "dead", "show", "j1", "--json").stdout)
    assert [r["reason"] for r in as_json["history"]][0] == "exit code 3"
    missing = dtq(redis_url, "dead", "show", "nope")
    assert missing.returncode == 1 and "no dead job 'nope'" in missing.stderr


def test_dead_retry_resets_failures_keeps_attempt_and_priority(redis_url, engine) -> None:
    fail_attempts(engine, "low", ["exit code 1"])
    fail_attempts(engine, "high", ["exit code 1", "exit code 2"], priority=5)
    engine.enqueue(build_job("p", None, "waiting", {"priority": 1}))
    done = dtq(redis_url, "dead", "retry", "low", "high")
    assert done.returncode == 0, done.stderr
    assert "retried 2 dead jobs" in done.stdout
    high = engine.status("high", "default")
    assert (high.state, high.failures, high.attempt, high.error) == ("queued", 0, 2, "")
    assert high.history[-1]["event"] == "retried"
    assert "2 failures reset to 0" in high.history[-1]["reason"]
    assert engine.stats("default")["dead"] == 0
    claimed = engine.claim("default", "box", 10, 30).jobs
    assert [(j.id, j.attempt) for j in claimed] == [("high", 3), ("waiting", 1), ("low", 2)]
    again = dtq(redis_url, "dead", "retry", "high")
    assert again.returncode == 1 and "no dead job 'high'" in again.stderr


def test_dead_retry_all_and_malformed_entries(redis_url, engine) -> None:
    for n in range(3):
        fail_attempts(engine, f"j{n}", ["exit code 1"], queue="q1" if n else "default")
    engine.client.rpush(keys.QueueKeys("default").inbox, b"not json")
    engine.admit_inbox("default")
    done = dtq(redis_url, "dead", "retry", "--all")
    assert done.returncode == 1  # the malformed entry cannot be retried
    assert "retried 3 dead jobs" in done.stdout and "malformed inbox entry" in done.stderr
    assert [engine.status(f"j{n}", "default" if n == 0 else "q1").state for n in range(3)] == ["queued"] * 3
    assert RedisAdmin(engine).dead_count("default") == 1
    both = dtq(redis_url, "dead", "retry", "j1", "--all")
    assert both.returncode == 2


def test_dead_purge_needs_yes_and_deletes_records(redis_url, engine) -> None:
    fail_attempts(engine, "a", ["exit code 1"])
    fail_attempts(engine, "b", ["exit code 1"], queue="other")
    fail_attempts(engine, "c", ["exit code 1"])
    refused = dtq(redis_url, "dead", "purge")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert engine.status("a", "default") is not None
    one = dtq(redis_url, "dead", "purge", "c")
    assert (one.returncode, one.stdout.strip()) == (0, "purged 1 dead jobs")
    assert engine.status("c", "default") is None
    done = dtq(redis_url, "dead", "purge", "--yes")
    assert (done.returncode, done.stdout.strip()) == (0, "purged 2 dead jobs")
    assert engine.status("a", "default") is None and engine.status("b", "other") is None
    assert engine.stats("default")["dead"] == 0 and engine.stats("other")["dead"] == 0


def test_pause_and_resume_gate_claims(redis_url, engine) -> None:
    engine.enqueue(build_job("p", None, "j1"))
    done = dtq(redis_url, "pause", "default")
    assert done.returncode == 0 and "queue default paused" in done.stdout
    assert "already paused" in dtq(redis_url, "pause", "default").stdout
    assert engine.claim("default", "box", 10, 30).jobs == []
    assert engine.stats("default")["paused"] == 1
    sub = engine.client.pubsub()
    sub.subscribe(keys.QueueKeys("default").wake_channel)
    assert sub.get_message(timeout=1)["type"] == "subscribe"
    resumed = dtq(redis_url, "resume", "default")
    assert resumed.returncode == 0 and "queue default resumed" in resumed.stdout
    assert sub.get_message(timeout=2)["data"] == b"1"  # idle supervisors wake at once
    sub.close()
    assert [j.id for j in engine.claim("default", "box", 10, 30).jobs] == ["j1"]
    assert "was not paused" in dtq(redis_url, "resume", "default").stdout


def test_stats_percentiles_and_reasons_from_known_attempts(redis_url, engine) -> None:
    for n in range(1, 101):
        records = [{"wall": float(n), "cpu": n / 10, "peak_rss": n * 2**20, "finished_at": 1.0}]
        fail_attempts(engine, f"j{n}", [f"timeout after {n} s"], plugin="resize", records=records)
    done = dtq(redis_url, "stats", "--json")
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)
    wall = report["plugins"]["resize"]["wall"]
    assert (wall["n"], wall["p50"], wall["p90"], wall["p99"], wall["max"]) == (100, 50, 90, 99, 100)
    assert report["plugins"]["resize"]["peak_rss"]["p90"] == 90 * 2**20
    assert report["reasons"]["dead"] == {"timeout after N s": 100}
    assert report["reasons"]["failed_attempts"] == {"timeout after N s": 100}
    assert report["counts"]["dead"] == 100 and report["counts"]["failed"] == 100
    assert report["sample"] == {"jobs": 100, "complete": True}
    text = dtq(redis_url, "stats", "--queue", "default")
    assert re.search(r"resize\s+wall s\s+100\s+50s\s+90s\s+99s\s+100s", text.stdout), text.stdout
    assert "100  timeout after N s" in text.stdout


def test_stats_sample_is_bounded(redis_url, engine) -> None:
    for n in range(20):
        engine.enqueue(build_job("p", None, f"j{n}"))
    (report,) = json.loads(dtq(redis_url, "stats", "--json", "--sample", "5").stdout)
    assert report["sample"] == {"jobs": 5, "complete": False}
    assert report["counts"]["ready"] == 20
    assert "bounded sample" in dtq(redis_url, "stats", "--help").stdout


def test_top_once_plain_80_columns_from_a_registry_entry(redis_url, engine) -> None:
    engine.enqueue(build_job("p", None, "waiting"))
    engine.enqueue(build_job("sleep", None, "busy-job", {"memory_limit": "1G", "queue": "images"}))
    workers = [{"pid": 999999, "state": "busy", "job": "busy-job", "plugin": "sleep", "running_for": 5.0},
               {"pid": 999998, "state": "idle", "job": None, "plugin": None, "running_for": None}]
    info = SupervisorInfo(name="box-with-a-rather-long-name-that-is-cut", host="elsewhere", pid=1,
                          workers=2, busy=1, queues=["default", "images"], started_at=1.0,
                          extra={"state": "running", "workers": workers, "done": 7})
    engine.heartbeat(info, ttl=60)
    done = dtq(redis_url, "top", "--once", "--interval", "0.1")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "\x1b" not in done.stdout and all(len(line) <= 80 for line in lines)
    assert any(line.startswith("box-with-a-rather- elsewhere") and "running" in line for line in lines)
    busy = next(line for line in lines if "busy-job" in line)
    assert re.search(r"999999 busy-job\s+sleep\s+\S+s\s+-\s+-/1\.0G$", busy), busy
    assert any(re.match(r"default\s+1\s+0\s+0\s+0\.0\s+0\.0\s+0\s*$", line) for line in lines), lines


def test_reason_normalisation_groups_what_differs_only_in_details() -> None:
    assert normalise_reason("timeout after 30 s") == "timeout after N s"
    assert normalise_reason("lease expired: supervisor box-12 stopped heartbeating") == (
        "lease expired: supervisor X stopped heartbeating")
    assert normalise_reason("memory limit exceeded: peak 2.1 GiB > limit 1 GiB") == (
        "memory limit exceeded: peak N GiB > limit N GiB")
    assert normalise_reason("FileNotFoundError: [Errno 2] No such file: '/srv/in/a.jpg'") == (
        "FileNotFoundError: [Errno N] No such file: 'PATH'")
    assert normalise_reason("") == "(no reason)"


def test_percentiles_nearest_rank_and_retry_notes_ignored() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0 and percentile([5.0], 99) == 5.0
    note = {"event": "retried", "reason": "retried by operator", "wall": 99.0}
    sample = [JobSample("a", "p", "done", "", [{"wall": 1.0, "cpu": 1.0, "peak_rss": 10}, note])]
    assert plugin_percentiles(sample)["p"]["wall"]["max"] == 1.0


def test_top_live_view_draws_in_a_terminal_and_quits_on_q(redis_url, engine) -> None:
    import os
    import pty
    import select

    engine.enqueue(build_job("p", None, "waiting", {"queue": "livequeue"}))
    pid, fd = pty.fork()
    if pid == 0:  # the child: dtq top on a terminal of 80 columns
        os.environ.update(TERM="xterm", COLUMNS="80", LINES="24")
        os.execv(sys.executable, [sys.executable, "-m", "dtq", "--redis-url", redis_url, "top",
                                  "--interval", "0.1"])
    screen, done = b"", 0
    try:
        deadline = time.monotonic() + 15
        while not (b"livequeue" in screen and b"q quits" in screen) and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                screen += os.read(fd, 65536)
        assert b"livequeue" in screen and b"q quits" in screen
        os.write(fd, b"q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    os.read(fd, 65536)
                except OSError:
                    pass
        assert done == pid and os.waitstatus_to_exitcode(status) == 0
    finally:
        if done != pid:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        os.close(fd)
