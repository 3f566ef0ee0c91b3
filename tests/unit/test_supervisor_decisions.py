"""The supervisor's decisions, driven through a fake OS layer and an injected clock."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest
from fakes import SIGKILL, SIGSEGV, SIGTERM, FakeOS, exited, signalled

from dtq.errors import EngineUnavailable
from dtq.job import build_job
from dtq.supervisor.messages import FrameReader, encode, encode_done
from dtq.supervisor.pool import WorkerState
from dtq.supervisor.supervisor import State, Supervisor


def jobs_sent(fake_os: FakeOS, pid: int) -> list[dict]:
    reader = FrameReader()
    fd = fake_os.child_ends[pid][0]
    os.set_blocking(fd, False)
    try:
        return reader.feed(os.read(fd, 1 << 20))
    except BlockingIOError:
        return []


def report(fake_os: FakeOS, pid: int, job: dict, kind: str = "ok", **extra) -> None:
    """Write the outcome a worker would: a done frame, or a failure message."""
    if kind == "ok":
        frame = encode_done(job["id"], job["a"], json.dumps({"ok": True}), fake_os.time() - 0.5,
                            fake_os.time(), 0.5, 0.4, 1000)
    else:
        frame = encode({"t": kind, "id": job["id"], "a": job["a"], "wall": 0.5, "cpu": 0.4, "rss": 1000,
                        **extra})
    os.write(fake_os.child_ends[pid][1], frame)


def start_one(world, **job_options):
    fake_os, engine, make = world
    sup = make(**job_options.pop("settings", {}))
    job = build_job("noop", {"n": 1}, options=job_options)
    engine.enqueue(job)
    sup.tick()  # forks the worker
    sup.tick()  # claims and sends the job
    (pid,) = sup.pool.workers
    (sent,) = jobs_sent(fake_os, pid)
    return sup, pid, sent, job


def test_a_result_completes_the_job(world):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world)
    report(fake_os, pid, sent)
    sup.tick()
    status = engine.status(job.id, "default")
    assert status.state == "done" and status.result == {"ok": True}
    assert status.history[0]["wall"] == 0.5 and status.history[0]["cpu"] == 0.4
    assert sup.pool.workers[pid].state is WorkerState.IDLE


def _count_calls(engine, monkeypatch, names) -> list[str]:
    calls: list[str] = []
    for name in names:
        real = getattr(engine, name)
        monkeypatch.setattr(engine, name, lambda *a, _real=real, _name=name, **kw: (
            calls.append(_name), _real(*a, **kw))[1])
    return calls


def test_a_result_and_the_next_claim_go_out_without_waiting_for_replies(world, monkeypatch):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world)
    second = build_job("noop", {"n": 2})
    engine.enqueue(second)
    calls = _count_calls(engine, monkeypatch, ("finish", "claim", "finish_soon", "claim_soon"))
    report(fake_os, pid, sent)
    sup.tick()
    assert calls == ["finish_soon", "claim_soon"]
    assert engine.status(job.id, "default").state == "done"
    (next_sent,) = jobs_sent(fake_os, pid)  # fakeredis answers at once: read in the same tick
    assert next_sent["id"] == second.id


def test_outcomes_whose_reply_is_lost_are_sent_again(world, monkeypatch):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world)
    real = engine.finish_soon

    def lose_once(holder, outcomes, on_reply, on_lost):
        monkeypatch.setattr(engine, "finish_soon", real)
        real(holder, outcomes, lambda states: None, on_lost)  # recorded, but the reply is lost
        on_lost(EngineUnavailable("Redis at test is unreachable: connection reset"))

    monkeypatch.setattr(engine, "finish_soon", lose_once)
    report(fake_os, pid, sent)
    sup.tick()
    assert not sup.health.ok() and [o.job.id for o in sup.outbox] == [job.id]
    assert sup.finishing == 0
    fake_os.advance(10.0)
    sends = _count_calls(engine, monkeypatch, ("finish_soon",))
    sup.tick()
    assert sends == ["finish_soon"] and sup.outbox == [] and sup.health.ok()
    status = engine.status(job.id, "default")
    assert status.state == "done" and len(status.history) == 1  # recorded once, not twice


def _lose_the_next_claim_reply(world, monkeypatch, *, claim_runs: bool):
    """A one-worker supervisor whose next claim's reply is lost, the claim having run in
    Redis or not, and the job it was for: (supervisor, worker pid, job)."""
    fake_os, engine, make = world
    sup = make()
    sup.tick()  # forks the worker
    (pid,) = sup.pool.workers
    real = engine.claim_soon

    def lose_once(queue, holder, count, lease, standby, on_reply, on_lost):
        monkeypatch.setattr(engine, "claim_soon", real)
        if claim_runs:
            real(queue, holder, count, lease, standby, lambda result: None, on_lost)
        on_lost(EngineUnavailable("Redis at test is unreachable: connection reset"))

    monkeypatch.setattr(engine, "claim_soon", lose_once)
    job = build_job("noop", {"n": 1})
    engine.enqueue(job)
    sup.tick()
    return sup, pid, job


def test_a_claim_whose_reply_is_lost_is_made_again(world, monkeypatch):
    fake_os, engine, _ = world
    sup, pid, job = _lose_the_next_claim_reply(world, monkeypatch, claim_runs=False)
    assert not sup.health.ok() and not sup.claim_out and jobs_sent(fake_os, pid) == []
    fake_os.advance(10.0)
    sup.tick()
    assert [j["id"] for j in jobs_sent(fake_os, pid)] == [job.id]


def test_jobs_a_claim_took_whose_reply_was_lost_go_back_uncharged(world, monkeypatch):
    """The claim ran in Redis but its reply never came: the jobs are leased to us and we
    do not know them. Left alone they would fail an attempt when the lease ran out (with
    one attempt allowed, end dead without having run)."""
    fake_os, engine, _ = world
    sup, pid, job = _lose_the_next_claim_reply(world, monkeypatch, claim_runs=True)
    assert engine.status(job.id, "default").state == "running" and jobs_sent(fake_os, pid) == []
    fake_os.advance(sup.settings.heartbeat_every)  # the next heartbeat, well within the lease
    for _ in range(2):
        sup.tick()
    (sent,) = jobs_sent(fake_os, pid)
    assert sent["id"] == job.id
    report(fake_os, pid, sent)
    sup.tick()
    status = engine.status(job.id, "default")
    assert status.state == "done" and status.failures == 0


def test_a_claim_answered_after_a_stop_request_goes_back(world, monkeypatch):
    fake_os, engine, make = world
    sup = make()
    sup.tick()  # forks the worker
    (pid,) = sup.pool.workers
    held = []
    real = engine.claim_soon

    def hold_reply(queue, holder, count, lease, standby, on_reply, on_lost):
        real(queue, holder, count, lease, standby, lambda r: held.append((on_reply, r)), on_lost)

    monkeypatch.setattr(engine, "claim_soon", hold_reply)
    job = build_job("noop", {"n": 1})
    engine.enqueue(job)
    sup.tick()
    assert sup.claim_out and len(held) == 1 and engine.status(job.id, "default").state == "running"
    sup.request_stop("SIGTERM")
    on_reply, result = held[0]
    on_reply(result)  # the reply arrives while the supervisor drains
    sup.tick()
    assert jobs_sent(fake_os, pid) == [] and not sup.claim_out
    assert engine.status(job.id, "default").state == "queued"


def test_timeout_sends_the_soft_signal_then_kills_after_the_grace(world):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world, timeout=5)
    fake_os.advance(4.9)
    sup.tick()
    assert fake_os.signals == []
    fake_os.advance(0.2)
    sup.tick()
    assert fake_os.signals == [(pid, SIGTERM)]
    status = engine.status(job.id, "default")
    assert status.state == "dead" and status.error == "timeout after 5 s"
    fake_os.advance(1.9)
    sup.tick()
    assert fake_os.signals == [(pid, SIGTERM)]
    fake_os.advance(0.2)
    sup.tick()
    assert fake_os.signals[-1] == (pid, SIGKILL)


def test_a_late_result_after_the_timeout_is_ignored(world):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world, timeout=1)
    fake_os.advance(1.5)
    sup.tick()
    report(fake_os, pid, sent)
    sup.tick()
    assert engine.status(job.id, "default").state == "dead"


def test_memory_breach_kills_the_worker_with_the_reason(world):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world, memory_limit="100M")
    fake_os.rss[pid] = 250 * 2**20
    fake_os.advance(0.2)
    sup.tick()
    assert (pid, SIGKILL) in fake_os.signals
    reason = engine.status(job.id, "default").error
    assert reason == "memory limit exceeded: peak 250.0 MiB > limit 100.0 MiB"


def test_consecutive_breaches_rule_ignores_a_spike(world):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world, memory_limit="100M", settings={"memory_breaches": 3})
    for rss in (250, 250, 50, 250, 250):
        fake_os.rss[pid] = rss * 2**20
        fake_os.advance(0.2)
        sup.tick()
    assert fake_os.signals == []
    fake_os.advance(0.2)
    sup.tick()
    assert fake_os.signals == [(pid, SIGKILL)]


def test_a_segfault_is_decoded_and_a_new_worker_forked(world):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world)
    fake_os.die(pid, signalled(SIGSEGV))
    sup.tick()
    assert engine.status(job.id, "default").error == "killed by SIGSEGV"
    assert list(sup.pool.workers) == [pid + 1]


def test_a_result_in_the_pipe_of_a_dead_worker_counts(world):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world)
    report(fake_os, pid, sent)
    fake_os.die(pid, exited(0))
    sup.tick()
    status = engine.status(job.id, "default")
    assert status.state == "done" and len(status.history) == 1


def test_sigkill_not_sent_by_us_is_reported_as_such(world):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world)
    fake_os.die(pid, signalled(SIGKILL))
    sup.tick()
    assert engine.status(job.id, "default").error == "killed by SIGKILL, not by dtq: out of memory?"


def test_early_worker_deaths_back_off_instead_of_fork_looping(world):
    fake_os, _, make = world
    sup = make()
    sup.tick()
    delays = []
    for _ in range(5):
        (pid,) = sup.pool.workers
        fake_os.die(pid, exited(70))
        sup.tick()
        delays.append(sup.spawn_backoff)
        assert not sup.pool.workers  # no immediate re-fork
        fake_os.advance(sup.spawn_backoff)
        sup.tick()
    assert delays == sorted(delays) and delays[-1] > delays[0]


def _pool_with_jobs(world, workers: int, jobs: int):
    """A supervisor of ``workers`` after two ticks with ``jobs`` no-op jobs queued: each
    worker has one (they stay busy until the test reports them)."""
    _, engine, make = world
    sup = make(workers=workers)
    for i in range(jobs):
        engine.enqueue(build_job("noop", {"i": i}))
    sup.tick()
    sup.tick()
    return sup


def test_only_free_workers_get_long_jobs(world):
    fake_os, engine, _ = world
    sup = _pool_with_jobs(world, workers=2, jobs=5)
    assert engine.stats("default")["running"] == 2
    assert sum(len(jobs_sent(fake_os, pid)) for pid in sup.pool.workers) == 2


def test_shrinking_retires_idle_workers_first(world):
    fake_os, engine, make = world
    sup = make(workers=3)
    engine.enqueue(build_job("noop", {}))
    sup.tick()
    sup.tick()
    busy = [w.pid for w in sup.pool.workers.values() if w.jobs]
    sup.scale(1, "test")
    sup.tick()
    alive = [w.pid for w in sup.pool.workers.values() if w.alive]
    assert alive == busy
    assert fake_os.signals == []


def test_a_new_pool_size_is_in_the_registry_at_the_next_tick(world):
    fake_os, engine, make = world
    sup = make(workers=1)
    sup.tick()  # first heartbeat: the next is due lease / 3 = 10 s later
    fake_os.advance(0.1)
    sup.scale(3, "test")
    sup.tick()
    (info,) = engine.supervisors()
    assert info.workers == 3 and len(sup.pool.workers) == 3


def test_a_signal_after_dtq_scale_is_not_undone_by_the_next_heartbeat(world):
    fake_os, engine, make = world
    sup = make(workers=1)
    sup.tick()
    assert engine.send_control("test-sup", {"workers": 3})  # as `dtq scale`; Pub/Sub not read
    fake_os.advance(11.0)
    sup.tick()  # the heartbeat brings the stored size
    assert sup.target_workers == 3
    sup.scale(2, "SIGTTOU")
    for _ in range(3):
        fake_os.advance(11.0)
        sup.tick()
    assert sup.target_workers == 2 and len([w for w in sup.pool.workers.values() if w.alive]) == 2


def test_an_unreadable_push_is_logged_and_ignored(world, caplog):
    _, _, make = world
    sup = make(workers=1)
    sup.tick()
    sup.handle_control("push\x1edefault\x1enot-a-claim\x1e{}")
    assert "ignoring unreadable push message" in caplog.text
    assert not sup.local and not sup.giveback and sup.state is State.RUNNING


def test_drain_then_stop_gives_back_what_is_left(world):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world, settings={"grace": 10})
    sup.request_stop("SIGTERM")
    assert sup.state is State.DRAINING
    fake_os.advance(10.1)
    sup.tick()
    assert (pid, SIGKILL) in fake_os.signals
    status = engine.status(job.id, "default")
    assert status.state == "queued" and status.failures == 0


def test_draining_keeps_jobs_already_in_a_workers_pipe(world):
    fake_os, engine, make = world
    sup = make(workers=1)
    sup.avg_wall = 1e-5  # very short jobs: they are batched into the worker's pipe
    for i in range(200):  # more than one worker's batch
        engine.enqueue(build_job("noop", {"i": i}))
    sup.tick()
    sup.tick()
    (pid,) = sup.pool.workers
    in_pipe = jobs_sent(fake_os, pid)
    assert len(in_pipe) > 1 and sup.local  # some in the pipe, more claimed ahead
    sup.request_stop("SIGTERM")
    sup.tick()
    for sent in in_pipe:  # the worker will run these: they must stay ours
        assert engine.status(sent["id"], "default").state == "running"
    assert engine.stats("default")["running"] == len(in_pipe)
    assert engine.stats("default")["ready"] == 200 - len(in_pipe)


def test_queues_are_claimed_in_priority_order_and_the_next_only_when_one_is_short(world, monkeypatch):
    fake_os, engine, make = world
    sup = make(workers=2, queues=["high", "default"])
    sup.tick()  # forks both workers
    low = build_job("noop", {"n": "low"}, options={"queue": "default"})
    high = build_job("noop", {"n": "high"}, options={"queue": "high"})
    engine.enqueue(low)
    engine.enqueue(high)
    asked = []
    real = engine.claim_soon
    monkeypatch.setattr(engine, "claim_soon", lambda queue, *a: (asked.append(queue), real(queue, *a)))
    sup.tick()
    assert asked == ["high", "default"]  # two free workers, one job in high: default is asked
    sent = [m for pid in sup.pool.workers for m in jobs_sent(fake_os, pid)]
    assert sorted(m["id"] for m in sent) == sorted([low.id, high.id])
    assert not sup.claim_out and not sup.queue_idle


def _batch_of_three(world, started: int = 2, **job_options):
    """Three short jobs sent to one worker in one batch; the worker has started the second
    (its shared count says 2) and holds the first's outcome, not sent yet."""
    fake_os, engine, make = world
    sup = make(workers=1)
    sup.avg_wall = 1e-5  # very short jobs: they are batched into the worker's pipe
    jobs = [build_job("noop", {"i": i}, options=job_options) for i in range(3)]
    for job in jobs:
        engine.enqueue(job)
    sup.tick()
    sup.tick()
    (pid,) = sup.pool.workers
    assert [m["id"] for m in jobs_sent(fake_os, pid)] == [j.id for j in jobs]
    for _ in range(started):
        sup.pool.workers[pid].started.increment()
    return sup, pid, jobs


