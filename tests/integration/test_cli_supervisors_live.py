"""`dtq supervisors` lists live supervisors only (stale entries with --all), against a real Redis;
and the global options work after the command for supervise, scale and an admin command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from supervisor_proc import dtq_env
from waiting import wait_until

from dtq import keys
from dtq.cli.operators import is_live
from dtq.cli.top import Sampler
from dtq.engine.base import SupervisorInfo
from dtq.engine.redis_admin import RedisAdmin
from dtq.engine.redis_engine import RedisEngine

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]
REFUSED = "redis://127.0.0.1:1/0"  # given before the command: must be overridden


def dtq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dtq", "--redis-url", REFUSED, *args],
                          capture_output=True, text=True, timeout=30, cwd=REPO, env=dtq_env())


def register(url: str, name: str, pid: int, age: float, ttl: float = 600.0) -> None:
    """A registry entry as a supervisor writes it, its last heartbeat ``age`` seconds ago."""
    engine = RedisEngine(url, clock=lambda: time.time() - age)
    engine.heartbeat(SupervisorInfo(name=name, host="box", pid=pid, workers=2, busy=1,
                                    queues=["q1"], extra={"heartbeat": 10.0, "state": "running"}),
                     ttl=ttl)


def row(output: str, name: str) -> str:
    return next((line for line in output.splitlines() if line.startswith(name)), "")


def test_top_shows_the_live_supervisors_only(redis_url: str) -> None:
    register(redis_url, "box-live", 11, age=1.0)
    register(redis_url, "box-gone", 22, age=60.0)
    frame = Sampler(RedisAdmin(RedisEngine(redis_url))).frame()
    assert [s.name for s in frame.supervisors] == ["box-live"]


def test_stale_entries_are_hidden_unless_asked_for(redis_url: str) -> None:
    register(redis_url, "box-live", 11, age=1.0)
    register(redis_url, "box-gone", 22, age=60.0)  # the old 120 s rule called this live
    client = RedisEngine(redis_url).client
    client.zadd(keys.SUPERVISORS, {"box-expired": int((time.time() - 2) * 1000)})  # details gone

    out = dtq("supervisors", "--redis-url", redis_url)
    assert out.returncode == 0, out.stderr
    assert "running" in row(out.stdout, "box-live") and " 2 " in row(out.stdout, "box-live")
    assert not row(out.stdout, "box-gone") and not row(out.stdout, "box-expired")
    assert "2 stale entries not shown" in out.stdout and "--all" in out.stdout

    out = dtq("supervisors", "--all", "--redis-url", redis_url)
    assert out.returncode == 0, out.stderr
    assert "running" in row(out.stdout, "box-live")
    assert " stale " in row(out.stdout, "box-gone") and " stale " in row(out.stdout, "box-expired")
    assert "not shown" not in out.stdout

    scaled = dtq("scale", "3", "--redis-url", redis_url)  # the only live one: no --name needed
    assert scaled.returncode == 0, scaled.stderr
    assert client.hget(keys.supervisor_info("box-live") + ":control", "workers") == b"3"


def test_only_stale_entries_say_so(redis_url: str) -> None:
    register(redis_url, "box-gone", 22, age=60.0)
    out = dtq("supervisors", "--redis-url", redis_url)
    assert out.returncode == 0 and out.stdout.startswith("no live supervisors")
    assert "1 stale entry not shown" in out.stdout
    refused = dtq("scale", "2", "--redis-url", redis_url)
    assert refused.returncode == 2 and "0 live supervisors" in refused.stderr
    assert dtq("supervisors", "--redis-url", redis_url).returncode == 0
    client = RedisEngine(redis_url).client
    client.delete(keys.SUPERVISORS)
    assert dtq("supervisors", "--redis-url", redis_url).stdout.startswith("no supervisors registered")


def test_an_admin_command_takes_the_url_after_it(redis_url: str) -> None:
    out = dtq("stats", "--json", "--redis-url", redis_url)
    assert out.returncode == 0, out.stderr
    assert dtq("stats", "--json").returncode == 2  # only the refused URL: proves which one is used


@pytest.mark.process
def test_a_killed_supervisor_leaves_the_list(start_supervisor, redis_url: str) -> None:
    engine = RedisEngine(redis_url)

    def state(name: str) -> str:
        return next(("live" if is_live(s) else "stale" for s in engine.supervisors()
                     if s.name == name), "absent")

    # supervise given the URL after the command (the one before it refuses connections)
    sup = start_supervisor("--workers", "1", "--name", "box-k", "--redis-url", redis_url,
                           url=REFUSED)
    wait_until(lambda: state("box-k") == "live", timeout=15, message="box-k registered")
    assert "box-k" in dtq("supervisors", "--redis-url", redis_url).stdout
    sup.signal(signal.SIGKILL)
    sup.wait(10)
    wait_until(lambda: state("box-k") == "stale", timeout=15, interval=0.1, message="box-k stale")
    assert "box-k" not in dtq("supervisors", "--redis-url", redis_url).stdout
    assert " stale " in row(dtq("supervisors", "--all", "--redis-url", redis_url).stdout, "box-k")
