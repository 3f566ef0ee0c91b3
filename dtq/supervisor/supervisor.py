"""The supervisor: one per box, single-threaded, the only process that talks to Redis.

Its loop is a flat list of named steps, each safe to run on every tick:

    collect_replies, handle_signals, reap_workers, collect_results, enforce_deadlines,
    enforce_memory, deliver, fill_slots, maybe_heartbeat, maybe_recover, maintain_pool,
    collect_replies, check_done
    then wait (select) until the next deadline, a worker message, a signal, a wake-up
    or the reply to a finish or claim in flight.
"""

from __future__ import annotations

import json
import logging
import select
import signal
from collections import deque
from collections.abc import Mapping
from typing import Any

from dtq.engine.base import ClaimedJob, Engine, Listener, Outcome
from dtq.errors import EngineUnavailable, PluginError
from dtq.plugin import Plugin
from dtq.plugin_loader import load_plugins
from dtq.supervisor.forkserver import RESTART_SECONDS, start_fork_server
from dtq.supervisor.http import MetricsServer
from dtq.supervisor.metrics import Metrics
from dtq.supervisor.oslayer import HARD_SIGNAL, OSLayer
from dtq.supervisor.pool import Pool, SpawnFailed, WorkerState
from dtq.supervisor.proctitle import set_title
from dtq.supervisor.redis_health import RedisHealth
from dtq.supervisor.redis_steps import RedisSteps
from dtq.supervisor.settings import SupervisorSettings, drop_privileges, plugin_config
from dtq.supervisor.signals import SignalQueue
from dtq.supervisor.states import State
from dtq.supervisor.worker_steps import WorkerSteps

log = logging.getLogger("dtq.supervisor")