def test_a_crash_behind_unreported_outcomes_is_charged_to_the_job_that_ran(world):
    fake_os, engine, _ = world
    sup, pid, (first, crasher, unstarted) = _batch_of_three(world)
    fake_os.die(pid, signalled(SIGSEGV))
    sup.tick()
    sup.tick()  # the give-back goes out
    assert engine.status(crasher.id, "default").error == "killed by SIGSEGV"
    for job in (first, unstarted):  # finished with its outcome lost, and never started: again
        status = engine.status(job.id, "default")
        assert status.state in ("queued", "running") and status.failures == 0


def test_jobs_a_worker_hands_back_behind_a_long_one_return_to_the_queue(world):
    """The second job of a batch runs long; the worker hands back the third, unstarted: it
    goes back to its place, uncharged, and the worker's count still names the long job
    when it later crashes (the numbers of what was sent after close the gap)."""
    fake_os, engine, _ = world
    sup, pid, (first, long_one, behind) = _batch_of_three(world)
    report(fake_os, pid, {"id": first.id, "a": 1})
    os.write(fake_os.child_ends[pid][1], encode({"t": "back", "jobs": [[behind.id, 1], ["nobody", 1]]}))
    sup.tick()
    sup.tick()  # the give-back goes out
    worker = sup.pool.workers[pid]
    assert [a.job.id for a in worker.jobs] == [long_one.id]  # none sent to it behind the long one
    assert sup.capacity() == 1 and worker.sent == 2
    status = engine.status(behind.id, "default")
    assert (status.state, status.failures, status.holder) == ("queued", 0, "")
    assert engine.claim("default", "other-sup", 1, 30.0).jobs[0].id == behind.id
    fake_os.die(pid, signalled(SIGSEGV))
    sup.tick()
    sup.tick()
    assert engine.status(long_one.id, "default").error == "killed by SIGSEGV"
    assert engine.status(first.id, "default").state == "done"


