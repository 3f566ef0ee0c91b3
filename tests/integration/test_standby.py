"""Standby: an idle supervisor's free slots are filled by the enqueue itself, which claims
for it and publishes the claim on its control channel (one round trip less)."""

from __future__ import annotations

import json
import select
import time

import pytest

from dtq.engine.redis_engine import RedisEngine
from dtq.job import build_job

pytestmark = pytest.mark.redis


def pushed(listener, timeout: float = 5.0) -> list[str]:
    messages = []
    deadline = time.monotonic() + timeout
    while not messages and time.monotonic() < deadline:
        select.select([listener.fileno()], [], [], 0.2)
        messages = [p for kind, p in listener.drain() if kind == "control"]
    return messages


@pytest.fixture
def engine(redis_url: str) -> RedisEngine:
    return RedisEngine(redis_url)


def test_an_enqueue_claims_for_a_supervisor_on_standby(engine):
    listener = engine.listen(["default"], "box-a")
    assert engine.claim("default", "box-a", 2, lease=30, standby=5).jobs == []
    first = engine.enqueue(build_job("noop", {"n": 1}))
    (message,) = pushed(listener)
    (job,) = engine.pushed_jobs(message)
    assert (job.id, job.attempt, job.plugin, job.data_json) == (first.id, 1, "noop", '{"n":1}')
    status = engine.status(first.id, "default")
    assert status.state == "running" and status.holder == "box-a"  # claimed, under a lease
    assert engine.stats("default")["running"] == 1
    engine.enqueue_many([build_job("noop", {"n": n}) for n in (2, 3)])
    (message,) = pushed(listener)
    assert len(engine.pushed_jobs(message)) == 1  # one slot was left, not two
    assert engine.stats("default")["ready"] == 1
    listener.close()


def test_pushed_data_keeps_every_character(engine):
    """The push is \\x1e-separated text: data holding those characters (escaped in JSON)
    and non-ASCII text arrive intact; a message that is not a push is not taken for one."""
    listener = engine.listen(["default"], "box-c")
    engine.claim("default", "box-c", 1, lease=30, standby=5)
    data = {"s": "a\x1eb\x1fc", "u": "\u00e9\u4e2d", "n": [1, {"x": None}]}
    engine.enqueue(build_job("noop", data))
    (message,) = pushed(listener)
    (job,) = engine.pushed_jobs(message)
    assert json.loads(job.data_json) == data
    assert engine.pushed_jobs('{"workers": 2}') is None  # not a claim: a command
    assert engine.pushed_jobs("push\x1edefault\x1eonly-one-field") == []
    assert engine.pushed_jobs("push\x1edefault\x1enot-a-claim\x1e{}") == []
    listener.close()


def test_standby_ends_with_a_claim_a_withdrawal_or_its_time(engine, redis_url):
    engine.claim("default", "box-a", 1, lease=30, standby=5)
    engine.withdraw(["default"], "box-a")
    engine.enqueue(build_job("noop", {}))
    assert engine.stats("default")["ready"] == 1  # nobody stands by any more
    # takes the one ready job and leaves one free slot registered for 50 ms
    assert len(engine.claim("default", "box-a", 2, lease=30, standby=0.05).jobs) == 1
    time.sleep(0.1)
    engine.enqueue(build_job("noop", {}))  # too late: the registration has expired
    assert engine.stats("default")["ready"] == 1 and engine.stats("default")["running"] == 1


def test_a_paused_queue_is_not_pushed(engine, redis_url):
    engine.claim("default", "box-a", 1, lease=30, standby=5)
    engine.client.set("dtq:{default}:paused", 1)
    engine.enqueue(build_job("noop", {}))
    assert engine.stats("default")["ready"] == 1 and engine.stats("default")["running"] == 0