class Supervisor(WorkerSteps, RedisSteps):
    """Runs the loop; construct with settings, an engine and loaded plugins."""

    def __init__(self, settings: SupervisorSettings, engine: Engine,
                 plugins: Mapping[str, Plugin], os_layer: OSLayer | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.plugins = dict(plugins)
        self.os = os_layer or OSLayer()
        self.pool = Pool(self.os, self.plugins, settings.max_jobs_per_worker,
                         drop_privileges(settings), settings.max_file_size)
        self.state = State.RUNNING
        self.target_workers = max(0, settings.workers)
        self.local: deque[ClaimedJob] = deque()  # claimed, leased, not yet sent to a worker
        self.local_stuck_since: float | None = None  # the last time a worker took some of them
        self.outbox: list[Outcome] = []  # outcomes waiting to reach Redis
        self.outbox_since = 0.0
        self.finishing = 0  # finish calls in flight (their outcomes are no longer in outbox)
        self.unknown_check_at: float | None = None  # when to look for jobs leased to us unknown
        self.claim_out = False  # a claim is in flight
        self.giveback: list[ClaimedJob] = []
        self.progress: dict[tuple[str, str], dict[str, Any]] = {}
        # retry often enough that a short outage does not cost the leases of running jobs
        self.health = RedisHealth(self.os.monotonic, log, max_delay=min(5.0, settings.lease / 4))
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
        self.holder_json = json.dumps(settings.name)
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
        set_title(f"dtq supervisor {self.settings.name}")
        if self.settings.fork_server:
            self.pool.fork_server = start_fork_server(self.settings, self.plugins)
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
        self.collect_replies()
        self.handle_signals()
        self.reap_workers()
        self.collect_results()
        self.enforce_deadlines()
        self.enforce_memory()
        self.give_back_unknown()
        self.deliver()
        self.fill_slots()
        self.maybe_heartbeat()
        self.maybe_recover()
        self.maintain_pool()
        self.collect_replies()
        self.check_done()

    def next_wakeup(self) -> float:
        """Seconds until the next thing that must happen without an event."""
        now = self.os.monotonic()
        times = []
        if self.health.ok():
            times += [self.next_heartbeat, self.next_recover]
            if self.may_claim():  # else a claim waits for a worker, Redis or recovery
                times.append(self.next_poll)
            if self.outbox:
                times.append(self.outbox_since + self.settings.batch_window)
            if self.unknown_check_at is not None:
                times.append(self.unknown_check_at)
            if self.local_stuck_since is not None:
                times.append(self.local_stuck_since + self.hold_ahead_limit())
            if self.giveback:  # given back in the next tick's deliver
                times.append(now)
        elif self.health.retry_at is not None:  # Redis away: nothing of it is due before
            times.append(self.health.retry_at)
        if self.busy_workers():
            times.append(self.next_memory)
        for w in self.pool.workers.values():
            if (deadline := self.deadline_of(w)[1]) is not None:
                times.append(deadline)
            if w.hard_kill_at:
                times.append(w.hard_kill_at)
        if self.stop_deadline:
            times.append(self.stop_deadline)
        if self.spawn_not_before > now and self.live_count() < self.target_workers:
            times.append(self.spawn_not_before)
        return max(0.0, min(times, default=now + 60.0) - now)

    def wait(self, timeout: float) -> None:
        """The one wait point: worker pipes, the signal pipe, the Redis wake-up socket and
        the replies to calls in flight."""
        readers = [w.from_worker for w in self.pool.workers.values() if not w.eof]
        writers = [w.to_worker for w in self.pool.workers.values() if w.outbuf and w.to_worker >= 0]
        if self.signals:
            readers.append(self.signals.read_fd)
        listen_fd = self.listener.fileno() if self.listener else -1
        if listen_fd >= 0:
            readers.append(listen_fd)
        if self.http:
            readers.extend(self.http.fds())
        if (replies_fd := self.engine.replies_fileno()) >= 0:
            readers.append(replies_fd)
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
            self.begin_draining(self.settings.grace)
        elif self.state is State.DRAINING:
            log.info("%s again: stopping now", why)
            self.stop_now()

    def begin_draining(self, grace: float) -> None:
        """Stop claiming (standby slots too), give back what no worker has, and let
        running jobs finish within ``grace`` seconds."""
        self.withdraw_standby()
        self.state = State.DRAINING
        self.stop_deadline = self.os.monotonic() + grace
        self.give_back_unstarted()

    def stop_now(self) -> None:
        """Kill busy workers and give their jobs back; idle ones just exit. Outcomes already
        in the workers' pipes are read first: those jobs are done, not given back."""
        self.collect_results()
        self.state = State.STOPPING
        self.stop_deadline = None
        self.give_back_unstarted()
        for w in list(self.pool.workers.values()):
            if w.jobs:
                self.giveback.extend(a.job for a in w.jobs)
                w.jobs.clear()
                self.pool.kill(w, HARD_SIGNAL)
            elif w.alive:
                self.pool.retire(w)

    def handle_events(self, events: list[tuple[str, str]] | None = None) -> None:
        """Wake-ups and control messages from Redis Pub/Sub (read now, unless given)."""
        if not self.listener:
            return
        woken = False
        for kind, payload in self.listener.drain() if events is None else events:
            if kind in ("wake", "inbox"):
                woken = True
                self.next_poll = self.os.monotonic()
                self.inbox_due = self.inbox_due or kind == "inbox"
            elif kind == "control":
                self.handle_control(payload)
        if woken:
            self.fill_slots()  # straight away: the other steps can wait for the next tick

    def handle_control(self, payload: str) -> None:
        jobs = self.engine.pushed_jobs(payload)  # the idle-latency path: no JSON to decode
        if jobs is not None:
            if not jobs:
                log.warning("ignoring unreadable push message %r", payload[:200])
            self.accept_pushed(jobs)
            return
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
            self.next_heartbeat = self.os.monotonic()  # `dtq supervisors` shows it at once

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
        if self.pool.fork_server is not None:  # a fresh server imports the new code afresh
            self.pool.fork_server.close()
            self.pool.fork_server = start_fork_server(self.settings, self.plugins, RESTART_SECONDS)
        for w in list(self.pool.workers.values()):
            w.max_jobs, w.shrink_marked = w.jobs_done + len(w.jobs), False  # old code: no way back
            if w.state is WorkerState.IDLE:
                self.pool.retire(w)
        log.info("SIGHUP: plugins reloaded (%s); replacing workers", ",".join(sorted(plugins)))

    # --- the pool -----------------------------------------------------------------
    def live_count(self) -> int:
        return sum(1 for w in self.pool.workers.values() if w.alive)

    def taking_count(self) -> int:
        """Live workers that will take more jobs (not busy with their last ones)."""
        return sum(1 for w in self.pool.workers.values() if w.alive and not w.leaving)

    def busy_workers(self) -> int:
        return sum(1 for w in self.pool.workers.values() if w.jobs)

    def give_back_unstarted(self) -> None:
        """Draining: jobs claimed but not yet sent to a worker go back to the queue now.

        Jobs already in a worker's pipe stay: the worker will run them (they are
        short, or they would not have been batched), and giving them back would
        let another supervisor run them a second time.
        """
        self.giveback.extend(self.local)
        self.local.clear()

    def maintain_pool(self) -> None:
        if self.state is not State.RUNNING:
            for w in list(self.pool.workers.values()):
                if w.state is WorkerState.IDLE:
                    self.pool.retire(w)
            return
        # A busy worker already told to leave after its jobs is not counted again: each
        # shrink by one must mark one worker, not one more at every tick.
        live = [w for w in self.pool.workers.values() if w.alive and not w.leaving]
        excess = len(live) - self.target_workers
        for w in self.pool.workers.values():  # grown again: busy workers a shrink marked stay
            if excess < 0 and w.alive and w.shrink_marked:
                w.max_jobs, w.shrink_marked = w.limit_before_shrink, False
                excess += 1
        for w in sorted(live, key=lambda w: len(w.jobs)):
            if excess <= 0:
                break
            if not w.jobs:
                self.pool.retire(w)
                excess -= 1
        for w in live:  # busy workers over the target retire once their job is done
            if excess > 0 and w.jobs:
                w.shrink_marked, w.limit_before_shrink = True, w.max_jobs
                w.max_jobs = w.jobs_done + len(w.jobs)
                excess -= 1
        now = self.os.monotonic()
        while self.live_count() < self.target_workers and now >= self.spawn_not_before:
            try:
                self.pool.spawn()
            except SpawnFailed as exc:
                self.spawn_backoff = min(30.0, max(0.1, self.spawn_backoff * 2))
                self.spawn_not_before = now + self.spawn_backoff
                log.error("%s; next fork in %.1f s", exc, self.spawn_backoff)
                break
            if self.spawn_backoff:
                self.spawn_not_before = now + self.spawn_backoff
                break
        if self.local and not self.taking_count():  # scaled to 0, or forks backing off
            self.giveback.extend(self.local)  # other supervisors may run them meanwhile
            self.local.clear()

    def check_done(self) -> None:
        """Burst mode ends when nothing is ready, running or scheduled; a stop ends when all is given back."""
        if self.state is State.RUNNING and self.settings.burst:
            if (self.queue_idle and self.next_due is None and not self.local
                    and not self.busy_workers() and not self.outbox and not self.giveback
                    and not self.finishing and not self.claim_out and self.recovered_own):
                log.info("burst: queues empty and pool idle; stopping")
                self.begin_draining(0.0)
        if self.state is State.DRAINING and not self.busy_workers() and not self.local:
            self.stop_now()
        if self.state is State.STOPPING and not self.pool.workers:
            self.state = State.STOPPED

    def catch_late_pushes(self) -> None:
        """Jobs claimed for us just before we withdrew may still be on their way: read
        everything published until now, to give them back."""
        if self.listener is not None and self.listener.fileno() >= 0:
            self.handle_events(self.listener.barrier())

    def shutdown(self) -> None:
        """Give back what is held, leave the registry, close everything."""
        self.stop_now()
        deadline = self.os.monotonic() + 5.0
        while self.pool.workers and self.os.monotonic() < deadline:
            self.reap_workers()
            if self.pool.workers:
                select.select([], [], [], 0.01)
        self.withdraw_standby()
        self.catch_late_pushes()
        try:
            self.collect_replies(wait=True)  # a claim in flight lands in giveback
            self.deliver()
            self.collect_replies(wait=True)
            if self.outbox or self.giveback:
                log.error("could not record %d outcomes or give back %d jobs (their leases "
                          "expire and another supervisor recovers them)",
                          len(self.outbox), len(self.giveback))
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
        if self.pool.fork_server is not None:
            self.pool.fork_server.close()
        log.info("supervisor %s stopped", self.settings.name)