def test_a_job_sent_after_a_hand_back_and_already_started_is_matched_by_its_new_number(world):
    """The worker handed back B and C behind the long A, finished A, then started D (which
    reached its pipe after it had looked): its count says 2, which is D once B and C are
    gone. The frames arrive together: hand-back, A's result, D's result."""
    fake_os, engine, make = world
    sup = make(workers=1)
    sup.avg_wall = 1e-5
    a, b, c, d = jobs = [build_job("noop", {"i": i}) for i in range(4)]
    for job in jobs:
        engine.enqueue(job)
    sup.tick()
    sup.tick()
    (pid,) = sup.pool.workers
    worker = sup.pool.workers[pid]
    assert [m["id"] for m in jobs_sent(fake_os, pid)] == [j.id for j in jobs]
    worker.started.increment()
    worker.started.increment()  # A, then D: the worker's count is 2
    os.write(fake_os.child_ends[pid][1], encode({"t": "back", "jobs": [[b.id, 1], [c.id, 1]]}))
    report(fake_os, pid, {"id": a.id, "a": 1})
    report(fake_os, pid, {"id": d.id, "a": 1})
    sup.tick()
    sup.tick()
    assert worker.alive and not fake_os.signals
    assert [engine.status(j.id, "default").state for j in (a, d)] == ["done", "done"]
    for job in (b, c):  # back in the queue, uncharged (and maybe claimed again since)
        status = engine.status(job.id, "default")
        assert status.state in ("queued", "running") and status.failures == 0


