"""Loop steps that watch the worker processes: outcomes, deaths, deadlines and memory.

Mixed into `Supervisor`, which owns the state these steps read and change (the
pool, the outbox, the clock); kept apart so each file has one concern.
"""

from __future__ import annotations

import bisect
import logging
import os
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dtq.engine.base import ClaimedJob, Outcome
from dtq.supervisor.exits import describe_exit, format_bytes
from dtq.supervisor.messages import FrameError
from dtq.supervisor.oslayer import HARD_SIGNAL, SOFT_SIGNAL
from dtq.supervisor.pool import Assignment, WorkerHandle, WorkerState
from dtq.supervisor.states import State

log = logging.getLogger("dtq.supervisor")
EARLY_DEATH = 1.0  # a worker dying this soon after its fork, having done nothing, backs off


class WorkerSteps:
    """reap_workers, collect_results, enforce_deadlines, enforce_memory and what they need."""

    def reap_workers(self) -> None:
        for pid, status in self.os.reap():
            worker = self.pool.workers.get(pid)
            if worker is None:
                continue
            if not worker.eof:
                self.handle_messages(worker)  # a result already sent counts
            had_job = bool(worker.jobs)
            # A worker exits 0 only between jobs (its pipe closed, or it gave up after a
            # MemoryError it reported): the job after, never started, is not to blame.
            clean = os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
            self.end_jobs(worker, describe_exit(status), "retry", blame_unstarted=not clean)
            self.note_death(worker, status, had_job)
            self.pool.forget(worker)

    def running_job(self, worker: WorkerHandle, blame_unstarted: bool = True) -> Assignment | None:
        """The job the worker is really running. Usually its head; after a batch of short
        jobs whose outcomes the worker still holds, a later one (its started count says
        which). With ``blame_unstarted``, the head also when the count says none has
        started: a job whose frame kills the worker must be charged, or it would come
        back forever."""
        head = worker.head
        if head is None:
            return None
        started = worker.started_count() if worker.pinned_count is None else worker.pinned_count
        if started is None or started == head.seq:  # the common case, on every loop turn
            return head
        if started < head.seq:
            return head if blame_unstarted else None
        return next((a for a in worker.jobs if a.seq == started), None)

    def end_jobs(self, worker: WorkerHandle, reason: str, kind: str, blame_unstarted: bool = True) -> None:
        """The worker dies or is killed: charge the job it was running with ``reason``
        (unless ``kind`` is empty) and give the rest back uncharged, including jobs it
        finished whose outcomes it had not sent yet (they will run again)."""
        running = self.running_job(worker, blame_unstarted)
        for a in worker.jobs:
            if a is not running:
                self.giveback.append(a.job)
                if running is not None and a.seq < running.seq:
                    log.warning("job %s finished on worker %d but its outcome was lost with the "
                                "worker; it will run again", a.job.id, worker.pid)
        worker.jobs.clear()
        if running is not None and kind:
            self.record_failure(worker, running, reason, kind)

    def note_death(self, worker: WorkerHandle, status: int, had_job: bool) -> None:
        """Log an unexpected death; a worker that died young without a job backs off forks."""
        now = self.os.monotonic()
        if worker.killed_by_us or worker.state is WorkerState.RETIRING:
            return
        log.warning("worker %d ended unexpectedly: %s", worker.pid, describe_exit(status))
        if not had_job and worker.jobs_done == 0 and now - worker.spawned_at < EARLY_DEATH:
            self.spawn_backoff = min(30.0, max(0.1, self.spawn_backoff * 2))
            self.spawn_not_before = now + self.spawn_backoff
            log.warning("worker died %.2f s after start; next fork in %.1f s",
                        now - worker.spawned_at, self.spawn_backoff)

    def collect_results(self) -> None:
        for worker in list(self.pool.workers.values()):
            self.read_live(worker)

    def read_live(self, worker: WorkerHandle) -> None:
        """Handle what a worker that may still write has written."""
        if not worker.eof and worker.state is not WorkerState.DEAD:
            self.handle_messages(worker)

    def handle_messages(self, worker: WorkerHandle) -> None:
        try:
            messages = self.pool.read(worker)
        except FrameError as exc:
            self.kill_worker(worker, f"protocol error: worker wrote garbage to its pipe ({exc})",
                             HARD_SIGNAL, "retry")
            return
        for msg in messages:
            kind = msg.get("t")
            if kind == "progress":
                head = worker.head
                if head is not None and head.job.id == msg.get("id"):
                    self.progress[(head.job.queue, head.job.id)] = {
                        "fraction": msg.get("f"), "message": msg.get("m", ""),
                        "at": round(self.os.time(), 3)}
            elif kind in ("ok", "err"):
                self.handle_outcome(worker, msg)
            elif kind == "back":
                self.take_back(worker, msg.get("jobs"))

    def take_back(self, worker: WorkerHandle, pairs: Any) -> None:
        """A batched job ran long and its worker handed back the jobs queued behind it,
        unstarted: they return to their places in the queue for idle workers. The worker
        never starts them, so the sequence numbers of any sent after them close the gap
        (its started count must still name the job it runs), and batching stops until jobs
        are short again."""
        if not isinstance(pairs, list):
            return
        named = {(p[0], p[1]) for p in pairs if isinstance(p, list) and len(p) == 2}
        # The worker names only jobs it never started. Its started count already follows
        # the numbering after them, so it cannot be compared with their numbers here.
        back = [a for a in worker.jobs if (a.job.id, a.job.attempt) in named]
        if not back:
            return
        leaving = worker.leaving  # retiring after these jobs (a shrink, a reload): it stays so
        gone = sorted(a.seq for a in back)
        for a in back:
            worker.jobs.remove(a)
            self.giveback.append(a.job)
        for a in worker.jobs:
            a.seq -= bisect.bisect_left(gone, a.seq)
        worker.sent -= len(back)
        if leaving:
            worker.max_jobs = worker.jobs_done + len(worker.jobs)
        self.counters["started"] -= len(back)
        self.stop_batching()
        log.info("worker %d handed back %d jobs queued behind a long one", worker.pid, len(back))

    def handle_outcome(self, worker: WorkerHandle, msg: dict[str, Any]) -> None:
        head = worker.head
        if head is None or head.job.id != msg.get("id") or head.job.attempt != msg.get("a"):
            return  # outcome of a job already decided (killed) or not ours: ignore
        worker.jobs.popleft()
        worker.jobs_done += 1
        wall, cpu = float(msg.get("wall") or 0.0), float(msg.get("cpu") or 0.0)
        self.avg_wall = 0.8 * self.avg_wall + 0.2 * wall
        rss = int(msg.get("rss") or 0)
        if rss > head.peak_rss:
            head.peak_rss = rss
        if msg["t"] == "ok":
            self.counters["done"] += 1
            if worker.jobs_done == 1:  # a fresh worker works: forks need no more backing off
                self.spawn_backoff = 0.0
            self.add_outcome(Outcome(head.job, "done", str(msg.get("r", "null")),
                                     record=self.done_record(head, msg)))
            self.metrics.job_ended(head.job.plugin, "done", wall)
            if log.isEnabledFor(logging.INFO):
                log_job(logging.INFO, "done", head.job, wall)
        else:
            kind = "permanent" if msg.get("perm") else "retry"
            self.finish_failure(head, str(msg.get("e") or "failed"), kind,
                                self.attempt_record(head, wall, cpu))
        worker.cpu_mark += cpu
        self.progress.pop((head.job.queue, head.job.id), None)
        if not self.queue_idle:
            self.next_poll = self.os.monotonic()
        self.after_job(worker)

    def after_job(self, worker: WorkerHandle) -> None:
        """Start the next job in the worker's pipe, or mark it idle (or retire it)."""
        now = self.os.monotonic()
        if worker.jobs:
            worker.jobs[0].start(now, self.os.time())
            return
        if worker.state is WorkerState.BUSY:
            worker.state = WorkerState.IDLE
        if worker.state is WorkerState.IDLE and self._should_recycle(worker):
            self.pool.retire(worker)

    def _should_recycle(self, worker: WorkerHandle) -> bool:
        if worker.max_jobs and worker.jobs_done >= worker.max_jobs:
            return True
        return self._idle_memory_grew(worker)

    IDLE_MEMORY_EVERY = 1.0  # seconds between idle readings of one worker

    def _idle_memory_grew(self, worker: WorkerHandle) -> bool:
        """Whether an idle worker holds memory a plugin leaked: more than
        ``idle_memory_limit``, or ``idle_memory_growth`` more than after its first job
        (plugins warm caches in their first job; what keeps growing after is a leak). Read
        after the first job, then at most once a second per worker: a drain of short jobs
        idles a worker after every batch and must not walk /proc each time."""
        limit, growth = self.settings.idle_memory_limit, self.settings.idle_memory_growth
        if not (limit or growth) or not worker.jobs_done:
            return False
        now = self.os.monotonic()
        if worker.idle_rss_base and now - worker.idle_checked_at < self.IDLE_MEMORY_EVERY:
            return False
        worker.idle_checked_at = now
        rss = self.os.tree_rss(worker.pid)
        base = worker.idle_rss_base = worker.idle_rss_base or rss
        if limit and rss > limit:
            why = f"idle memory {format_bytes(rss)} > limit {format_bytes(limit)}"
        elif growth and rss > base + growth:
            why = f"idle memory grew from {format_bytes(base)} to {format_bytes(rss)}"
        else:
            return False
        log.info("recycling worker %d: %s", worker.pid, why)
        return True

    def done_record(self, a: Assignment, msg: dict[str, Any]) -> str:
        """`attempt_record` of a successful attempt, as JSON text: the drain hot path. The
        worker's figures are spliced in as the number text it sent (messages.py checked
        them); started and finished are the worker's clock, which for a batched job is
        the job's own, not the batch's."""
        return (f'{{"attempt":{a.job.attempt},"holder":{self.holder_json},'
                f'"started_at":{msg.get("started") or f"{a.started_wall:.6f}"},'
                f'"finished_at":{msg.get("finished") or f"{self.os.time():.6f}"},'
                f'"wall":{msg.get("wall") or "0"},"cpu":{msg.get("cpu") or "0"},'
                f'"peak_rss":{int(a.peak_rss)}}}')

    def attempt_record(self, a: Assignment, wall: float, cpu: float, reason: str = "") -> dict[str, Any]:
        record: dict[str, Any] = {
            "attempt": a.job.attempt, "holder": self.settings.name,
            "started_at": a.started_wall, "finished_at": self.os.time(),
            "wall": wall, "cpu": cpu, "peak_rss": a.peak_rss}
        if reason:
            record["reason"] = reason
        return record

    def finish_failure(self, a: Assignment, reason: str, kind: str, record: dict[str, Any]) -> None:
        record["reason"] = reason
        self.counters["failed"] += 1
        self.add_outcome(Outcome(a.job, kind, reason=reason, record=record))
        self.metrics.job_ended(a.job.plugin, kind, record["wall"], reason)
        log_job(logging.WARNING, "failed", a.job, record["wall"], reason)

    def record_failure(self, worker: WorkerHandle, a: Assignment, reason: str, kind: str) -> None:
        """An attempt that ended without an outcome message (killed or died)."""
        now = self.os.monotonic()
        wall = now - a.started if a.started is not None else 0.0
        cpu = max(0.0, self.os.cpu_seconds(worker.pid) - worker.cpu_mark)
        self.finish_failure(a, reason, kind, self.attempt_record(a, wall, cpu))

    def kill_worker(self, worker: WorkerHandle, reason: str, sig: int, kind: str) -> None:
        """Decide the running job's outcome now, then signal the worker's process group."""
        self.end_jobs(worker, reason, kind)
        self.pool.kill(worker, sig)
        if sig == SOFT_SIGNAL:
            worker.hard_kill_at = self.os.monotonic() + self.settings.kill_grace

    def enforce_deadlines(self) -> None:
        now = self.os.monotonic()
        for w in list(self.pool.workers.values()):
            if w.hard_kill_at is not None and now >= w.hard_kill_at:
                w.hard_kill_at = None
                self.pool.kill(w, HARD_SIGNAL)
            if self.overdue(w, now) is not None:
                with self.deciding(w):  # a result or a hand-back already written counts
                    if (running := self.overdue(w, now)) is not None:
                        self.kill_worker(w, f"timeout after {running.timeout:g} s", SOFT_SIGNAL, "retry")
        if self.stop_deadline is not None and now >= self.stop_deadline and self.state is State.DRAINING:
            log.info("grace period over: stopping the jobs still running and giving them back")
            self.stop_now()

    def overdue(self, worker: WorkerHandle, now: float) -> Assignment | None:
        """The worker's running job if its time is up at ``now``."""
        running, deadline = self.deadline_of(worker)
        return running if running is not None and deadline is not None and now >= deadline else None

    def deadline_of(self, worker: WorkerHandle) -> tuple[Assignment | None, float | None]:
        """The running job and when its time is up. A job running behind unreported
        outcomes started after the head did: its time counts from the head's start,
        at most a batch's few milliseconds early."""
        head, running = worker.head, self.running_job(worker)
        if head is None or running is None or running is head or head.started is None:
            return head, head.deadline if head else None
        return running, head.started + running.timeout if running.timeout else None

    def enforce_memory(self) -> None:
        now = self.os.monotonic()
        if now < self.next_memory:
            return
        self.next_memory = now + self.settings.memory_sample
        readings: dict[int, int] = {}
        for w in list(self.pool.workers.values()):
            head = self.running_job(w)
            if head is None or w.state is not WorkerState.BUSY:
                continue
            rss = readings[w.pid] = self.os.tree_rss(w.pid)
            head.peak_rss = max(head.peak_rss, rss)
            limit = head.memory_limit
            if not limit or rss <= limit:
                head.breaches = 0
                continue
            head.breaches += 1
            if head.breaches >= self.settings.memory_breaches:
                with self.deciding(w):
                    if self.running_job(w) is not head:  # it ended meanwhile: the next one
                        continue  # has its own limit and readings
                    reason = (f"memory limit exceeded: peak {format_bytes(head.peak_rss)} > "
                              f"limit {format_bytes(limit)}")
                    self.kill_worker(w, reason, HARD_SIGNAL, "retry")
        self.metrics.worker_rss = readings

    @contextmanager
    def deciding(self, worker: WorkerHandle) -> Iterator[None]:
        """Around a kill decision: read what the worker wrote first (a result written
        counts; a hand-back renumbers its jobs), and use the started count read before
        that read. A count read before the pipe is drained names the same job in the
        numbering after any hand-back the drain applies; one read after might follow a
        hand-back written in between, not yet applied."""
        worker.pinned_count = worker.started_count()
        try:
            self.read_live(worker)
            yield
        finally:
            worker.pinned_count = None

    def cancel_running(self, job_ids: list[str]) -> None:
        wanted = set(job_ids)
        for w in list(self.pool.workers.values()):
            if not any(a.job.id in wanted for a in w.jobs):
                continue
            with self.deciding(w):
                running = self.running_job(w)
                if running is not None and running.job.id in wanted:
                    self.kill_worker(w, "cancelled by operator", SOFT_SIGNAL, "cancelled")
        for job in [j for j in self.local if j.id in wanted]:
            self.local.remove(job)
            self.add_outcome(Outcome(job, "cancelled", reason="cancelled by operator",
                                       record={"attempt": job.attempt, "reason": "cancelled by operator"}))

    def drop_lost(self, job_ids: list[str]) -> None:
        """Jobs whose lease we lost (we were cut off): stop them, report nothing."""
        lost = set(job_ids)
        for w in list(self.pool.workers.values()):
            if any(a.job.id in lost for a in w.jobs):
                log.warning("worker %d runs a job whose lease was lost; killing it", w.pid)
                self.giveback.extend(a.job for a in w.jobs if a.job.id not in lost)
                w.jobs.clear()
                self.pool.kill(w, HARD_SIGNAL)
        self.local = deque(j for j in self.local if j.id not in lost)


def log_job(level: int, event: str, job: ClaimedJob, wall: float, reason: str = "") -> None:
    """One line per job event; --log-format json turns the extra fields into keys."""
    log.log(level, "job %s %s attempt %d %s in %.3f s%s", job.id, job.plugin, job.attempt, event,
            wall, f": {reason}" if reason else "",
            extra={"job_id": job.id, "plugin": job.plugin, "attempt": job.attempt, "event": event,
                   "duration": round(wall, 6), "queue": job.queue, **({"reason": reason} if reason else {})})
