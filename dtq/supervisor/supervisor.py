"""The supervisor: one per box, single-threaded, the only process that talks to Redis.

Its loop is a flat list of named steps, each safe to run on every tick:

    handle_signals, reap_workers, collect_results, enforce_deadlines, enforce_memory,
    deliver, fill_slots, maybe_heartbeat, maybe_recover, maintain_pool, check_done
    then wait (select) until the next deadline, a worker message, a signal or a wake-up.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import select
import signal
import socket
from collections import deque
from collections.abc import Mapping
from typing import Any

from dtq.engine.base import ClaimedJob, Engine, Listener, Outcome, SupervisorInfo
from dtq.errors import EngineUnavailable, PluginError
from dtq.plugin import Plugin, PluginConfig
from dtq.plugin_loader import load_plugins
from dtq.supervisor.exits import describe_exit, format_bytes
from dtq.supervisor.http import MetricsServer
from dtq.supervisor.messages import FrameError
from dtq.supervisor.metrics import Metrics
from dtq.supervisor.oslayer import HARD_SIGNAL, SOFT_SIGNAL, OSLayer
from dtq.supervisor.pool import Assignment, Pool, WorkerHandle, WorkerState
from dtq.supervisor.redis_health import RedisHealth
from dtq.supervisor.settings import SupervisorSettings
from dtq.supervisor.signals import SignalQueue

log = logging.getLogger("dtq.supervisor")
EARLY_DEATH = 1.0  # a worker dying this soon after its fork, having done nothing, backs off


class State(enum.Enum):
    RUNNING = "running"  # claiming and running jobs
    DRAINING = "draining"  # stopped claiming; running jobs may finish within the grace
    STOPPING = "stopping"  # killing what is left and giving its jobs back
    STOPPED = "stopped"


class Supervisor:
    """Runs the loop; construct with settings, an engine and loaded plugins."""

    def __init__(self, settings: SupervisorSettings, engine: Engine,
                 plugins: Mapping[str, Plugin], os_layer: OSLayer | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.plugins = dict(plugins)
        self.os = os_layer or OSLayer()
        self.pool = Pool(self.os, self.plugins, settings.max_jobs_per_worker,
                         _drop_privileges(settings), settings.max_file_size)
        self.state = State.RUNNING
        self.target_workers = max(0, settings.workers)
        self.local: deque[ClaimedJob] = deque()  # claimed, leased, not yet sent to a worker
        self.outbox: list[Outcome] = []  # outcomes waiting to reach Redis
        self.outbox_since = 0.0
        self.giveback: list[ClaimedJob] = []
        self.progress: dict[tuple[str, str], dict[str, Any]] = {}
        self.health = RedisHealth(self.os.monotonic, log)
        self.listener: Listener | None = None
        self.signals: SignalQueue | None = None
        self.avg_wall = 1.0  # moving average of job wall time: short jobs are batched
        self.queue_idle = False
        self.next_due: float | None = None  # wall time of the earliest delayed job
        self.stop_deadline: float | None = None
        self.spawn_backoff = 0.0
        self.spawn_not_before = 0.0
        self.recovered_own = False
        self.counters = {"done": 0, "failed": 0, "started": 0}
        self.metrics = Metrics(settings.name)
        self.http: MetricsServer | None = None
        now = self.os.monotonic()
        self.next_heartbeat = now
        self.next_recover = now
        self.next_poll = now
        self.next_inbox = now
        self.inbox_due = True
        self.next_memory = now
        self.started_wall = self.os.time()

    # --- the loop ----------------------------------------------------------
    def run(self) -> int:
        """Run until stopped; returns the process exit code."""
        self.signals = SignalQueue()
        _set_title(f"dtq supervisor {self.settings.name}")
        if self.settings.metrics_port is not None:
            self.http = MetricsServer(self.settings.metrics_host, self.settings.metrics_port,
                                      self.metrics.render, self.healthy)
            log.info("metrics on http://%s:%d/metrics", self.settings.metrics_host, self.http.port)
        log.info("supervisor %s starting: %d workers, queues %s, plugins %s", self.settings.name,
                 self.target_workers, ",".join(self.settings.queues), ",".join(sorted(self.plugins)))
        try:
            while self.state is not State.STOPPED:
                self.tick()
                if self.state is not State.STOPPED:
                    self.wait(self.next_wakeup())
        finally:
            self.shutdown()
        return 0

    def tick(self) -> None:
        self.handle_signals()
        self.reap_workers()
        self.collect_results()
        self.enforce_deadlines()
        self.enforce_memory()
        self.deliver()
        self.fill_slots()
        self.maybe_heartbeat()
        self.maybe_recover()
        self.maintain_pool()
        self.check_done()

    def next_wakeup(self) -> float:
        """Seconds until the next thing that must happen without an event."""
        now = self.os.monotonic()
        times = [self.next_heartbeat, self.next_recover]
        if self.state is State.RUNNING and self.slots_wanted() > 0:
            times.append(self.next_poll)
        if self.busy_workers():
            times.append(self.next_memory)
        for w in self.pool.workers.values():
            if w.head and w.head.deadline:
                times.append(w.head.deadline)
            if w.hard_kill_at:
                times.append(w.hard_kill_at)
        if self.stop_deadline:
            times.append(self.stop_deadline)
        if self.outbox:
            times.append(self.outbox_since + self.settings.batch_window)
        if self.health.retry_at is not None:
            times.append(self.health.retry_at)
        if self.spawn_not_before > now and self.live_count() < self.target_workers:
            times.append(self.spawn_not_before)
        return max(0.0, min(times) - now)

    def wait(self, timeout: float) -> None:
        """The one wait point: worker pipes, the signal pipe and the Redis wake-up socket."""
        readers = [w.from_worker for w in self.pool.workers.values() if not w.eof]
        writers = [w.to_worker for w in self.pool.workers.values() if w.outbuf and w.to_worker >= 0]
        if self.signals:
            readers.append(self.signals.read_fd)
        listen_fd = self.listener.fileno() if self.listener else -1
        if listen_fd >= 0:
            readers.append(listen_fd)
        if self.http:
            readers.extend(self.http.fds())
        try:
            readable, writable, _ = select.select(readers, writers, [], timeout)
        except InterruptedError:
            return
        except (OSError, ValueError):  # a descriptor closed under us: next tick sorts it out
            return
        for w in self.pool.workers.values():
            if w.to_worker in writable:
                self.pool.flush(w)
        if listen_fd >= 0 and listen_fd in readable:
            self.handle_events()
        if self.http and readable:
            self.http.handle(readable)

    # --- signals and events ----------------------------------------------------
    def handle_signals(self) -> None:
        if not self.signals:
            return
        for signum in self.signals.pop_all():
            if signum in (signal.SIGTERM, signal.SIGINT):
                self.request_stop(signal.Signals(signum).name)
            elif signum == signal.SIGHUP:
                self.reload_plugins()
            elif signum == signal.SIGTTIN:
                self.scale(self.target_workers + 1, "SIGTTIN")
            elif signum == signal.SIGTTOU:
                self.scale(self.target_workers - 1, "SIGTTOU")

    def request_stop(self, why: str) -> None:
        """First request drains (finish running jobs within the grace); the second stops now."""
        if self.state is State.RUNNING:
            log.info("%s: draining; running jobs get %.0f s to finish", why, self.settings.grace)
            self.state = State.DRAINING
            self.stop_deadline = self.os.monotonic() + self.settings.grace
            self.give_back_unstarted()
        elif self.state is State.DRAINING:
            log.info("%s again: stopping now", why)
            self.stop_now()

    def stop_now(self) -> None:
        """Kill busy workers and give their jobs back; idle ones just exit."""
        self.state = State.STOPPING
        self.give_back_unstarted()
        for w in list(self.pool.workers.values()):
            if w.jobs:
                self.giveback.extend(a.job for a in w.jobs)
                w.jobs.clear()
                self.pool.kill(w, HARD_SIGNAL)
            elif w.alive:
                self.pool.retire(w)

    def handle_events(self) -> None:
        """Wake-ups and control messages from Redis Pub/Sub."""
        if not self.listener:
            return
        for kind, payload in self.listener.drain():
            if kind in ("wake", "inbox"):
                self.next_poll = self.os.monotonic()
                self.inbox_due = self.inbox_due or kind == "inbox"
            elif kind == "control":
                self.handle_control(payload)

    def handle_control(self, payload: str) -> None:
        try:
            command = json.loads(payload)
        except ValueError:
            log.warning("ignoring unreadable control message %r", payload[:200])
            return
        if isinstance(command, dict) and isinstance(command.get("workers"), int):
            self.scale(command["workers"], "dtq scale")
        if isinstance(command, dict) and isinstance(command.get("cancel"), str):
            self.cancel_running([command["cancel"]])

    def scale(self, workers: int, why: str) -> None:
        workers = max(0, min(workers, 1024))
        if workers != self.target_workers:
            log.info("%s: pool size %d -> %d", why, self.target_workers, workers)
            self.target_workers = workers

    def reload_plugins(self) -> None:
        """SIGHUP: re-import plugins, then replace idle workers (busy ones after their job)."""
        try:
            plugins = load_plugins(self.settings.plugins, reload=True,
                                   entry_point_group="dtq.plugins" if self.settings.entry_points else None,
                                   config=plugin_config(self.settings))
        except PluginError as exc:
            log.error("SIGHUP: plugin reload failed, keeping the old ones: %s", exc)
            return
        self.plugins.clear()
        self.plugins.update(plugins)
        for w in list(self.pool.workers.values()):
            w.max_jobs = w.jobs_done + (1 if w.jobs else 0)
            if w.state is WorkerState.IDLE:
                self.pool.retire(w)
        log.info("SIGHUP: plugins reloaded (%s); replacing workers", ",".join(sorted(plugins)))

    # --- workers ------------------------------------------------------------------
    def reap_workers(self) -> None:
        for pid, status in self.os.reap():
            worker = self.pool.workers.get(pid)
            if worker is None:
                continue
            if not worker.eof:
                self.handle_messages(worker)  # a result already sent counts
            had_job = bool(worker.jobs)
            if worker.jobs:
                head = worker.jobs.popleft()
                self.record_failure(worker, head, describe_exit(status), "retry")
                self.giveback.extend(a.job for a in worker.jobs)
                worker.jobs.clear()
            self.note_death(worker, status, had_job)
            self.pool.forget(worker)

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

    def handle_outcome(self, worker: WorkerHandle, msg: dict[str, Any]) -> None:
        head = worker.head
        if head is None or head.job.id != msg.get("id") or head.job.attempt != msg.get("a"):
            return  # outcome of a job already decided (killed) or not ours: ignore
        worker.jobs.popleft()
        worker.jobs_done += 1
        wall = float(msg.get("wall") or 0.0)
        self.avg_wall = 0.8 * self.avg_wall + 0.2 * wall
        head.peak_rss = max(head.peak_rss, int(msg.get("rss") or 0))
        record = self.attempt_record(head, wall, float(msg.get("cpu") or 0.0))
        if msg["t"] == "ok":
            self.counters["done"] += 1
            if worker.jobs_done == 1:  # a fresh worker works: forks need no more backing off
                self.spawn_backoff = 0.0
            self.add_outcome(Outcome(head.job, "done", str(msg.get("r", "null")), record=record))
            self.metrics.job_ended(head.job.plugin, "done", wall)
            if log.isEnabledFor(logging.INFO):
                log_job(logging.INFO, "done", head.job, wall)
        else:
            kind = "permanent" if msg.get("perm") else "retry"
            self.finish_failure(head, str(msg.get("e") or "failed"), kind, record)
        worker.cpu_mark += float(msg.get("cpu") or 0.0)
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
        limit = self.settings.idle_memory_limit
        return bool(limit and self.os.tree_rss(worker.pid) > limit)

    def attempt_record(self, a: Assignment, wall: float, cpu: float, reason: str = "") -> dict[str, Any]:
        record: dict[str, Any] = {
            "attempt": a.job.attempt, "holder": self.settings.name,
            "started_at": a.started_wall, "finished_at": self.os.time(),
            "wall": wall, "cpu": cpu, "peak_rss": a.peak_rss}
        if reason:
            record["reason"] = reason
        return record

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
        """Decide the head job's outcome now, then signal the worker's process group."""
        if worker.jobs:
            head = worker.jobs.popleft()
            if kind:
                self.record_failure(worker, head, reason, kind)
            self.giveback.extend(a.job for a in worker.jobs)
            worker.jobs.clear()
        self.pool.kill(worker, sig)
        if sig == SOFT_SIGNAL:
            worker.hard_kill_at = self.os.monotonic() + self.settings.kill_grace

    def enforce_deadlines(self) -> None:
        now = self.os.monotonic()
        for w in list(self.pool.workers.values()):
            if w.hard_kill_at is not None and now >= w.hard_kill_at:
                w.hard_kill_at = None
                self.pool.kill(w, HARD_SIGNAL)
            head = w.head
            if head and head.deadline is not None and now >= head.deadline:
                self.kill_worker(w, f"timeout after {head.timeout:g} s", SOFT_SIGNAL, "retry")
        if self.stop_deadline is not None and now >= self.stop_deadline and self.state is State.DRAINING:
            log.info("grace period over: stopping the jobs still running and giving them back")
            self.stop_now()

    def enforce_memory(self) -> None:
        now = self.os.monotonic()
        if now < self.next_memory:
            return
        self.next_memory = now + self.settings.memory_sample
        readings: dict[int, int] = {}
        for w in list(self.pool.workers.values()):
            head = w.head
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
                reason = (f"memory limit exceeded: peak {format_bytes(head.peak_rss)} > "
                          f"limit {format_bytes(limit)}")
                self.kill_worker(w, reason, HARD_SIGNAL, "retry")
        self.metrics.set_worker_rss(readings)

    def cancel_running(self, job_ids: list[str]) -> None:
        wanted = set(job_ids)
        for w in list(self.pool.workers.values()):
            if w.head and w.head.job.id in wanted:
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

    # --- slots and Redis ---------------------------------------------------------------
    def live_count(self) -> int:
        return sum(1 for w in self.pool.workers.values() if w.alive)

    def busy_workers(self) -> int:
        return sum(1 for w in self.pool.workers.values() if w.jobs)

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
        return min(self.settings.max_batch, per_worker) * max(1, self.live_count())

    def slots_wanted(self) -> int:
        """How many jobs to claim now: free places in workers plus the short-job batch."""
        free = sum(self.capacity() - len(w.jobs) for w in self.pool.workers.values() if w.alive)
        return free + self.batch_size() - len(self.local)

    def dispatch(self) -> None:
        cap = self.capacity()
        for w in self.pool.workers.values():
            if not self.local:
                return
            sent = False
            while self.local and w.alive and len(w.jobs) < cap:
                job = self.local.popleft()
                a = Assignment(job, self.job_timeout(job), job.memory_limit or self.settings.memory_limit)
                if not w.jobs:
                    a.start(self.os.monotonic(), self.os.time())
                self.pool.send(w, a)
                self.counters["started"] += 1
                self.metrics.job_started(job.plugin)
                sent = True
            if sent:
                self.pool.flush(w)

    def job_timeout(self, job: ClaimedJob) -> float | None:
        timeout = job.timeout or self.settings.timeout
        ceiling = self.settings.timeout_ceiling
        return min(timeout, ceiling) if timeout and ceiling else timeout or ceiling

    def fill_slots(self) -> None:
        if self.state is not State.RUNNING:
            return
        self.dispatch()
        want = self.slots_wanted()
        now = self.os.monotonic()
        if want <= 0 or now < self.next_poll or not self.health.ok():
            return
        if len(self.local) > self.batch_size() // 2:
            return  # enough claimed ahead: refill in large batches, not a few per tick
        got = 0
        try:
            if self.inbox_due or now >= self.next_inbox:
                self.admit_inboxes()
                self.inbox_due = False
                self.next_inbox = now + self.settings.poll
            next_due = None
            for queue in self.settings.queues:
                result = self.engine.claim(queue, self.settings.name, want - got, self.settings.lease)
                self.local.extend(result.jobs)
                got += len(result.jobs)
                if result.next_due is not None:
                    next_due = min(next_due or result.next_due, result.next_due)
                if got >= want:
                    break
            self.health.up()
        except EngineUnavailable as exc:
            self.health.down(exc)
            return
        self.next_due = next_due
        self.queue_idle = got == 0
        self.next_poll = now + self._poll_delay(got, next_due)
        self.dispatch()

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

    def deliver(self) -> None:
        """Send held outcomes, give-backs and progress to Redis; keep them while it is away."""
        due = self.outcomes_due()
        if not (due or self.giveback or self.progress) or not self.health.ok():
            return
        try:
            if self.progress:
                self.engine.set_progress(self.progress)
                self.progress = {}
            if due:
                states = self.engine.finish(self.settings.name, self.outbox)
                for out, state in zip(self.outbox, states, strict=True):
                    if state in ("queued", "scheduled"):  # a retry: claim again to learn when
                        self.queue_idle = False
                        self.next_poll = self.os.monotonic()
                    elif state == "stale":
                        log.warning("job %s attempt %d: outcome not recorded (a newer attempt "
                                    "holds it)", out.job.id, out.job.attempt)
                self.outbox = []
            if self.giveback:
                self.engine.give_back(self.settings.name, self.giveback)
                self.giveback = []
            self.health.up()
        except EngineUnavailable as exc:
            self.health.down(exc)

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
            control = self.engine.heartbeat(self.info(), ttl=max(60.0, self.settings.lease * 3))
            self.update_gauges()
            if "workers" in control and control["workers"].lstrip("-").isdigit():
                self.scale(int(control["workers"]), "dtq scale")
            if self.listener is None or getattr(self.listener, "broken", False):
                self.reconnect_listener()
            self.health.up()
        except EngineUnavailable as exc:
            self.health.down(exc)

    def update_gauges(self) -> None:
        """Pool and queue figures for /metrics, refreshed at each heartbeat."""
        self.metrics.pool_size.set(self.target_workers)
        self.metrics.busy.set(self.busy_workers())
        if self.http:
            for queue in self.settings.queues:
                self.metrics.set_queue_depths(queue, self.engine.stats(queue))

    def healthy(self) -> tuple[bool, str]:
        """/healthz: unhealthy while Redis is unreachable (a stuck loop does not answer at all)."""
        self.metrics.redis_up.set(0 if self.health.down_since is not None else 1)
        if self.health.down_since is not None:
            return False, f"redis unreachable for {self.os.monotonic() - self.health.down_since:.0f} s"
        return True, f"ok: {self.state.value}, {self.live_count()} workers, {self.busy_workers()} busy"

    def reconnect_listener(self) -> None:
        if self.listener is not None:
            self.listener.close()
        self.listener = self.engine.listen(self.settings.queues, self.settings.name)

    def info(self) -> SupervisorInfo:
        now = self.os.monotonic()
        detail = [{"pid": w.pid, "state": w.state.value,
                   "job": w.head.job.id if w.head else None,
                   "plugin": w.head.job.plugin if w.head else None,
                   "running_for": round(now - w.head.started, 3) if w.head and w.head.started else None}
                  for w in self.pool.workers.values()]
        return SupervisorInfo(
            name=self.settings.name, host=socket.gethostname(), pid=os.getpid(),
            workers=self.target_workers, busy=self.busy_workers(), queues=list(self.settings.queues),
            started_at=self.started_wall,
            extra={"state": self.state.value, "workers": detail, **self.counters})

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
            self.health.down(exc)

    def log_recovered(self, queue: str, recovered: list[tuple[str, str]]) -> None:
        for job_id, state in recovered:
            log.warning("recovered job %s of queue %s from a stopped supervisor: now %s",
                        job_id, queue, state)
        if recovered:
            self.next_poll = self.os.monotonic()

    def give_back_unstarted(self) -> None:
        """Draining: jobs claimed but not running go back to the queue now."""
        self.giveback.extend(self.local)
        self.local.clear()
        for w in self.pool.workers.values():
            while len(w.jobs) > 1:
                self.giveback.append(w.jobs.pop().job)

    def maintain_pool(self) -> None:
        if self.state is not State.RUNNING:
            for w in list(self.pool.workers.values()):
                if w.state is WorkerState.IDLE:
                    self.pool.retire(w)
            return
        live = [w for w in self.pool.workers.values() if w.alive]
        excess = len(live) - self.target_workers
        for w in sorted(live, key=lambda w: len(w.jobs)):
            if excess <= 0:
                break
            if not w.jobs:
                self.pool.retire(w)
                excess -= 1
        for w in live:  # busy workers over the target retire once their job is done
            if excess > 0 and w.jobs and w.max_jobs != w.jobs_done + len(w.jobs):
                w.max_jobs = w.jobs_done + len(w.jobs)
                excess -= 1
        now = self.os.monotonic()
        while self.live_count() < self.target_workers and now >= self.spawn_not_before:
            self.pool.spawn()
            if self.spawn_backoff:
                self.spawn_not_before = now + self.spawn_backoff
                break

    def check_done(self) -> None:
        """Burst mode ends when nothing is ready, running or scheduled; a stop ends when all is given back."""
        if self.state is State.RUNNING and self.settings.burst:
            if (self.queue_idle and self.next_due is None and not self.local
                    and not self.busy_workers() and not self.outbox and not self.giveback
                    and self.recovered_own):
                log.info("burst: queues empty and pool idle; stopping")
                self.state = State.DRAINING
                self.stop_deadline = self.os.monotonic()
        if self.state is State.DRAINING and not self.busy_workers() and not self.local:
            self.stop_now()
        if self.state is State.STOPPING and not self.pool.workers:
            self.state = State.STOPPED

    def shutdown(self) -> None:
        """Give back what is held, leave the registry, close everything."""
        self.stop_now()
        deadline = self.os.monotonic() + 5.0
        while self.pool.workers and self.os.monotonic() < deadline:
            self.reap_workers()
            if self.pool.workers:
                select.select([], [], [], 0.01)
        try:
            self.deliver()
            self.engine.unregister(self.settings.name)
        except EngineUnavailable as exc:
            log.error("could not give back jobs or leave the registry: %s "
                      "(their leases expire and another supervisor recovers them)", exc)
        if self.listener:
            self.listener.close()
        if self.http:
            self.http.close()
        if self.signals:
            self.signals.close()
        log.info("supervisor %s stopped", self.settings.name)


def log_job(level: int, event: str, job: ClaimedJob, wall: float, reason: str = "") -> None:
    """One line per job event; --log-format json turns the extra fields into keys."""
    log.log(level, "job %s %s attempt %d %s in %.3f s%s", job.id, job.plugin, job.attempt, event,
            wall, f": {reason}" if reason else "",
            extra={"job_id": job.id, "plugin": job.plugin, "attempt": job.attempt, "event": event,
                   "duration": round(wall, 6), "queue": job.queue, **({"reason": reason} if reason else {})})


def _set_title(title: str) -> None:
    try:
        import setproctitle

        setproctitle.setproctitle(title)
    except ImportError:
        pass


def plugin_config(settings: SupervisorSettings) -> PluginConfig:
    """What every plugin is told: the allowed roots and the operator's plugin options."""
    return PluginConfig(allowed_paths=tuple(p.resolve() for p in settings.allow_paths),
                        options=dict(settings.plugin_options))


def _drop_privileges(settings: SupervisorSettings):
    """A child initialiser that switches workers to --user/--group (None when not asked)."""
    if not settings.user and not settings.group:
        return None
    import grp
    import pwd

    uid = pwd.getpwnam(settings.user).pw_uid if settings.user else None
    gid = (grp.getgrnam(settings.group).gr_gid if settings.group
           else pwd.getpwnam(settings.user).pw_gid if settings.user else None)

    def init() -> None:
        if gid is not None:
            os.setgroups([])
            os.setgid(gid)
        if uid is not None:
            os.setuid(uid)

    return init