def test_a_worker_told_to_leave_still_leaves_after_a_hand_back(world):
    """A reload or a shrink lets a busy worker finish the jobs it holds, then retire; a
    hand-back must not make room in it for new jobs."""
    fake_os, engine, _ = world
    sup, pid, (first, long_one, behind) = _batch_of_three(world)
    worker = sup.pool.workers[pid]
    worker.max_jobs = worker.jobs_done + len(worker.jobs)  # as a reload marks it
    os.write(fake_os.child_ends[pid][1], encode({"t": "back", "jobs": [[behind.id, 1]]}))
    sup.tick()
    assert worker.leaving and sup.room(worker, sup.capacity()) - len(worker.jobs) <= 0


def test_sequence_numbers_close_the_gap_of_jobs_handed_back(world):
    fake_os, engine, _ = world
    sup, pid, (first, long_one, behind) = _batch_of_three(world)
    worker = sup.pool.workers[pid]
    later = worker.jobs[2]
    later_job = later.job
    # one more job was sent after the three: handing back the third renumbers it 3
    sup.pool.send(worker, type(later)(later_job._replace(id="j-late"), None, None))
    sup.pool.flush(worker)
    os.write(fake_os.child_ends[pid][1], encode({"t": "back", "jobs": [[behind.id, 1]]}))
    sup.tick()
    assert [(a.job.id, a.seq) for a in worker.jobs] == [(first.id, 1), (long_one.id, 2), ("j-late", 3)]
    assert worker.sent == 3


