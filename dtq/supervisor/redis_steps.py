"""Loop steps that talk to the engine: claiming and dispatching, delivering outcomes,
heartbeats with lease renewal, and recovery of other supervisors' jobs.

Mixed into `Supervisor`, which owns the state; every engine call here may meet
an unreachable Redis, which `RedisHealth` turns into a backoff, not an exit.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from dtq.engine.base import ClaimedJob, ClaimResult, Outcome, SupervisorInfo
from dtq.errors import EngineUnavailable
from dtq.supervisor.pool import Assignment, WorkerHandle
from dtq.supervisor.states import State

log = logging.getLogger("dtq.supervisor")


class RedisSteps:
    """fill_slots, deliver, maybe_heartbeat, maybe_recover and what they need."""

    def capacity(self) -> int:
        """Jobs one worker may hold. 1, except for very short jobs: then as many as run
        within the batch window, sent in one write (one wake-up of the worker per batch)."""
        if self.avg_wall * 2 >= self.settings.batch_window:
            return 1
        return max(2, min(self.settings.max_batch // 2,
                          int(self.settings.batch_window / max(self.avg_wall, 1e-6))))

    def batch_size(self) -> int:
        """Jobs to keep claimed ahead of the workers, so none waits more than the batch window."""
        if self.avg_wall * 2 >= self.settings.batch_window:
            return 0
        per_worker = int(self.settings.batch_window / max(self.avg_wall, 1e-6))
        return min(self.settings.max_batch, per_worker) * self.taking_count()  # none for no worker

    def may_claim(self) -> bool:
        """Whether a claim would be useful and allowed now (the poll time aside)."""
        return (self.state is State.RUNNING and self.recovered_own and self.health.ok()
                and not self.claim_out and self.slots_wanted() > 0
                # enough claimed ahead: refill in large batches, not a few per tick
                and len(self.local) <= self.batch_size() // 2)

    def slots_wanted(self) -> int:
        """How many jobs to claim now: free places in workers plus the short-job batch."""
        free = sum(self.room(w, self.capacity()) - len(w.jobs) for w in self.pool.workers.values()
                   if w.alive)
        return free + self.batch_size() - len(self.local)

    @staticmethod
    def room(w: WorkerHandle, cap: int) -> int:
        """Jobs the worker may hold at once: ``cap``, or fewer before its job limit."""
        return cap if not w.max_jobs else min(cap, w.max_jobs - w.jobs_done)

    def dispatch(self) -> None:
        """Send claimed jobs to workers with room: idle workers first, in even shares (the
        one with least room first, so that what it cannot take goes to the others), then
        busy ones, and those only behind a job that came with others (one that came alone
        has no hand-back timer: a job queued behind it would wait if it ran long).
        Counters after the write, which is what an idle worker waits for."""
        cap = self.capacity()
        took = False
        ready = [(w, room) for w in self.pool.workers.values()
                 if w.alive and len(w.jobs) < (room := self.room(w, cap))]
        idle = sorted(((w, r) for w, r in ready if not w.jobs), key=lambda wr: wr[1])
        busy = sorted(((w, r) for w, r in ready if w.jobs and w.last_write > 1),
                      key=lambda wr: len(wr[0].jobs))
        for group in (idle, busy):
            for i, (w, room) in enumerate(group):
                if self.local:
                    share = -(-len(self.local) // (len(group) - i))  # an even split of what is left
                    took = self.send_jobs(w, min(room, len(w.jobs) + share), cap > 1) or took
        self.bound_held_ahead(took)

    def send_jobs(self, w: WorkerHandle, room: int, batched: bool) -> bool:
        """Send claimed jobs to ``w`` until it holds ``room``, in one write."""
        sent: list[str] = []
        while self.local and len(w.jobs) < room:
            job = self.local.popleft()
            a = Assignment(job, self.job_timeout(job), job.memory_limit or self.settings.memory_limit)
            if not w.jobs:
                a.start(self.os.monotonic(), self.os.time())
            self.pool.send(w, a, batched=batched)
            sent.append(job.plugin)
        if not sent:
            return False
        w.last_write = len(sent)
        self.pool.flush(w)
        self.counters["started"] += len(sent)
        for plugin in sent:
            self.metrics.job_started(plugin)
        return True

    def hold_ahead_limit(self) -> float:
        """How long jobs claimed ahead may wait with no worker taking any: ten batch windows
        (20 ms by default), far longer than a batch of short jobs takes."""
        return 10 * self.settings.batch_window

    def bound_held_ahead(self, took: bool) -> None:
        """Jobs claimed ahead for short-job batches are held from other supervisors only
        while the workers keep taking them. When none did for ``hold_ahead_limit`` (the
        jobs turned out long), they go back to their places in the queue, and batching
        stops until jobs are short again, so that they are not claimed ahead at once."""
        if not self.local:
            self.local_stuck_since = None
            return
        now = self.os.monotonic()
        if took or self.local_stuck_since is None:  # they wait from the last take on
            self.local_stuck_since = now
        elif now - self.local_stuck_since >= self.hold_ahead_limit():
            log.info("giving back %d jobs claimed ahead: no worker took one for %.0f ms",
                     len(self.local), (now - self.local_stuck_since) * 1000)
            self.giveback.extend(self.local)
            self.local.clear()
            self.local_stuck_since = None
            self.stop_batching()

    def stop_batching(self) -> None:
        """Jobs thought short turned out long: one job per worker and none claimed ahead
        until the moving average of job wall time is short again."""
        self.avg_wall = max(self.avg_wall, self.settings.batch_window)

    def job_timeout(self, job: ClaimedJob) -> float | None:
        timeout = job.timeout or self.settings.timeout
        ceiling = self.settings.timeout_ceiling
        return min(timeout, ceiling) if timeout and ceiling else timeout or ceiling

    def fill_slots(self) -> None:
        """Dispatch what is claimed; claim more when due. The claim's reply is read later
        (collect_replies): the loop goes on meanwhile, and one claim is out at a time."""
        if self.state is not State.RUNNING:
            return
        self.dispatch()
        now = self.os.monotonic()
        if not self.claim_due(now):
            return
        try:
            if self.admission_due(now):
                self.admit_inboxes()
                self.inbox_due = False
                self.next_inbox = now + self.settings.poll
            self.claim_from(0, self.slots_wanted(), now)
        except EngineUnavailable as exc:
            self.health.down(exc)

    def claim_from(self, index: int, want: int, sent_at: float, next_due: float | None = None,
                   got: int = 0) -> None:
        """Claim up to ``want`` jobs from the queues in order, starting at queues[index]
        (the next queue is asked only when this one had too few); ``got`` and ``next_due``
        are what the queues before it gave."""
        queue = self.settings.queues[index]

        def on_reply(result: ClaimResult) -> None:
            self.claim_out = False
            self.health.up()
            due = next_due if result.next_due is None else (
                result.next_due if next_due is None else min(next_due, result.next_due))
            if self.state is not State.RUNNING:  # stopping: what came in goes back
                self.giveback.extend(result.jobs)
                return
            self.local.extend(result.jobs)
            total = got + len(result.jobs)
            if len(result.jobs) < want and index + 1 < len(self.settings.queues):
                try:
                    self.claim_from(index + 1, want - len(result.jobs), sent_at, due, total)
                    return
                except EngineUnavailable as exc:
                    self.health.down(exc)
            self.claimed(total, due, sent_at)
            self.dispatch()

        def on_lost(exc: EngineUnavailable) -> None:
            self.claim_out = False
            self.unknown_check_soon()  # the claim may have taken jobs we never heard of
            self.health.down(exc)

        self.claim_out = True
        try:
            self.engine.claim_soon(queue, self.settings.name, want, self.settings.lease,
                                   self.standby_seconds(), on_reply, on_lost)
        except EngineUnavailable:
            self.claim_out = False
            raise

    def claimed(self, got: int, next_due: float | None, now: float) -> None:
        """After a claim: when to claim again (at once while jobs keep coming)."""
        self.next_due = next_due
        self.queue_idle = got == 0
        self.next_poll = now + self._poll_delay(got, next_due)

    def claim_due(self, now: float) -> bool:
        """Whether fill_slots claims now."""
        return now >= self.next_poll and self.may_claim()

    def admission_due(self, now: float) -> bool:
        """Whether fill_slots admits inbox entries before its claim."""
        return self.inbox_due or now >= self.next_inbox

    def standby_seconds(self) -> float:
        """How long free slots stay registered for jobs to be claimed on our behalf: a few
        polls (each idle poll renews it), and only while wake-ups reach us."""
        listening = self.listener is not None and not getattr(self.listener, "broken", False)
        return max(2.0, 3 * self.settings.poll) if listening else 0.0

    def accept_pushed(self, jobs: list[ClaimedJob]) -> None:
        """Jobs an enqueue claimed for us while we stood by: run them like our own claims.
        Any beyond our free places (or arriving while we stop) go straight back."""
        if not jobs:
            return
        room = self.slots_wanted() if self.state is State.RUNNING else 0
        keep = [j for j in jobs[:max(0, room)] if j.queue in self.settings.queues]
        self.giveback.extend(j for j in jobs if j not in keep)
        self.local.extend(keep)
        self.queue_idle = False
        self.dispatch()

    def withdraw_standby(self) -> None:
        try:
            self.engine.withdraw(self.settings.queues, self.settings.name)
        except EngineUnavailable as exc:  # it expires by itself within a few polls
            self.health.down(exc)

    def _poll_delay(self, got: int, next_due: float | None) -> float:
        if got:
            return 0.0
        delay = self.settings.poll
        if next_due is not None:
            delay = min(delay, max(0.0, next_due - self.os.time()))
        return delay

    def admit_inboxes(self) -> None:
        for queue in self.settings.queues:
            self.engine.admit_inbox(queue)

    def add_outcome(self, outcome: Outcome) -> None:
        if not self.outbox:
            self.outbox_since = self.os.monotonic()
        self.outbox.append(outcome)

    def outcomes_due(self) -> bool:
        """Outcomes go to Redis at once, except while short jobs stream: then in batches
        of up to ``max_batch`` or every ``batch_window``, to save round trips."""
        if not self.outbox:
            return False
        if self.capacity() == 1 or self.state is not State.RUNNING or not self.busy_workers():
            return True
        return (len(self.outbox) >= self.settings.max_batch
                or self.os.monotonic() - self.outbox_since >= self.settings.batch_window)

    def deliver(self) -> None:
        """Send held outcomes, give-backs and progress to Redis; keep them while it is away.
        Outcomes do not wait for their reply (collect_replies reads it)."""
        due = self.outcomes_due()
        if not (due or self.giveback or self.progress) or not self.health.ok():
            return
        try:
            if self.progress:
                self.engine.set_progress(self.progress)
                self.progress = {}
            if due:
                self.send_outcomes()
            if self.giveback:
                self.engine.give_back(self.settings.name, self.giveback)
                self.giveback = []
            if self.health.ok():  # not if an engine reported a loss at once (on_lost)
                self.health.up()
        except EngineUnavailable as exc:
            self.health.down(exc)

    def send_outcomes(self) -> None:
        """The outbox to the engine; if the reply is lost, the outcomes are sent again
        (a success sent twice is recorded once; a failure sent twice is 'stale' the
        second time, fenced by its attempt)."""
        outcomes = self.outbox

        def on_reply(states: list[str]) -> None:
            self.finishing -= 1
            for out, state in zip(outcomes, states, strict=True):
                if state in ("queued", "scheduled"):  # a retry: claim again to learn when
                    self.queue_idle = False
                    self.next_poll = self.os.monotonic()
                elif state == "stale":
                    log.warning("job %s attempt %d: outcome not recorded (a newer attempt "
                                "holds it)", out.job.id, out.job.attempt)

        def on_lost(exc: EngineUnavailable) -> None:
            self.finishing -= 1
            if not self.outbox:
                self.outbox_since = self.os.monotonic()
            self.outbox[:0] = outcomes
            self.health.down(exc)

        self.finishing += 1
        self.outbox = []
        try:
            self.engine.finish_soon(self.settings.name, outcomes, on_reply, on_lost)
        except EngineUnavailable:
            self.finishing -= 1
            self.outbox[:0] = outcomes
            raise

    def collect_replies(self, wait: bool = False) -> None:
        """Run the callbacks of finish and claim replies that arrived."""
        self.engine.read_replies(wait)

    def held_jobs(self) -> list[ClaimedJob]:
        held = list(self.local)
        for w in self.pool.workers.values():
            held.extend(a.job for a in w.jobs)
        return held

    def maybe_heartbeat(self) -> None:
        now = self.os.monotonic()
        if now < self.next_heartbeat or not self.health.ok():
            return
        self.next_heartbeat = now + self.settings.heartbeat_every
        try:
            held = self.held_jobs()
            if held:
                renewed = self.engine.renew(self.settings.name, held, self.settings.lease)
                if renewed.lost:
                    self.drop_lost(renewed.lost)
                if renewed.cancel:
                    self.cancel_running(renewed.cancel)
        except EngineUnavailable as exc:
            self.health.down(exc)
            # Again as soon as Redis answers, not a whole period later: the leases may
            # have only part of a period left by then.
            self.next_heartbeat = now
        try:  # apart from renewing: whatever that met, the registry must still see us alive
            control = self.engine.heartbeat(self.info(), ttl=max(60.0, self.settings.lease * 3))
            self.update_gauges()
            if "workers" in control and control["workers"].lstrip("-").isdigit():
                self.scale(int(control["workers"]), "dtq scale")
            if self.listener is None or getattr(self.listener, "broken", False):
                if self.listener is not None:  # broken: a push may have been lost with it
                    self.unknown_check_soon()
                self.reconnect_listener()
            if self.next_heartbeat > now:  # the renewal went through too
                self.health.up()
        except EngineUnavailable as exc:
            self.health.down(exc)
            self.next_heartbeat = now

    def unknown_check_soon(self) -> None:
        """Look for jobs leased to us that we never received, once a push sent meanwhile
        has had time to arrive (the margin `give_back_unknown` leaves)."""
        self.unknown_check_at = self.os.monotonic() + self._unknown_margin()

    def _unknown_margin(self) -> float:
        return min(1.0, self.settings.lease / 2)

    def give_back_unknown(self) -> None:
        """Jobs leased to us that we never heard of (a lost claim reply or push) go back
        uncharged, instead of failing an attempt when their lease runs out (with one
        attempt allowed: dead, never run). Only with no claim or finish in flight, so
        that everything leased to us by our own calls is known."""
        now = self.os.monotonic()
        if (self.unknown_check_at is None or now < self.unknown_check_at or not self.health.ok()
                or self.claim_out or self.finishing):
            return
        try:
            self.catch_late_pushes()  # a push published before now is ours to run, not to give back
        except OSError:  # the subscription is gone: the lease margin alone covers a push in transit
            pass
        if self.claim_out:  # the pushes woke a claim: after its reply
            return
        known = [j.id for j in self.held_jobs()]
        known += [o.job.id for o in self.outbox] + [j.id for j in self.giveback]
        lease_before = self.os.time() + self.settings.lease - self._unknown_margin()
        try:
            for queue in self.settings.queues:
                returned = self.engine.give_back_unknown(queue, self.settings.name, known, lease_before)
                if returned:
                    log.warning("gave back %d job(s) of %s leased to us that we never received "
                                "(a lost claim reply or push): %s", len(returned), queue,
                                ", ".join(returned[:10]))
            self.unknown_check_at = None
        except EngineUnavailable as exc:
            self.health.down(exc)

    def update_gauges(self) -> None:
        """Pool and queue figures for /metrics, refreshed at each heartbeat."""
        self.metrics.pool_size = self.target_workers
        self.metrics.busy = self.busy_workers()
        if self.http:
            for queue in self.settings.queues:
                self.metrics.set_queue_depths(queue, self.engine.stats(queue))

    def healthy(self) -> tuple[bool, str]:
        """/healthz: unhealthy while Redis is unreachable (a stuck loop does not answer at all)."""
        self.metrics.redis_up = 0 if self.health.down_since is not None else 1
        if self.health.down_since is not None:
            return False, f"redis unreachable for {self.os.monotonic() - self.health.down_since:.0f} s"
        return True, f"ok: {self.state.value}, {self.live_count()} workers, {self.busy_workers()} busy"

    def reconnect_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
        self.listener = self.engine.listen(self.settings.queues, self.settings.name)

    def info(self) -> SupervisorInfo:
        """What `dtq supervisors` and `dtq top` show of this supervisor and its workers."""
        return SupervisorInfo(
            name=self.settings.name, host=socket.gethostname(), pid=os.getpid(),
            workers=self.target_workers, busy=self.busy_workers(), queues=list(self.settings.queues),
            started_at=self.started_wall,
            extra={"state": self.state.value, "heartbeat": self.settings.heartbeat_every,
                   "workers": [self.worker_detail(w) for w in self.pool.workers.values()],
                   **self.counters})

    def worker_detail(self, w: WorkerHandle) -> dict[str, Any]:
        head = w.head
        detail: dict[str, Any] = {"pid": w.pid, "state": w.state.value, "job": None, "plugin": None,
                                  "running_for": None}
        if head is not None:
            detail.update(job=head.job.id, plugin=head.job.plugin, queue=head.job.queue,
                          timeout=head.timeout, memory_limit=head.memory_limit,
                          running_for=round(self.os.monotonic() - head.started, 3)
                          if head.started is not None else None)
        return detail

    def maybe_recover(self) -> None:
        now = self.os.monotonic()
        if now < self.next_recover or not self.health.ok():
            return
        self.next_recover = now + self.settings.recover_interval
        try:
            queues = set(self.engine.queues()) | set(self.settings.queues)
            for queue in sorted(queues):
                if not self.recovered_own:
                    self.log_recovered(queue, self.engine.recover(queue, holder=self.settings.name))
                self.log_recovered(queue, self.engine.recover(queue))
            self.recovered_own = True
            self.engine.forget_supervisors(max(600.0, self.settings.lease * 20))
            self.health.up()
        except EngineUnavailable as exc:
            self.next_recover = now  # try again as soon as Redis answers: claiming waits for it
            self.health.down(exc)

    def log_recovered(self, queue: str, recovered: list[tuple[str, str]]) -> None:
        for job_id, state in recovered:
            log.warning("recovered job %s of queue %s from a stopped supervisor: now %s",
                        job_id, queue, state)
        if recovered:
            self.next_poll = self.os.monotonic()
