"""The Engine contract (dtq.engine.base.Engine), checked against every engine we ship.

Each test takes the ``engine`` fixture, parametrised over RedisEngine on a real
redis-server and RedisEngine on fakeredis (with Lua). Behaviour that only a
real server gives (Pub/Sub wake-ups on a socket, a restart) uses ``real_engine``.
A third-party engine can be checked by adding it to ``ENGINES``.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from redis_server import RedisServer, free_port, running_server
from waiting import wait_until

from dtq import keys
from dtq.engine.base import ClaimedJob, Defaults, Engine, Outcome, SupervisorInfo
from dtq.engine.redis_engine import RedisEngine
from dtq.engine.redis_listener import RedisListener
from dtq.errors import EngineUnavailable
from dtq.job import MAX_ENVELOPE_BYTES, MAX_NESTING, Job, build_job

pytestmark = pytest.mark.redis

Q = "default"
DEFAULTS = Defaults(max_attempts=3, backoff=0.1, result_ttl=600.0)
ENGINES = ["redis", "fakeredis"]


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[RedisEngine]:
    if request.param == "redis":
        eng = RedisEngine(request.getfixturevalue("redis_url"), defaults=DEFAULTS)
    else:
        eng = RedisEngine(client=request.getfixturevalue("fake_redis"), defaults=DEFAULTS)
    yield eng
    eng.client.close()


@pytest.fixture
def real_engine(redis_url: str) -> Iterator[RedisEngine]:
    eng = RedisEngine(redis_url, defaults=DEFAULTS)
    yield eng
    eng.client.close()


def job(job_id: str, plugin: str = "p", data: Any = None, **options: Any) -> Job:
    return build_job(plugin, {"n": job_id} if data is None else data, job_id, options)


def claim(engine: Engine, count: int = 1, holder: str = "sup-a", lease: float = 30.0,
          queue: str = Q) -> list[ClaimedJob]:
    return engine.claim(queue, holder, count, lease).jobs


def claim_one(engine: Engine, **kw: Any) -> ClaimedJob:
    jobs = claim(engine, 1, **kw)
    assert len(jobs) == 1, jobs
    return jobs[0]


def failed(c: ClaimedJob, reason: str, kind: str = "retry") -> Outcome:
    """A failed attempt as the supervisor reports it (the reason in the attempt record)."""
    return Outcome(c, kind, reason=reason, record={"attempt": c.attempt, "reason": reason})


def done(c: ClaimedJob, result: Any = "ok") -> Outcome:
    return Outcome(c, "done", json.dumps(result), record={"attempt": c.attempt, "wall": 0.01})


def state(engine: Engine, job_id: str, queue: str = Q) -> str | None:
    status = engine.status(job_id, queue)
    return None if status is None else status.state


# --- enqueue ------------------------------------------------------------------------------------


def test_enqueue_one(engine: RedisEngine) -> None:
    before = time.time()
    result = engine.enqueue(job("a", plugin="montage_image", data={"images": ["x.jpg"]},
                                timeout=30, memory_limit="512M", priority=2))
    assert (result.id, result.queue, result.created, result.state) == ("a", Q, True, "queued")
    s = engine.status("a", Q)
    assert s is not None
    assert (s.id, s.queue, s.state, s.plugin) == ("a", Q, "queued", "montage_image")
    assert s.data == {"images": ["x.jpg"]}
    assert (s.attempt, s.failures, s.holder, s.result, s.error) == (0, 0, "", None, "")
    assert s.enqueued_at is not None and before - 1 <= s.enqueued_at <= time.time() + 1
    assert s.options["timeout"] == 30 and s.options["memory_limit"] == 512 * 2**20
    assert s.options["priority"] == 2
    assert not s.finished
    assert Q in engine.queues()
    assert engine.stats(Q)["ready"] == 1 and engine.stats(Q)["enqueued"] == 1


def test_enqueue_many_across_queues(engine: RedisEngine) -> None:
    jobs = [job(f"j{i}", queue="images" if i % 2 else "mail") for i in range(10)]
    results = engine.enqueue_many(jobs)
    assert [r.id for r in results] == [f"j{i}" for i in range(10)]
    assert [r.queue for r in results] == ["images" if i % 2 else "mail" for i in range(10)]
    assert all(r.created and r.state == "queued" for r in results)
    assert engine.stats("images")["ready"] == 5 and engine.stats("mail")["ready"] == 5
    assert {"images", "mail"} <= set(engine.queues())
    assert engine.status("j1", "images") is not None
    assert engine.status("j1", "mail") is None


def test_enqueue_many_of_nothing(engine: RedisEngine) -> None:
    assert engine.enqueue_many([]) == []


def test_enqueue_existing_id_is_reported_not_stored_again(engine: RedisEngine) -> None:
    assert engine.enqueue(job("dup", data={"v": 1})).created
    again = engine.enqueue(job("dup", data={"v": 2}))
    assert (again.id, again.created, again.state) == ("dup", False, "queued")
    assert engine.status("dup", Q).data == {"v": 1}
    stats = engine.stats(Q)
    assert (stats["ready"], stats["enqueued"]) == (1, 1)
    assert len(claim(engine, 10)) == 1


def test_duplicate_ids_within_one_batch(engine: RedisEngine) -> None:
    results = engine.enqueue_many([job("x", data=1), job("y"), job("x", data=2)])
    assert [r.created for r in results] == [True, True, False]
    assert engine.stats(Q)["ready"] == 2


def test_enqueue_existing_id_reports_its_current_state(engine: RedisEngine) -> None:
    engine.enqueue(job("r"))
    c = claim_one(engine)
    assert engine.enqueue(job("r")).state == "running"
    engine.finish("sup-a", [done(c)])
    result = engine.enqueue(job("r"))
    assert (result.created, result.state) == (False, "done")
    assert engine.stats(Q)["ready"] == 0


# --- claim ---------------------------------------------------------------------------------------


def test_claim_never_more_than_asked(engine: RedisEngine) -> None:
    engine.enqueue_many([job(f"j{i}") for i in range(5)])
    assert claim(engine, 0) == []
    first = claim(engine, 3)
    assert len(first) == 3
    rest = claim(engine, 10)
    assert len(rest) == 2
    assert claim(engine, 10) == []
    assert {c.id for c in first + rest} == {f"j{i}" for i in range(5)}
    assert engine.stats(Q)["running"] == 5 and engine.stats(Q)["ready"] == 0


def test_claim_records_holder_and_attempt(engine: RedisEngine) -> None:
    engine.enqueue(job("a", plugin="montage_image", data={"k": [1, "é"]}, timeout=2.5,
                       memory_limit="1G"))
    before = time.time()
    c = claim_one(engine, holder="box1:123")
    assert (c.id, c.queue, c.attempt, c.plugin, c.failures) == ("a", Q, 1, "montage_image", 0)
    assert json.loads(c.data_json) == {"k": [1, "é"]}
    assert (c.timeout, c.memory_limit) == (2.5, 2**30)
    s = engine.status("a", Q)
    assert (s.state, s.holder, s.attempt) == ("running", "box1:123", 1)
    assert s.started_at is not None and s.started_at >= before - 1


def test_claim_without_options_has_no_limits(engine: RedisEngine) -> None:
    engine.enqueue(job("a"))
    c = claim_one(engine)
    assert (c.timeout, c.memory_limit) == (None, None)


def test_claim_only_from_its_queue(engine: RedisEngine) -> None:
    engine.enqueue(job("a", queue="other"))
    assert claim(engine, 5) == []
    assert [c.id for c in claim(engine, 5, queue="other")] == ["a"]


def test_strict_priorities_fifo_within_one(engine: RedisEngine) -> None:
    order = [("a", 0), ("b", 5), ("c", -3), ("d", 5), ("e", 0), ("f", 1000), ("g", -1000), ("h", 1)]
    for job_id, priority in order:  # one by one: FIFO must hold across calls, not only in a batch
        engine.enqueue(job(job_id, priority=priority))
    claimed = [claim_one(engine).id for _ in order]
    assert claimed == ["f", "b", "d", "h", "a", "e", "c", "g"]


def test_priorities_within_a_batch_claim(engine: RedisEngine) -> None:
    engine.enqueue_many([job("low", priority=-1), job("mid"), job("high", priority=9), job("mid2")])
    assert [c.id for c in claim(engine, 3)] == ["high", "mid", "mid2"]


def test_delayed_job_not_claimable_before_its_time(engine: RedisEngine) -> None:
    result = engine.enqueue(job("later", delay=0.4))
    assert (result.created, result.state) == (True, "scheduled")
    s = engine.status("later", Q)
    assert s.state == "scheduled"
    reply = engine.claim(Q, "sup-a", 5, 30)
    assert reply.jobs == []
    assert reply.next_due is not None and time.time() < reply.next_due <= time.time() + 0.5
    assert engine.stats(Q)["scheduled"] == 1
    got = wait_until(lambda: claim(engine, 5), timeout=5, message="the delayed job")
    assert time.time() >= reply.next_due - 0.01  # clocks of one box: no earlier than due
    assert [c.id for c in got] == ["later"]
    assert engine.stats(Q)["scheduled"] == 0


def test_run_at_in_the_past_is_ready_now(engine: RedisEngine) -> None:
    assert engine.enqueue(job("past", run_at=1_000_000)).state == "queued"
    assert claim_one(engine).id == "past"


def test_run_at_job_waits_for_its_time(engine: RedisEngine) -> None:
    due = time.time() + 0.3
    engine.enqueue(job("at", run_at=due))
    assert claim(engine) == []
    wait_until(lambda: claim(engine), timeout=5, message="the run_at job")
    assert time.time() >= due - 0.01


def test_next_due_is_none_without_delayed_jobs(engine: RedisEngine) -> None:
    engine.enqueue(job("now"))
    assert engine.claim(Q, "sup-a", 1, 30).next_due is None


def test_paused_queue_gives_nothing(engine: RedisEngine) -> None:
    engine.enqueue(job("a"))
    engine.client.set(keys.QueueKeys(Q).paused, "1")
    assert claim(engine) == []
    assert engine.stats(Q)["paused"] == 1
    engine.client.delete(keys.QueueKeys(Q).paused)
    assert claim_one(engine).id == "a"


# --- finishing ---------------------------------------------------------------------------------------


def test_complete_records_result_and_history(engine: RedisEngine) -> None:
    engine.enqueue(job("a"))
    c = claim_one(engine)
    assert engine.finish("sup-a", [done(c, {"sheet": "/out/s.jpg"})]) == ["done"]
    s = engine.status("a", Q)
    assert (s.state, s.result, s.holder, s.error) == ("done", {"sheet": "/out/s.jpg"}, "", "")
    assert s.history == [{"attempt": 1, "wall": 0.01}]
    assert s.finished and s.finished_at is not None
    stats = engine.stats(Q)
    assert (stats["running"], stats["done"]) == (0, 1)


def _never_lost(exc: EngineUnavailable) -> None:
    raise AssertionError(f"a call in flight was lost: {exc}")


def test_calls_in_flight_are_answered_in_the_order_sent(engine: RedisEngine) -> None:
    engine.enqueue_many([job("a"), job("b", backoff=0, max_attempts=2), job("c"), job("d")])
    a, b = claim(engine, 2)
    got: list[tuple[str, Any]] = []
    engine.finish_soon("sup-a", [done(a), failed(b, "boom")], lambda s: got.append(("finish", s)),
                       _never_lost)
    engine.claim_soon(Q, "sup-a", 5, 30.0, 0.0, lambda r: got.append(("claim", r)), _never_lost)
    engine.read_replies(wait=True)
    assert [name for name, _ in got] == ["finish", "claim"]
    assert got[0][1] == ["done", "queued"]
    # b's retry was ready before the claim ran, so the claim takes it with c and d
    assert sorted((c.id, c.attempt) for c in got[1][1].jobs) == [("b", 2), ("c", 1), ("d", 1)]
    assert got[1][1].next_due is None
    assert engine.replies_fileno() == -1
    engine.finish_soon("sup-a", [done(a)], lambda s: got.append(("again", s)), _never_lost)
    engine.read_replies(wait=True)
    assert got[-1] == ("again", ["done"])  # a resend of a recorded attempt (its reply was lost)


def test_complete_is_fenced_by_holder_and_attempt(engine: RedisEngine) -> None:
    engine.enqueue(job("a", backoff=0))
    old = claim_one(engine, holder="sup-a")
    # sup-a is cut off and restarts: its job goes back and sup-b takes the next attempt.
    assert engine.recover(Q, holder="sup-a") == [("a", "queued")]
    new = claim_one(engine, holder="sup-b")
    assert new.attempt == old.attempt + 1
    assert engine.finish("sup-a", [done(old, "stale result")]) == ["stale"]
    assert engine.finish("sup-a", [failed(old, "stale failure")]) == ["stale"]
    s = engine.status("a", Q)
    assert (s.state, s.holder, s.attempt, s.result) == ("running", "sup-b", 2, None)
    assert engine.finish("sup-b", [done(new, "fresh")]) == ["done"]
    assert engine.status("a", Q).result == "fresh"
    assert engine.finish("sup-b", [done(new, "twice")]) == ["done"]  # recorded already
    assert engine.status("a", Q).result == "fresh"
    assert engine.finish("sup-a", [done(old, "stale again")]) == ["stale"]


def test_finish_by_another_holder_with_the_right_attempt_is_stale(engine: RedisEngine) -> None:
    engine.enqueue(job("a"))
    c = claim_one(engine, holder="sup-a")
    assert engine.finish("sup-x", [done(c)]) == ["stale"]
    assert state(engine, "a") == "running"


def test_finish_of_missing_job_is_stale(engine: RedisEngine) -> None:
    ghost = ClaimedJob("ghost", Q, 1, "p", "null")
    assert engine.finish("sup-a", [done(ghost), failed(ghost, "x")]) == ["stale", "stale"]


def test_finish_mixed_batch_keeps_order(engine: RedisEngine) -> None:
    engine.enqueue_many([job("a"), job("b"), job("c", queue="other")])
    a, b = claim(engine, 2)
    c = claim_one(engine, queue="other")
    states = engine.finish("sup-a", [failed(a, "no", "permanent"), done(c), done(b)])
    assert states == ["dead", "done", "done"]


def test_retry_with_backoff_then_dead_with_every_reason(engine: RedisEngine) -> None:
    engine.enqueue(job("r", max_attempts=3, backoff=0.3))  # >= 0.15 s: a VM stall rarely hides it
    reasons = ["exit code 3", "killed by SIGSEGV", "killed by SIGKILL (timeout after 1 s)"]
    for attempt, reason in enumerate(reasons, 1):
        c = wait_until(lambda: claim(engine), timeout=5, message=f"attempt {attempt}")[0]
        assert (c.attempt, c.failures) == (attempt, attempt - 1)
        new_state = engine.finish("sup-a", [failed(c, reason)])[0]
        if attempt < 3:
            assert new_state == "scheduled"
            s = engine.status("r", Q)
            assert (s.state, s.failures, s.error, s.holder) == ("scheduled", attempt, reason, "")
            assert claim(engine) == []  # backoff: not at once
    assert new_state == "dead"
    s = engine.status("r", Q)
    assert (s.state, s.failures, s.attempt, s.error) == ("dead", 3, 3, reasons[-1])
    assert [h["reason"] for h in s.history] == reasons
    stats = engine.stats(Q)
    assert (stats["dead"], stats["dead_total"], stats["failed"], stats["retried"]) == (1, 1, 3, 2)
    assert stats["running"] == stats["scheduled"] == stats["ready"] == 0


def test_default_max_attempts_applies_without_the_option(engine: RedisEngine) -> None:
    engine.enqueue(job("r", backoff=0))
    for _ in range(DEFAULTS.max_attempts):
        c = claim_one(engine)
        last = engine.finish("sup-a", [failed(c, "boom")])[0]
    assert last == "dead"


def test_backoff_grows(engine: RedisEngine) -> None:
    engine.enqueue(job("b", max_attempts=5, backoff=10))
    delays = []
    for _ in range(3):
        c = claim_one(engine)
        engine.finish("sup-a", [failed(c, "x")])
        run_at = engine.status("b", Q).options["run_at"]
        delays.append(run_at - time.time())
        engine.client.zadd(keys.QueueKeys(Q).delayed, {"b": 0})  # make it due now
    # base 10 s doubled per failure, jittered x0.5-1.5
    assert 4 <= delays[0] <= 15 and 9 <= delays[1] <= 30 and 19 <= delays[2] <= 60


def test_permanent_failure_is_dead_at_once(engine: RedisEngine) -> None:
    engine.enqueue(job("p", max_attempts=5))
    c = claim_one(engine)
    assert engine.finish("sup-a", [failed(c, "bad input: not an image", "permanent")]) == ["dead"]
    s = engine.status("p", Q)
    assert (s.state, s.failures, s.error) == ("dead", 1, "bad input: not an image")
    assert engine.stats(Q)["dead"] == 1
    assert claim(engine) == []


def test_cancelled_outcome(engine: RedisEngine) -> None:
    engine.enqueue(job("c"))
    c = claim_one(engine)
    out = Outcome(c, "cancelled", reason="cancelled by operator",
                  record={"attempt": 1, "reason": "cancelled by operator"})
    assert engine.finish("sup-a", [out]) == ["cancelled"]
    s = engine.status("c", Q)
    assert (s.state, s.error) == ("cancelled", "cancelled by operator")
    stats = engine.stats(Q)
    assert (stats["cancelled"], stats["dead"], stats["running"], stats["failed"]) == (1, 0, 0, 0)


def test_give_back_counts_no_failure(engine: RedisEngine) -> None:
    engine.enqueue_many([job("a"), job("b"), job("c")])
    held = claim(engine, 2)
    assert engine.give_back("sup-a", held) == 2
    for c in held:
        s = engine.status(c.id, Q)
        assert (s.state, s.failures, s.holder) == ("queued", 0, "")
    assert engine.stats(Q)["running"] == 0
    again = claim(engine, 3)
    assert {c.id for c in again} == {"a", "b", "c"}
    assert {c.id: c.attempt for c in again} == {"a": 2, "b": 2, "c": 1}  # a new fence each claim
    assert all(c.failures == 0 for c in again)


def test_jobs_given_back_return_to_their_place_in_the_queue(engine: RedisEngine) -> None:
    """Jobs a supervisor claimed ahead and gives back unrun go before what was enqueued
    since, and in their old order; one whose place is unknown goes to the back."""
    engine.enqueue_many([job("a"), job("b"), job("c")])
    held = claim(engine, 2)
    engine.enqueue_many([job("d"), job("urgent", priority=5)])
    assert [c.id for c in held] == ["a", "b"] and all(c.score for c in held)
    assert engine.give_back("sup-a", [held[1], held[0]]) == 2
    assert [c.id for c in claim(engine, 5)] == ["urgent", "a", "b", "c", "d"]


def test_a_job_given_back_without_its_place_goes_to_the_back(engine: RedisEngine) -> None:
    engine.enqueue_many([job("a"), job("b")])
    first = claim_one(engine)
    assert engine.give_back("sup-a", [first._replace(score="")]) == 1
    assert [c.id for c in claim(engine, 2)] == ["b", "a"]


def test_give_back_of_a_job_no_longer_ours(engine: RedisEngine) -> None:
    engine.enqueue(job("a", backoff=0))
    old = claim_one(engine, holder="sup-a")
    engine.recover(Q, holder="sup-a")
    claim_one(engine, holder="sup-b")
    assert engine.give_back("sup-a", [old]) == 0
    assert engine.status("a", Q).holder == "sup-b"


def test_give_back_unknown_returns_only_the_holders_jobs_it_does_not_know(engine: RedisEngine) -> None:
    engine.enqueue_many([job("known"), job("lost-1"), job("lost-2"), job("theirs"), job("fresh")])
    known, lost_1, lost_2 = claim(engine, 3, lease=30)
    theirs = claim_one(engine, holder="sup-b")
    now = time.time()
    fresh = claim_one(engine, lease=60)  # its lease ends after the limit: a push on its way
    returned = engine.give_back_unknown(Q, "sup-a", [known.id], lease_before=now + 45)
    assert sorted(returned) == sorted([lost_1.id, lost_2.id])
    for c in (lost_1, lost_2):
        s = engine.status(c.id, Q)
        assert (s.state, s.failures, s.holder) == ("queued", 0, "")
    assert [state(engine, c.id) for c in (known, theirs, fresh)] == ["running"] * 3
    assert engine.give_back_unknown(Q, "sup-a", [known.id], lease_before=now + 45) == []


# --- leases: renew and recover ----------------------------------------------------------------------


def test_renew_extends_the_lease(engine: RedisEngine) -> None:
    engine.enqueue_many([job("kept"), job("dropped")])
    kept, dropped = claim(engine, 2, lease=0.1)
    result = engine.renew("sup-a", [kept], lease=30)
    assert (result.lost, result.cancel) == ([], [])
    recovered = wait_until(lambda: engine.recover(Q), timeout=5, message="the unrenewed lease")
    assert [r[0] for r in recovered] == ["dropped"]
    assert state(engine, "kept") == "running"
    assert engine.recover(Q) == []


def test_renew_reports_lost_and_cancel_requested(engine: RedisEngine) -> None:
    engine.enqueue_many([job("a", backoff=0), job("b", backoff=0), job("c", backoff=0)])
    a, b, c = claim(engine, 3, holder="sup-a")
    engine.recover(Q, holder="sup-a")  # everything sup-a held goes back...
    taken = {x.id: x for x in claim(engine, 3, holder="sup-b")}  # ...to sup-b
    assert set(taken) == {"a", "b", "c"}
    assert engine.renew("sup-a", [a, b], 30).lost == ["a", "b"]
    a2 = engine.status("a", Q)
    assert (a2.holder, a2.state) == ("sup-b", "running")
    assert engine.cancel("c", Q) == "requested"
    result = engine.renew("sup-b", [taken["a"], taken["c"]], 30)
    assert (result.lost, result.cancel) == ([], ["c"])


def test_renew_of_nothing(engine: RedisEngine) -> None:
    assert engine.renew("sup-a", [], 30).lost == []


def test_recover_leaves_live_leases_alone(engine: RedisEngine) -> None:
    engine.enqueue(job("a"))
    claim_one(engine, lease=30)
    assert engine.recover(Q) == []
    assert state(engine, "a") == "running"


def test_recover_by_lease_expiry(engine: RedisEngine) -> None:
    engine.enqueue(job("a", backoff=0))
    c = claim_one(engine, holder="sup-gone", lease=0.05)
    recovered = wait_until(lambda: engine.recover(Q), timeout=5, message="lease expiry")
    assert recovered == [("a", "queued")]
    s = engine.status("a", Q)
    assert (s.state, s.failures, s.holder) == ("queued", 1, "")
    assert "lease expired" in s.error and "sup-gone" in s.error
    assert s.history[-1]["reason"] == s.error
    again = claim_one(engine, holder="sup-b")
    assert again.attempt == c.attempt + 1
    assert engine.finish("sup-gone", [done(c)]) == ["stale"]


def test_recover_counts_toward_max_attempts(engine: RedisEngine) -> None:
    engine.enqueue(job("a", max_attempts=1))
    claim_one(engine, lease=0.05)
    recovered = wait_until(lambda: engine.recover(Q), timeout=5, message="lease expiry")
    assert recovered == [("a", "dead")]
    assert engine.stats(Q)["dead"] == 1


def test_recover_by_holder_name(engine: RedisEngine) -> None:
    engine.enqueue_many([job("a1", backoff=0), job("a2", backoff=0), job("b1")])
    claim(engine, 2, holder="box:1")
    claim_one(engine, holder="box:2")
    recovered = engine.recover(Q, holder="box:1")
    assert sorted(recovered) == [("a1", "queued"), ("a2", "queued")]
    assert "restarted" in engine.status("a1", Q).error
    assert (state(engine, "b1"), engine.status("b1", Q).holder) == ("running", "box:2")
    assert engine.recover(Q, holder="box:1") == []
    assert engine.recover(Q) == []  # b1's lease is still good


def test_recover_respects_its_limit(engine: RedisEngine) -> None:
    engine.enqueue_many([job(f"j{i}", backoff=0) for i in range(4)])
    claim(engine, 4, lease=0.01)
    first = wait_until(lambda: engine.recover(Q, limit=3), timeout=5, message="lease expiry")
    assert len(first) == 3
    assert len(engine.recover(Q)) == 1


# --- cancel -----------------------------------------------------------------------------------------


def test_cancel_queued_and_scheduled(engine: RedisEngine) -> None:
    engine.enqueue_many([job("q"), job("s", delay=60)])
    assert engine.cancel("q", Q) == "cancelled"
    assert engine.cancel("s", Q) == "cancelled"
    for job_id in ("q", "s"):
        s = engine.status(job_id, Q)
        assert (s.state, s.error) == ("cancelled", "cancelled by operator")
    assert claim(engine, 5) == []
    stats = engine.stats(Q)
    assert (stats["ready"], stats["scheduled"], stats["cancelled"]) == (0, 0, 2)


def test_cancel_running_asks_its_holder(engine: RedisEngine) -> None:
    engine.enqueue(job("r"))
    c = claim_one(engine, holder="sup-a")
    assert engine.cancel("r", Q) == "requested"
    s = engine.status("r", Q)
    assert (s.state, s.holder) == ("running", "sup-a")
    assert engine.renew("sup-a", [c], 30).cancel == ["r"]
    out = Outcome(c, "cancelled", reason="cancelled by operator", record={"attempt": 1})
    assert engine.finish("sup-a", [out]) == ["cancelled"]
    assert state(engine, "r") == "cancelled"


def test_cancel_finished_and_missing(engine: RedisEngine) -> None:
    engine.enqueue(job("d"))
    engine.finish("sup-a", [done(claim_one(engine))])
    assert engine.cancel("d", Q) == "finished:done"
    assert state(engine, "d") == "done"
    assert engine.cancel("nope", Q) == "missing"
    assert engine.status("nope", Q) is None


# --- status and wait ------------------------------------------------------------------------------


def test_status_of_missing_job(engine: RedisEngine) -> None:
    assert engine.status("missing", Q) is None
    assert engine.wait("missing", Q, timeout=0.1) is None


def _finish_later(engine: RedisEngine, c: ClaimedJob, delay: float, outcome: Outcome) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)  # the point of the test: the finishing happens while wait() blocks
        engine.finish("sup-a", [outcome])

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_wait_returns_when_done_without_polling(engine: RedisEngine) -> None:
    engine.enqueue(job("w"))
    c = claim_one(engine)
    started = time.monotonic()
    thread = _finish_later(engine, c, 0.3, done(c, 42))
    status = engine.wait("w", Q, timeout=8)
    elapsed = time.monotonic() - started
    thread.join(5)
    assert status is not None and (status.state, status.result) == ("done", 42)
    assert 0.28 <= elapsed < 1.5, elapsed  # the engine's own fallback re-check is every 5 s


def test_wait_returns_on_dead_and_not_on_retry(engine: RedisEngine) -> None:
    engine.enqueue(job("w", max_attempts=2, backoff=0))
    c = claim_one(engine)
    engine.finish("sup-a", [failed(c, "first")])  # retried: wait must not return for this
    c2 = claim_one(engine)
    started = time.monotonic()
    thread = _finish_later(engine, c2, 0.3, failed(c2, "second"))
    status = engine.wait("w", Q, timeout=8)
    thread.join(5)
    assert status.state == "dead" and status.error == "second"
    assert time.monotonic() - started < 1.5


def test_wait_with_timeout_returns_the_unfinished_status(engine: RedisEngine) -> None:
    engine.enqueue(job("slow"))
    started = time.monotonic()
    status = engine.wait("slow", Q, timeout=0.2)
    elapsed = time.monotonic() - started
    assert status is not None and status.state == "queued" and not status.finished
    assert 0.19 <= elapsed < 2.0
    # The waiter it registered is gone: a later finish does not leave tokens for nobody.
    engine.finish("sup-a", [done(claim_one(engine))])
    assert not engine.client.exists(keys.QueueKeys(Q).notify("slow"))


def test_wait_on_a_finished_job_returns_at_once(engine: RedisEngine) -> None:
    engine.enqueue(job("f"))
    engine.finish("sup-a", [done(claim_one(engine), "r")])
    started = time.monotonic()
    assert engine.wait("f", Q, timeout=5).result == "r"
    assert time.monotonic() - started < 1.0


def test_two_waiters_are_both_woken(engine: RedisEngine) -> None:
    engine.enqueue(job("w2"))
    c = claim_one(engine)
    results: list[Any] = []

    def waiter() -> None:
        results.append(engine.wait("w2", Q, timeout=8))

    threads = [threading.Thread(target=waiter, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    raw = engine.client
    wait_until(lambda: int(raw.hget(keys.QueueKeys(Q).job("w2"), "waiters") or 0) == 2, timeout=5,
               message="two registered waiters")
    started = time.monotonic()
    engine.finish("sup-a", [done(c)])
    for t in threads:
        t.join(5)
    assert time.monotonic() - started < 1.5
    assert [r.state for r in results] == ["done", "done"]


# --- result TTL ---------------------------------------------------------------------------------


def test_short_result_ttl_expires_the_job(engine: RedisEngine) -> None:
    engine.enqueue(job("t", result_ttl=0.3))
    engine.finish("sup-a", [done(claim_one(engine))])
    assert state(engine, "t") == "done"
    wait_until(lambda: engine.status("t", Q) is None, timeout=5, message="the result to expire")


def test_default_result_ttl_applies(engine: RedisEngine) -> None:
    engine.enqueue(job("t"))
    engine.finish("sup-a", [done(claim_one(engine))])
    ttl = engine.client.pttl(keys.QueueKeys(Q).job("t"))
    assert DEFAULTS.result_ttl * 1000 - 5000 < ttl <= DEFAULTS.result_ttl * 1000


def test_dead_jobs_do_not_expire(engine: RedisEngine) -> None:
    engine.enqueue(job("d", result_ttl=0.1))
    engine.finish("sup-a", [failed(claim_one(engine), "bad", "permanent")])
    assert engine.client.pttl(keys.QueueKeys(Q).job("d")) == -1  # kept for the operator


def test_cancelled_jobs_expire_like_results(engine: RedisEngine) -> None:
    engine.enqueue(job("c", result_ttl=0.2))
    engine.cancel("c", Q)
    wait_until(lambda: engine.status("c", Q) is None, timeout=5, message="the cancelled job to expire")


# --- progress and stats ----------------------------------------------------------------------------


def test_progress_of_running_jobs_only(engine: RedisEngine) -> None:
    engine.enqueue_many([job("a"), job("b")])
    a, b = claim(engine, 2)
    engine.finish("sup-a", [done(b)])
    engine.set_progress({(Q, "a"): {"fraction": 0.5, "message": "half"},
                         (Q, "b"): {"fraction": 1.0}, (Q, "gone"): {"fraction": 0.1}})
    assert engine.status("a", Q).progress == {"fraction": 0.5, "message": "half"}
    assert engine.status("b", Q).progress is None
    assert engine.status("gone", Q) is None  # never recreated


def test_stats_counters(engine: RedisEngine) -> None:
    engine.enqueue_many([job("a"), job("b"), job("c"), job("d"), job("later", delay=60)])
    engine.enqueue(job("a"))  # existing: not counted again
    a, b, c, d = claim(engine, 4)
    engine.finish("sup-a", [done(a), failed(b, "x", "permanent"), failed(c, "y")])
    engine.client.rpush(keys.QueueKeys(Q).inbox, b"not json")
    stats = engine.stats(Q)
    assert stats == {"ready": 0, "scheduled": 2, "running": 1, "dead": 1, "inbox": 1, "paused": 0,
                     "enqueued": 5, "done": 1, "failed": 2, "retried": 1, "cancelled": 0,
                     "malformed": 0, "dead_total": 1}
    assert engine.admit_inbox(Q) == 1
    stats = engine.stats(Q)
    assert (stats["inbox"], stats["malformed"], stats["dead"], stats["dead_total"]) == (0, 1, 2, 2)


def test_stats_of_an_unknown_queue_are_zero(engine: RedisEngine) -> None:
    assert set(engine.stats("never-used").values()) == {0}


# --- admit_inbox: plain-Redis producers --------------------------------------------------------------


def _push(engine: RedisEngine, *entries: bytes | str, queue: str = Q) -> None:
    engine.client.rpush(keys.QueueKeys(queue).inbox, *entries)


def _dead_ids(engine: RedisEngine, queue: str = Q) -> list[str]:
    return [x.decode() for x in engine.client.zrange(keys.QueueKeys(queue).dead, 0, -1)]


def test_admit_inbox_turns_entries_into_jobs(engine: RedisEngine) -> None:
    perl = {"id": "21876931", "job": {"plugin": "montage_image", "data": {"images": ["a.jpg"]}}}
    _push(engine, json.dumps(perl),
          json.dumps({"job": {"plugin": "p", "data": 7}, "options": {"priority": 5}}),
          '{"id": 42, "job": {"plugin": "p", "data": "int id"}}')
    assert engine.admit_inbox(Q) == 3
    assert engine.stats(Q)["inbox"] == 0
    assert engine.stats(Q)["enqueued"] == 3
    claimed = claim(engine, 5)
    assert claimed[0].plugin == "p" and json.loads(claimed[0].data_json) == 7  # priority 5 first
    by_id = {c.id: c for c in claimed}
    assert by_id["21876931"].plugin == "montage_image"
    assert json.loads(by_id["21876931"].data_json) == {"images": ["a.jpg"]}
    assert json.loads(by_id["42"].data_json) == "int id"
    assert Q in engine.queues()


def test_admit_inbox_of_an_empty_inbox(engine: RedisEngine) -> None:
    assert engine.admit_inbox(Q) == 0


def test_admit_inbox_respects_its_limit(engine: RedisEngine) -> None:
    _push(engine, *[json.dumps({"id": f"j{i}", "job": {"plugin": "p"}}) for i in range(5)])
    assert engine.admit_inbox(Q, limit=2) == 2
    assert engine.stats(Q)["inbox"] == 3
    assert [c.id for c in claim(engine, 5)] == ["j0", "j1"]  # FIFO: the inbox head first
    assert engine.admit_inbox(Q, limit=10) == 3


def test_admit_inbox_honours_delay_and_existing_ids(engine: RedisEngine) -> None:
    engine.enqueue(job("exists", data="original"))
    _push(engine, json.dumps({"id": "exists", "job": {"plugin": "p", "data": "again"}}),
          json.dumps({"id": "later", "job": {"plugin": "p"}, "options": {"delay": 60}}))
    assert engine.admit_inbox(Q) == 2
    assert engine.status("exists", Q).data == "original"
    assert state(engine, "later") == "scheduled"
    assert engine.stats(Q)["enqueued"] == 2  # 'exists' once, 'later' once


def _deep(levels: int) -> Any:
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


MALFORMED = {
    "invalid JSON": (b'{"job": {"plugin": "p",', "not valid JSON"),
    "not an object": (b'["p", {}]', "must be a JSON object"),
    "missing job": (b'{"id": "m1"}', "job: is required"),
    "missing plugin": (b'{"id": "m2", "job": {"data": 1}}', "job.plugin: is required"),
    "wrong type": (b'{"id": "m3", "job": {"plugin": "p"}, "options": {"timeout": "30s"}}',
                   "options.timeout: must be a number"),
    "unknown option": (b'{"id": "m4", "job": {"plugin": "p"}, "options": {"prio": 1}}',
                       "options.prio: unknown option"),
    "bad id": (b'{"id": "a b", "job": {"plugin": "p"}}', "id: must be"),
    "other queue": (b'{"id": "m5", "job": {"plugin": "p"}, "options": {"queue": "other"}}',
                    "options.queue: says 'other'"),
    "non-UTF-8": (b'{"id": "m6", "job": {"plugin": "p", "data": "caf\xe9"}}', "is not UTF-8"),
    "NaN": (b'{"id": "m7", "job": {"plugin": "p", "data": NaN}}', "job.data: is not JSON"),
    "lone surrogate": (b'{"id": "m8", "job": {"plugin": "p", "data": "\\ud800"}}',
                       "job.data: is not valid Unicode"),
    "too deep": (json.dumps({"id": "m9", "job": {"plugin": "p", "data": _deep(MAX_NESTING + 1)}})
                 .encode(), f"nested deeper than {MAX_NESTING}"),
    "too large": (json.dumps({"id": "m10", "job": {"plugin": "p", "data": "x" * MAX_ENVELOPE_BYTES}})
                  .encode(), f"larger than {MAX_ENVELOPE_BYTES} bytes"),
    "huge delay": (b'{"id": "m11", "job": {"plugin": "p"}, "options": {"delay": 1e306}}',
                   "options.delay: must be at most"),
}


def test_admit_inbox_dead_letters_malformed_entries(engine: RedisEngine) -> None:
    good = [json.dumps({"id": f"good{i}", "job": {"plugin": "p", "data": i}}).encode()
            for i in range(len(MALFORMED) + 1)]
    entries: list[bytes] = []
    for i, (raw, _) in enumerate(MALFORMED.values()):  # each bad entry between two good ones
        entries += [good[i], raw]
    entries.append(good[-1])
    _push(engine, *entries)
    assert engine.admit_inbox(Q, limit=len(entries)) == len(entries)
    assert engine.stats(Q)["inbox"] == 0
    assert sorted(c.id for c in claim(engine, 100)) == sorted(f"good{i}" for i in range(len(good)))
    stats = engine.stats(Q)
    assert (stats["dead"], stats["malformed"], stats["enqueued"]) == (len(MALFORMED), len(MALFORMED),
                                                                       len(good))
    dead = {}
    for dead_id in _dead_ids(engine):
        s = engine.status(dead_id, Q)
        raw = engine.client.hget(keys.QueueKeys(Q).job(dead_id), "raw")
        dead[raw] = (dead_id, s)
    for name, (raw, reason) in MALFORMED.items():
        assert raw in dead, f"{name}: the raw entry was not kept byte for byte"
        dead_id, s = dead[raw]
        assert s.state == "dead", name
        assert s.error.startswith("malformed job: ") and reason in s.error, (name, s.error)
        assert s.history == [{"reason": s.error}], name
        assert s.raw, name
        assert dead_id.startswith("bad-"), name


def test_malformed_entry_keeps_the_producers_id_when_readable(engine: RedisEngine) -> None:
    _push(engine, b'{"id": "order-77", "job": {"plugin": "p"}, "options": {"priority": 1e9}}')
    engine.admit_inbox(Q)
    s = engine.status("bad-order-77", Q)
    assert s is not None and "options.priority" in s.error
    assert s.raw == '{"id": "order-77", "job": {"plugin": "p"}, "options": {"priority": 1e9}}'
    assert engine.status("order-77", Q) is None  # never a runnable job


def test_malformed_entry_never_overwrites_an_existing_job(engine: RedisEngine) -> None:
    engine.enqueue(job("bad-7", data={"real": 1}))  # a producer may name a job bad-<anything>
    _push(engine, b'{"id": "7", "job": {}}', b'{"id": "7", "job": {}}')
    assert engine.admit_inbox(Q) == 2
    real = engine.status("bad-7", Q)
    assert (real.state, real.plugin, real.data, real.error) == ("queued", "p", {"real": 1}, "")
    dead = _dead_ids(engine)
    assert len(dead) == 2 and "bad-7" not in dead
    assert all(d.startswith("bad-7-") for d in dead)
    assert [c.id for c in claim(engine, 5)] == ["bad-7"]


def test_two_admitters_never_admit_an_entry_twice(engine: RedisEngine) -> None:
    entries = [json.dumps({"id": f"j{i}", "job": {"plugin": "p"}}) for i in range(60)]
    _push(engine, *entries)
    other = RedisEngine(client=engine.client, defaults=DEFAULTS)
    counts: list[int] = []

    def admit(e: RedisEngine) -> None:
        while (n := e.admit_inbox(Q, limit=7)) > 0:
            counts.append(n)

    threads = [threading.Thread(target=admit, args=(e,)) for e in (engine, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sum(counts) == 60
    stats = engine.stats(Q)
    assert (stats["ready"], stats["enqueued"], stats["inbox"]) == (60, 60, 0)


# --- supervisors registry and control ----------------------------------------------------------------


def info(name: str, **kw: Any) -> SupervisorInfo:
    base: dict[str, Any] = {"host": "box1", "pid": 4242, "workers": 4, "busy": 1,
                            "queues": [Q, "images"], "started_at": 1_700_000_000.0,
                            "extra": {"version": "0.1"}}
    return SupervisorInfo(name, **{**base, **kw})


def test_heartbeat_registers_a_supervisor(engine: RedisEngine) -> None:
    assert engine.heartbeat(info("box1:4242"), ttl=30) == {}
    (sup,) = engine.supervisors()
    assert (sup.name, sup.host, sup.pid, sup.workers, sup.busy) == ("box1:4242", "box1", 4242, 4, 1)
    assert sup.queues == [Q, "images"] and sup.extra == {"version": "0.1"}
    assert sup.started_at == 1_700_000_000.0
    assert 0 <= sup.heartbeat_age < 2
    engine.heartbeat(info("box1:4242", busy=3), ttl=30)
    assert [s.busy for s in engine.supervisors()] == [3]


def test_send_control_reaches_the_next_heartbeat(engine: RedisEngine) -> None:
    assert engine.send_control("nobody", {"workers": 3}) is False
    engine.heartbeat(info("s1"), ttl=30)
    assert engine.send_control("s1", {"workers": 8}) is True
    assert engine.heartbeat(info("s1"), ttl=30) == {"workers": "8"}


def test_unregister(engine: RedisEngine) -> None:
    engine.heartbeat(info("s1"), ttl=30)
    engine.heartbeat(info("s2"), ttl=30)
    engine.send_control("s1", {"workers": 2})
    engine.unregister("s1")
    assert [s.name for s in engine.supervisors()] == ["s2"]
    assert engine.send_control("s1", {"workers": 2}) is False
    engine.heartbeat(info("s1"), ttl=30)
    assert engine.heartbeat(info("s1"), ttl=30) == {}  # its old control settings are gone


def test_forget_supervisors(engine: RedisEngine) -> None:
    engine.heartbeat(info("old"), ttl=30)
    wait_until(lambda: engine.supervisors()[0].heartbeat_age >= 0.15, timeout=5,
               message="the heartbeat to age")
    engine.heartbeat(info("new"), ttl=30)
    assert engine.forget_supervisors(older_than=0.1) == ["old"]
    assert [s.name for s in engine.supervisors()] == ["new"]
    assert engine.forget_supervisors(older_than=0.1) == []


def test_supervisor_info_expires_with_its_ttl(engine: RedisEngine) -> None:
    engine.heartbeat(info("s1"), ttl=0.1)
    wait_until(lambda: engine.supervisors()[0].pid == 0, timeout=5, message="the info to expire")
    assert [s.name for s in engine.supervisors()] == ["s1"]  # still listed: recovery finds it


# --- wake-ups (real server: Pub/Sub on a socket) ----------------------------------------------------


def _subscribed(engine: RedisEngine, channel: str) -> bool:
    return dict(engine.client.pubsub_numsub(channel)).get(channel.encode(), 0) > 0


def _events_after_select(listener: Any, wanted: tuple[str, str], timeout: float = 3.0) -> list:
    """Wait on fileno() as the supervisor does; drain until ``wanted`` arrives."""
    readable, _, _ = select.select([listener.fileno()], [], [], timeout)
    assert readable, "the listener's socket never became readable"
    events: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while wanted not in events and time.monotonic() < deadline:
        events += listener.drain()
        if wanted not in events:
            select.select([listener.fileno()], [], [], 0.05)
    return events


@pytest.fixture
def listener(real_engine: RedisEngine) -> Iterator[Any]:
    lst = real_engine.listen([Q, "images"], "sup-a")
    wait_until(lambda: _subscribed(real_engine, keys.QueueKeys(Q).wake_channel)
               and _subscribed(real_engine, keys.control_channel("sup-a")), timeout=5,
               message="the subscription")
    lst.drain()  # the subscribe confirmations
    yield lst
    lst.close()


def test_listen_is_woken_by_an_enqueue(real_engine: RedisEngine, listener: Any) -> None:
    assert select.select([listener.fileno()], [], [], 0)[0] == []  # idle: nothing to read
    real_engine.enqueue(job("a"))
    assert ("wake", Q) in _events_after_select(listener, ("wake", Q))
    real_engine.enqueue(job("b", queue="images"))
    assert ("wake", "images") in _events_after_select(listener, ("wake", "images"))


def test_listen_is_woken_by_a_plain_redis_producer(real_engine: RedisEngine, listener: Any) -> None:
    qk = keys.QueueKeys(Q)
    real_engine.client.rpush(qk.inbox, json.dumps({"job": {"plugin": "p"}}))
    real_engine.client.publish(qk.wake_channel, "inbox")  # as docs/protocol.md says
    assert ("inbox", Q) in _events_after_select(listener, ("inbox", Q))
    assert real_engine.admit_inbox(Q) == 1
    real_engine.client.publish(qk.wake_channel, "1")  # any other payload: ready jobs
    assert ("wake", Q) in _events_after_select(listener, ("wake", Q))


def test_listen_gets_control_messages(real_engine: RedisEngine, listener: Any) -> None:
    real_engine.heartbeat(info("sup-a"), ttl=30)
    assert real_engine.send_control("sup-a", {"workers": 6})
    events = _events_after_select(listener, ("control", '{"workers": 6}'))
    assert ("control", '{"workers": 6}') in events
    assert json.loads(events[-1][1]) == {"workers": 6}


def test_cancel_of_a_running_job_tells_its_holder(real_engine: RedisEngine, listener: Any) -> None:
    real_engine.enqueue(job("r"))
    listener.drain()
    claim_one(real_engine, holder="sup-a")
    assert real_engine.cancel("r", Q) == "requested"
    wanted = ("control", json.dumps({"cancel": "r", "queue": Q}))
    assert wanted in _events_after_select(listener, wanted)


@pytest.mark.parametrize("kind", ["raw socket", "redis-py pubsub"])
def test_a_barrier_returns_everything_published_before_it(real_engine: RedisEngine, kind: str) -> None:
    lst = (real_engine.listen([Q], "sup-b") if kind == "raw socket"
           else RedisListener(real_engine.client, [Q], "sup-b"))
    try:
        assert type(lst).__name__ == ("RawSubscriber" if kind == "raw socket" else "RedisListener")
        wait_until(lambda: _subscribed(real_engine, keys.control_channel("sup-b")), timeout=5,
                   message="the subscription")
        lst.drain()
        for i in range(50):  # each PUBLISH has run when its reply comes back
            real_engine.client.publish(keys.control_channel("sup-b"), f"m{i}")
        events = lst.barrier(timeout=5.0)
        assert events == [("control", f"m{i}") for i in range(50)]
        assert lst.barrier(timeout=5.0) == []  # its own PONG was consumed, not left as an event
        assert select.select([lst.fileno()], [], [], 0.05)[0] == [] and lst.drain() == []
    finally:
        lst.close()


def test_listener_close_unsubscribes(real_engine: RedisEngine) -> None:
    lst = real_engine.listen([Q], "sup-z")
    wait_until(lambda: _subscribed(real_engine, keys.control_channel("sup-z")), timeout=5,
               message="the subscription")
    lst.close()
    wait_until(lambda: not _subscribed(real_engine, keys.control_channel("sup-z")), timeout=5,
               message="the unsubscription")


# --- Redis going away -------------------------------------------------------------------------------


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    yield from running_server()


def test_engine_survives_a_redis_restart(private_server: RedisServer) -> None:
    engine = RedisEngine(private_server.url, defaults=DEFAULTS)
    engine.enqueue(job("before"))
    assert claim_one(engine).id == "before"  # every script is now cached by SHA

    private_server.stop()
    for call in (lambda: engine.enqueue(job("during")), lambda: engine.claim(Q, "s", 1, 30),
                 engine.ping, lambda: engine.status("before", Q),
                 lambda: engine.admit_inbox(Q), lambda: engine.wait("before", Q, 0.1)):
        started = time.monotonic()
        with pytest.raises(EngineUnavailable) as info_:
            call()
        assert time.monotonic() - started < 3
        message = str(info_.value)
        assert f"127.0.0.1:{private_server.port}" in message and "unreachable" in message
        assert "\n" not in message

    private_server.start()  # same port, empty: the script cache is gone (no persistence)
    assert engine.client.script_exists(engine._shas["enqueue"]) == [False]
    engine.ping()
    assert engine.enqueue(job("after")).created  # a pipeline of scripts: NOSCRIPT, reload, resend
    assert engine.status("after", Q).state == "queued"
    private_server.stop()
    private_server.start()
    engine.enqueue(job("after2"))
    assert [c.id for c in engine.claim(Q, "s", 5, 30).jobs] == ["after2"]  # one script call
    engine.client.close()


def test_a_call_in_flight_returns_before_its_reply(real_engine: RedisEngine) -> None:
    real_engine.enqueue(job("a"))
    (a,) = claim(real_engine)
    got: list[list[str]] = []
    real_engine.claim_soon(Q, "sup-a", 0, 30.0, 0.0, lambda r: None, _never_lost)
    real_engine.read_replies(wait=True)  # the connection for calls in flight is now open
    pauser = real_engine.client.connection_pool.get_connection()
    pauser.send_command("CLIENT", "PAUSE", "400", "ALL")  # Redis answers nobody for 0.4 s
    assert pauser.read_response() == b"OK"
    started = time.monotonic()
    real_engine.finish_soon("sup-a", [done(a)], got.append, _never_lost)
    real_engine.read_replies()
    assert time.monotonic() - started < 0.2 and got == []
    fd = real_engine.replies_fileno()
    assert fd >= 0
    assert select.select([fd], [], [], 5.0)[0] == [fd]
    real_engine.read_replies()
    assert got == [["done"]] and time.monotonic() - started >= 0.3
    assert real_engine.replies_fileno() == -1
    real_engine.client.connection_pool.release(pauser)


def test_calls_in_flight_are_lost_with_redis_and_work_again_after(private_server: RedisServer) -> None:
    engine = RedisEngine(private_server.url, defaults=DEFAULTS)
    engine.enqueue_many([job("a"), job("b")])
    (a,) = claim(engine)
    lost: list[str] = []
    pauser = engine.client.connection_pool.get_connection()
    pauser.send_command("CLIENT", "PAUSE", "5000", "ALL")
    pauser.read_response()
    engine.finish_soon("sup-a", [done(a)], _unexpected_reply, lambda e: lost.append(f"f {e}"))
    engine.claim_soon(Q, "sup-a", 1, 30.0, 0.0, _unexpected_reply, lambda e: lost.append(f"c {e}"))
    private_server.stop(kill=True)
    started = time.monotonic()
    engine.read_replies(wait=True)
    assert time.monotonic() - started < 3
    assert [x[:2] for x in lost] == ["f ", "c "]
    assert all("unreachable" in x for x in lost)
    assert engine.replies_fileno() == -1
    engine.claim_soon(Q, "sup-a", 1, 30.0, 0.0, _unexpected_reply, lambda e: lost.append(f"n {e}"))
    engine.read_replies()  # nothing to send to: lost at the write
    assert [x[:2] for x in lost] == ["f ", "c ", "n "] and engine.replies_fileno() == -1

    private_server.start()  # empty, and without our scripts: NOSCRIPT, reload, run again
    got: list[Any] = []
    engine.claim_soon(Q, "sup-a", 1, 30.0, 0.0, got.append, _never_lost)
    engine.read_replies(wait=True)
    assert got[0].jobs == []
    engine.enqueue(job("c"))
    engine.claim_soon(Q, "sup-a", 1, 30.0, 0.0, got.append, _never_lost)
    engine.read_replies(wait=True)
    assert [c.id for c in got[1].jobs] == ["c"]
    engine.client.close()


def _unexpected_reply(reply: Any) -> None:
    raise AssertionError(f"a reply came from a server that was killed: {reply!r}")


def test_a_forked_child_enqueues_on_a_connection_of_its_own(real_engine: RedisEngine) -> None:
    real_engine.enqueue(job("parent-0"))  # the parent now keeps a connection for enqueues
    pid = os.fork()
    if pid == 0:  # the child enqueues while the parent does: a shared socket mixes replies
        try:
            code = 0 if all(real_engine.enqueue(job(f"child-{i}")).created for i in range(300)) else 1
        except BaseException:  # noqa: BLE001 - any failure is the child's exit code
            code = 2
        os._exit(code)
    try:
        parent_ok = all(real_engine.enqueue(job(f"parent-{i}")).created for i in range(1, 301))
    finally:
        _, status = os.waitpid(pid, 0)
    assert parent_ok and os.waitstatus_to_exitcode(status) == 0
    assert real_engine.stats(Q)["ready"] == 601


class _CountingSocket:
    """A socket stand-in that counts the writes going through it."""

    def __init__(self, sock: Any) -> None:
        self._sock, self.writes = sock, 0

    def sendall(self, data: Any) -> None:
        self.writes += 1
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_one_enqueue_is_one_write(real_engine: RedisEngine) -> None:
    """Registry SADD and script in one segment: each write wakes Redis on its own (idle latency)."""
    real_engine.enqueue(job("first"))  # the engine now keeps a connection for enqueues
    conn = real_engine._own
    counting = conn._sock = _CountingSocket(conn._sock)
    assert real_engine.enqueue(job("second")).created
    assert counting.writes == 1
    assert [c.id for c in real_engine.claim(Q, "s", 5, 30).jobs] == ["first", "second"]


def test_script_cache_flushed_under_a_running_engine(real_engine: RedisEngine) -> None:
    real_engine.enqueue(job("a"))
    real_engine.client.script_flush()
    c = claim_one(real_engine)
    real_engine.client.script_flush()
    assert real_engine.finish("sup-a", [done(c)]) == ["done"]


def test_unreachable_redis_from_the_start() -> None:
    port = free_port()
    engine = RedisEngine(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(EngineUnavailable, match=f"127.0.0.1:{port} is unreachable"):
        engine.enqueue(job("x"))


def test_bad_url_is_engine_unavailable() -> None:
    with pytest.raises(EngineUnavailable, match="bad Redis URL"):
        RedisEngine("http://example.invalid/")


def test_wrong_password_is_engine_unavailable() -> None:
    server = RedisServer("--requirepass", "s3cret")
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.cleanup()
        pytest.skip(f"no redis-server: {exc}")
    try:
        with pytest.raises(EngineUnavailable, match="refused us"):
            RedisEngine(f"redis://:wrong@127.0.0.1:{server.port}/0").ping()
        with pytest.raises(EngineUnavailable, match="refused us"):
            RedisEngine(server.url).enqueue(job("x"))
        good = RedisEngine(f"redis://:s3cret@127.0.0.1:{server.port}/0")
        assert good.enqueue(job("x")).created
        good.client.close()
    finally:
        server.cleanup()