def test_a_timeout_behind_unreported_outcomes_is_charged_to_the_job_that_ran(world):
    fake_os, engine, _ = world
    sup, pid, (first, hung, unstarted) = _batch_of_three(world, timeout=5)
    fake_os.advance(5.1)
    sup.tick()
    assert fake_os.signals == [(pid, SIGTERM)]
    status = engine.status(hung.id, "default")
    assert status.state == "dead" and status.error == "timeout after 5 s"
    assert [engine.status(j.id, "default").failures for j in (first, unstarted)] == [0, 0]


def test_a_memory_breach_behind_unreported_outcomes_is_charged_to_the_job_that_ran(world):
    fake_os, engine, _ = world
    sup, pid, (first, hog, unstarted) = _batch_of_three(world, memory_limit="100M")
    fake_os.rss[pid] = 250 * 2**20
    fake_os.advance(0.2)
    sup.tick()
    assert engine.status(hog.id, "default").error.startswith("memory limit exceeded")
    assert [engine.status(j.id, "default").failures for j in (first, unstarted)] == [0, 0]


def test_shrinking_busy_workers_marks_one_to_leave_per_worker_too_many(world):
    fake_os, engine, _ = world
    sup = _pool_with_jobs(world, workers=4, jobs=6)
    assert sup.busy_workers() == 4
    sup.scale(2, "test")
    for _ in range(3):  # marking again at every tick was the bug
        sup.tick()
    leaving = [w.pid for w in sup.pool.workers.values() if w.leaving]
    assert len(leaving) == 2
    staying = next(pid for pid in sup.pool.workers if pid not in leaving)
    (job,) = jobs_sent(fake_os, staying)
    report(fake_os, staying, job)
    for _ in range(3):
        sup.tick()
    assert sorted(w.pid for w in sup.pool.workers.values() if w.leaving) == sorted(leaving)
    assert sup.pool.workers[staying].alive and fake_os.signals == []


