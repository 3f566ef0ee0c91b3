"""Error replies: a server that refuses commands for now (OOM, READONLY) is EngineUnavailable
on the sync API and a lost call on the in-flight one; any other error reply there (WRONGTYPE)
is a lost call too, never an exception out of `read_replies`.

Each test has its own redis-server: they change its maxmemory and replication.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis_server import RedisServer, free_port, running_server

from dtq import keys
from dtq.engine.base import ClaimedJob, Defaults, Outcome, SupervisorInfo
from dtq.engine.redis_engine import RedisEngine
from dtq.errors import EngineUnavailable
from dtq.job import build_job

pytestmark = pytest.mark.redis

Q = "default"


@pytest.fixture
def server() -> Iterator[RedisServer]:
    yield from running_server()


@pytest.fixture
def admin(server: RedisServer) -> Iterator[redis.Redis]:
    client = server.client()
    yield client
    client.close()


@pytest.fixture
def engine(server: RedisServer) -> Iterator[RedisEngine]:
    eng = RedisEngine(server.url, defaults=Defaults(max_attempts=3, backoff=0.1), socket_timeout=5.0)
    yield eng
    eng.client.close()


def out_of_memory(admin: redis.Redis) -> None:
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)


def read_only(admin: redis.Redis) -> None:
    admin.replicaof("127.0.0.1", free_port())  # a master that is not there: writes get READONLY


def claimed(engine: RedisEngine, count: int) -> list[ClaimedJob]:
    for i in range(count):
        engine.enqueue(build_job("p", {"n": i}, f"j{i}", {}))
    jobs = engine.claim(Q, "sup-a", count, 30.0).jobs
    assert len(jobs) == count
    return jobs


def done(job: ClaimedJob) -> Outcome:
    return Outcome(job, "done", json.dumps("ok"), record={"attempt": job.attempt})


def failed(job: ClaimedJob) -> Outcome:
    return Outcome(job, "retry", reason="boom", record={"attempt": job.attempt, "reason": "boom"})


class Calls:
    """on_reply / on_lost callbacks that record what they were given."""

    def __init__(self) -> None:
        self.replies: list[Any] = []
        self.lost: list[EngineUnavailable] = []

    def on_reply(self, reply: Any) -> None:
        self.replies.append(reply)

    def on_lost(self, exc: EngineUnavailable) -> None:
        self.lost.append(exc)


def info() -> SupervisorInfo:
    return SupervisorInfo(name="sup-a", host="h", pid=1, workers=1, busy=0, queues=[Q],
                          started_at=0.0)


@pytest.mark.parametrize("refuse, code", [(out_of_memory, "OOM"), (read_only, "READONLY")])
def test_sync_api_turns_a_refusal_into_engine_unavailable(engine, admin, server, refuse, code):
    job = claimed(engine, 1)[0]
    refuse(admin)
    where = f"Redis at 127.0.0.1:{server.port} refuses commands: {code} "
    calls = [lambda: engine.finish("sup-a", [done(job)]),  # a script
             lambda: engine.enqueue(build_job("p", {}, "new", {})),  # a command, then a script
             lambda: engine.renew("sup-a", [job], 30.0),
             lambda: engine.heartbeat(info(), ttl=60.0)]  # a pipeline
    for call in calls:
        with pytest.raises(EngineUnavailable) as caught:
            call()
        assert str(caught.value).startswith(where), caught.value
    admin.config_set("maxmemory", 0)
    admin.replicaof("NO", "ONE")
    assert engine.finish("sup-a", [done(job)]) == ["done"]
    assert engine.status(job.id, Q).attempt == 1


def test_in_flight_finish_refused_for_lack_of_memory_is_lost_then_recorded_once(engine, admin):
    jobs = claimed(engine, 2)
    outcomes = [done(jobs[0]), failed(jobs[1])]
    out_of_memory(admin)
    calls = Calls()
    engine.finish_soon("sup-a", outcomes, calls.on_reply, calls.on_lost)
    engine.read_replies(wait=True)
    assert calls.replies == [] and len(calls.lost) == 1
    assert "refuses commands: OOM command not allowed" in str(calls.lost[0])
    assert [engine.status(j.id, Q).state for j in jobs] == ["running", "running"]
    admin.config_set("maxmemory", 0)
    engine.finish_soon("sup-a", outcomes, calls.on_reply, calls.on_lost)  # what the supervisor does
    engine.read_replies(wait=True)
    assert calls.replies == [["done", "scheduled"]]
    assert engine.status(jobs[0].id, Q).attempt == 1
    assert engine.status(jobs[1].id, Q).failures == 1
    assert engine.stats(Q)["done"] == 1 and engine.stats(Q)["retried"] == 1


def test_in_flight_claim_refused_by_a_replica_is_lost_and_claims_nothing(engine, admin):
    engine.enqueue(build_job("p", {}, "j0", {}))
    read_only(admin)
    calls = Calls()
    engine.claim_soon(Q, "sup-a", 1, 30.0, 0.0, calls.on_reply, calls.on_lost)
    engine.read_replies(wait=True)
    assert calls.replies == [] and len(calls.lost) == 1
    assert "refuses commands: READONLY" in str(calls.lost[0])
    admin.replicaof("NO", "ONE")
    assert engine.status("j0", Q).state == "queued"
    engine.claim_soon(Q, "sup-a", 1, 30.0, 0.0, calls.on_reply, calls.on_lost)
    engine.read_replies(wait=True)
    assert [j.id for j in calls.replies[0].jobs] == ["j0"]


def test_in_flight_data_error_is_lost_and_later_calls_still_answered(engine, admin):
    """The queue's running set overwritten with a string: the outcome batch meets WRONGTYPE.
    The group is lost (the supervisor sends it again), a call behind it is still answered,
    and a resend once the key is repaired records nothing twice."""
    jobs = claimed(engine, 2)
    engine.enqueue(build_job("p", {}, "later", {"queue": "other"}))
    running = keys.QueueKeys(Q).running
    saved = admin.dump(running)
    admin.delete(running)
    admin.set(running, "not a sorted set")
    outcomes = [done(jobs[0]), failed(jobs[1])]
    finish, claim = Calls(), Calls()
    engine.finish_soon("sup-a", outcomes, finish.on_reply, finish.on_lost)
    engine.claim_soon("other", "sup-a", 1, 30.0, 0.0, claim.on_reply, claim.on_lost)
    engine.read_replies(wait=True)  # raises nothing
    assert finish.replies == [] and len(finish.lost) == 1
    assert "answered with an error: WRONGTYPE" in str(finish.lost[0])
    assert [j.id for j in claim.replies[0].jobs] == ["later"]
    admin.delete(running)
    admin.restore(running, 0, saved)
    engine.finish_soon("sup-a", outcomes, finish.on_reply, finish.on_lost)
    engine.read_replies(wait=True)
    assert finish.replies == [["done", "scheduled"]]
    status = engine.status(jobs[0].id, Q)
    assert status.state == "done" and status.attempt == 1 and len(status.history) == 1


def test_a_clobbered_job_hash_is_stale_and_spoils_nothing_else(engine, admin):
    """One job's hash overwritten with a string: renewing reports that job lost, finishing
    calls it stale, and every other job of the same calls is renewed and recorded."""
    jobs = claimed(engine, 3)
    broken = keys.QueueKeys(Q).job(jobs[1].id)
    admin.delete(broken)
    admin.set(broken, "not a hash")
    renewed = engine.renew("sup-a", jobs, 30.0)
    assert renewed.lost == [jobs[1].id]
    assert engine.finish("sup-a", [done(jobs[0]), done(jobs[1]), failed(jobs[2])]) == \
        ["done", "stale", "scheduled"]
    assert engine.status(jobs[0].id, Q).state == "done"
    with pytest.raises(EngineUnavailable, match="answered with an error: WRONGTYPE"):
        engine.status(jobs[1].id, Q)  # what cannot be read is said, never a raw ResponseError


@pytest.mark.parametrize("message", [
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist",
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "NOREPLICAS Not enough good replicas to write.",
])
def test_refusals_that_only_their_message_names(message):
    engine = RedisEngine("redis://127.0.0.1:1/0")
    for exc in (redis.ResponseError(message),
                redis.ResponseError(f"Command # 1 (SET a b) of pipeline caused error: {message}")):
        assert str(engine.refusal(exc)) == f"Redis at 127.0.0.1:1 refuses commands: {message}"


def test_refusals_that_redis_py_maps_keep_their_code_word():
    engine = RedisEngine("redis://127.0.0.1:1/0")
    oom = redis.exceptions.OutOfMemoryError("command not allowed")  # as redis-py 5 raises it
    assert str(engine.refusal(oom)).endswith("refuses commands: OOM command not allowed")
    down = redis.exceptions.MasterDownError("Link with MASTER is down", status_code="MASTERDOWN")
    assert str(engine.refusal(down)).endswith("refuses commands: MASTERDOWN Link with MASTER is down")
    assert engine.refusal(redis.ResponseError("WRONGTYPE Operation against a key")) is None