def test_scaled_to_zero_it_gives_back_the_jobs_it_claimed_ahead(world):
    fake_os, engine, make = world
    sup = make(workers=1)
    sup.avg_wall = 1e-5  # very short jobs: claimed ahead of the worker
    for i in range(200):
        engine.enqueue(build_job("noop", {"i": i}))
    sup.tick()
    sup.tick()
    (pid,) = sup.pool.workers
    in_pipe = jobs_sent(fake_os, pid)
    assert sup.local
    sup.scale(0, "test")
    sup.tick()
    assert not sup.local  # at once: its worker is busy with the last jobs it will take
    for job in in_pipe:
        report(fake_os, pid, job)
    for _ in range(3):
        sup.tick()
    assert not sup.local and not sup.live_count()  # the worker retires after its batch
    stats = engine.stats("default")
    assert stats["running"] == 0 and stats["ready"] == 200 - len(in_pipe)


def _claimed_ahead(world, jobs: int = 200):
    """One worker with a batch of very short jobs in its pipe and more claimed ahead."""
    fake_os, engine, make = world
    sup = make(workers=1)
    sup.avg_wall = 1e-5
    ids = [engine.enqueue(build_job("noop", {"i": i})).id for i in range(jobs)]
    sup.tick()
    settle(sup, lambda: sup.local)
    (pid,) = sup.pool.workers
    in_pipe = jobs_sent(fake_os, pid)
    assert in_pipe and sup.local
    return sup, pid, in_pipe, ids


def settle(sup: Supervisor, done=lambda: True, timeout: float = 5.0) -> None:
    """Tick until ``done()`` with no call to Redis in flight (a real server answers the
    supervisor's calls a moment later; fakeredis at once). The fake clock stands still."""
    deadline = time.monotonic() + timeout
    sup.tick()
    while not (done() and not sup.claim_out and not sup.finishing and not sup.giveback):
        assert time.monotonic() < deadline, "the supervisor did not settle"
        time.sleep(0.002)
        sup.tick()


def test_jobs_claimed_ahead_go_back_to_their_places_when_no_worker_takes_one_in_time(any_world):
    """Short jobs that turn out long (the worker is still on its batch) must not hold the
    jobs claimed behind them from other supervisors for more than a few milliseconds."""
    fake_os, engine, _ = any_world
    sup, pid, in_pipe, ids = _claimed_ahead(any_world)
    limit = sup.hold_ahead_limit()
    assert limit <= 0.02
    fake_os.advance(limit / 2)
    settle(sup)
    assert sup.local and 0 < sup.next_wakeup() <= limit / 2 + 1e-9  # woken for the deadline
    fake_os.advance(limit / 2 + 1e-6)
    sup.tick()
    assert not sup.local and sup.next_wakeup() == 0.0  # given back at the next tick
    settle(sup)
    stats = engine.stats("default")
    assert (stats["running"], stats["ready"]) == (len(in_pipe), 200 - len(in_pipe))
    assert sup.capacity() == 1 and sup.batch_size() == 0  # no claiming ahead while they run long
    for _ in range(3):
        settle(sup)
    assert not sup.local and engine.stats("default")["running"] == len(in_pipe)
    first_back = engine.claim("default", "other-sup", 1, 30.0).jobs[0]
    assert first_back.id == ids[len(in_pipe)]  # the queue's order is kept


def test_jobs_claimed_ahead_stay_while_the_workers_keep_taking_them(any_world):
    fake_os, engine, _ = any_world
    sup, pid, in_pipe, _ = _claimed_ahead(any_world)
    limit = sup.hold_ahead_limit()
    for _ in range(3):  # each batch takes a little less than the limit
        fake_os.advance(limit * 0.9)
        settle(sup)
        assert sup.local
        for job in in_pipe:
            report(fake_os, pid, job)
        settle(sup)
        in_pipe = jobs_sent(fake_os, pid)
        assert in_pipe  # the worker took the next batch from what was claimed ahead
    stats = engine.stats("default")
    assert stats["running"] + stats["done"] == 200 - stats["ready"] and stats["ready"] < 200


def test_a_refused_fork_backs_off_instead_of_ending_the_supervisor(world, monkeypatch):
    fake_os, _, make = world
    sup = make(workers=1)
    real_fork = fake_os.fork

    def refuse() -> int:
        raise BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    monkeypatch.setattr(fake_os, "fork", refuse)
    sup.tick()
    assert not sup.pool.workers and sup.spawn_backoff > 0
    monkeypatch.setattr(fake_os, "fork", real_fork)
    sup.tick()
    assert not sup.pool.workers  # still backing off
    fake_os.advance(sup.spawn_backoff)
    sup.tick()
    assert len(sup.pool.workers) == 1


def test_stopping_at_once_still_counts_an_outcome_already_in_the_pipe(world):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world)
    report(fake_os, pid, sent)  # written, not read yet
    sup.request_stop("SIGINT")
    sup.request_stop("SIGINT")  # the second: stop now
    for _ in range(3):
        sup.tick()
    status = engine.status(job.id, "default")
    assert status.state == "done" and len(status.history) == 1
    assert (pid, SIGKILL) not in fake_os.signals  # its job was over: nothing to kill


def test_a_failed_lease_renewal_is_tried_again_as_soon_as_redis_answers(world, monkeypatch):
    fake_os, engine, _ = world
    sup, pid, sent, job = start_one(world, timeout=600)
    renewals: list[float] = []
    real_renew = engine.renew

    def renew(*args, **kwargs):
        renewals.append(fake_os.monotonic())
        if len(renewals) == 1:
            raise EngineUnavailable("Redis at test is unreachable: down for a moment")
        return real_renew(*args, **kwargs)

    monkeypatch.setattr(engine, "renew", renew)
    fake_os.advance(sup.settings.heartbeat_every)
    sup.tick()
    assert len(renewals) == 1
    fake_os.advance(1.0)  # Redis is back, and past the health check's retry delay
    sup.tick()
    assert len(renewals) == 2  # not another whole heartbeat period later
    assert engine.status(job.id, "default").state == "running"



def test_a_worker_that_exits_cleanly_between_jobs_blames_none_of_those_left(world):
    """A worker gives up after reporting a MemoryError (exit 0) with more of its batch in
    its pipe: the job it reported is charged once; the next ones never started."""
    fake_os, engine, _ = world
    sup, pid, (hog, second, third) = _batch_of_three(world, started=1)
    report(fake_os, pid, {"id": hog.id, "a": 1}, "err", e="memory limit exceeded: allocation refused")
    fake_os.die(pid, exited(0))
    sup.tick()
    sup.tick()
    assert engine.status(hog.id, "default").error == "memory limit exceeded: allocation refused"
    for job in (second, third):
        status = engine.status(job.id, "default")
        assert status.state in ("queued", "running") and status.failures == 0


def test_growing_again_keeps_busy_workers_a_shrink_had_marked_to_leave(world):
    fake_os, engine, _ = world
    sup = _pool_with_jobs(world, workers=3, jobs=6)
    busy = sorted(w.pid for w in sup.pool.workers.values() if w.jobs)
    assert len(busy) == 3
    sup.scale(1, "test")
    sup.tick()
    assert sum(w.leaving for w in sup.pool.workers.values()) == 2
    sup.scale(3, "test")
    sup.tick()
    assert not any(w.leaving for w in sup.pool.workers.values())
    assert sorted(sup.pool.workers) == busy  # none forked meanwhile: the three stay
    for pid in busy:
        (job,) = jobs_sent(fake_os, pid)
        report(fake_os, pid, job)
    sup.tick()
    assert all(w.alive for w in sup.pool.workers.values()) and len(sup.pool.workers) == 3


def test_a_worker_whose_idle_memory_keeps_growing_is_recycled_after_its_job(world, caplog):
    """The idle reading after the first job is the base (caches a plugin warms); the worker
    is replaced once it idles more than --idle-memory-growth above it, read at most once a
    second so that short jobs do not pay a /proc walk each."""
    fake_os, engine, make = world
    sup = make(workers=1, idle_memory_growth=100 * 2**20)
    for i in range(5):
        engine.enqueue(build_job("noop", {"i": i}))
    sup.tick()
    (pid,) = sup.pool.workers

    def finish_one(mib_after: int, after: float) -> None:
        """The job in the worker's pipe ends ``after`` s on, leaving it ``mib_after`` MiB."""
        sup.tick()
        (sent,) = jobs_sent(fake_os, pid)
        fake_os.advance(after)
        fake_os.rss[pid] = mib_after * 2**20
        report(fake_os, pid, sent)
        sup.tick()

    finish_one(300, after=0.5)  # a big first job's caches: the base, however large
    assert sup.pool.workers[pid].idle_rss_base == 300 * 2**20
    finish_one(390, after=1.0)  # grew, within the allowance
    assert sup.pool.workers[pid].alive
    finish_one(450, after=0.5)  # over it, but less than a second after the last reading
    assert sup.pool.workers[pid].alive
    with caplog.at_level("INFO", logger="dtq.supervisor"):
        finish_one(460, after=1.0)
    assert not sup.pool.workers[pid].alive  # retired after the job
    assert "idle memory grew from 300.0 MiB to 460.0 MiB" in caplog.text


def test_idle_memory_is_not_read_when_both_rules_are_off(world, monkeypatch):
    fake_os, engine, make = world
    sup, pid, sent, _ = start_one(world, settings={"idle_memory_growth": None})
    monkeypatch.setattr(fake_os, "tree_rss", lambda pid: pytest.fail("read idle memory"))
    report(fake_os, pid, sent)
    sup.tick()
    assert sup.pool.workers[pid].alive


def test_short_jobs_go_to_an_idle_worker_before_a_busy_one(world):
    """While jobs are short a worker may hold several, but a job must not queue behind a
    busy worker's while another idles; a batch is shared evenly."""
    fake_os, engine, make = world
    sup = make(workers=2)
    sup.avg_wall = 1e-5
    sup.tick()
    busy, idle = sup.pool.workers
    engine.enqueue(build_job("noop", {"i": 0}))
    for _ in range(3):
        sup.tick()
    first = jobs_sent(fake_os, busy) + jobs_sent(fake_os, idle)
    assert len(first) == 1
    holder = busy if sup.pool.workers[busy].jobs else idle
    other = idle if holder == busy else busy
    engine.enqueue(build_job("noop", {"i": 1}))
    sup.next_poll = fake_os.monotonic()
    for _ in range(3):
        sup.handle_events()
        sup.tick()
    (second,) = jobs_sent(fake_os, other)
    assert not jobs_sent(fake_os, holder)
    for i in range(2, 12):
        engine.enqueue(build_job("noop", {"i": i}))
    sup.next_poll = fake_os.monotonic()
    for _ in range(3):
        sup.handle_events()
        sup.tick()
    # both busy with a job that came alone (no hand-back timer): nothing queues behind them
    assert not jobs_sent(fake_os, holder) and not jobs_sent(fake_os, other) and len(sup.local) == 10
    report(fake_os, holder, first[0])
    report(fake_os, other, second)
    sup.collect_results()
    sup.avg_wall = 1e-5  # report() says 0.5 s: still very short jobs
    sup.tick()
    assert len(jobs_sent(fake_os, holder)) == len(jobs_sent(fake_os, other)) == 5


def test_a_memory_breach_whose_job_ended_meanwhile_kills_nothing(world):
    """The breach was read while job A ran; A's result was in the pipe by the time of the
    decision, and the worker has gone on to B, which has no limit: nobody is killed."""
    fake_os, engine, make = world
    sup = make(workers=1)
    sup.avg_wall = 1e-5
    a, b = build_job("noop", {"i": 0}, options={"memory_limit": "100M"}), build_job("noop", {"i": 1})
    for job in (a, b):
        engine.enqueue(job)
    sup.tick()
    sup.tick()
    (pid,) = sup.pool.workers
    worker = sup.pool.workers[pid]
    assert [m["id"] for m in jobs_sent(fake_os, pid)] == [a.id, b.id]
    worker.started.increment()  # A runs ...
    fake_os.rss[pid] = 250 * 2**20
    real_count = worker.started_count
    # ... when the sampler looks; by the time it decides, A's result is written and B runs
    looks = iter([1])

    def count_then_move_on():
        value = next(looks, None)
        if value is None:
            return real_count()
        report(fake_os, pid, {"id": a.id, "a": 1})
        worker.started.increment()
        return value

    worker.started_count = count_then_move_on
    sup.next_memory = fake_os.monotonic()
    sup.enforce_memory()
    sup.tick()
    assert not fake_os.signals and worker.alive
    assert engine.status(a.id, "default").state == "done"

