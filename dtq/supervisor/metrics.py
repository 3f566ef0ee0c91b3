"""Prometheus metrics of one supervisor, with the standard client library's registry.

Only the registry and its text format are used: no exporter thread. The
supervisor's own loop serves them (`dtq/supervisor/http.py`), so nothing runs
beside the loop in the process that forks.
"""

from __future__ import annotations

import re
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)


def reason_kind(reason: str) -> str:
    """A small, fixed set of label values from a free-text failure reason."""
    for prefix, kind in (("timeout after", "timeout"), ("memory limit", "memory"),
                         ("killed by SIGKILL, not by dtq", "killed_oom"), ("killed by", "signal"),
                         ("exit code", "exit"), ("lease", "lease"), ("supervisor", "lease"),
                         ("cancelled", "cancelled"), ("unknown plugin", "unknown_plugin"),
                         ("protocol error", "protocol"), ("plugin returned", "bad_result")):
        if reason.startswith(prefix):
            return kind
    return "error" if re.match(r"^[A-Za-z_.]+(Error|Exception)\b", reason) else "other"


class Metrics:
    def __init__(self, supervisor: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.started = Counter("dtq_jobs_started", "Attempts started", ["plugin"], registry=r)
        self.finished = Counter("dtq_jobs_finished", "Attempts ended", ["plugin", "outcome"],
                                registry=r)
        self.failed = Counter("dtq_jobs_failed", "Failed attempts by reason", ["plugin", "reason"],
                              registry=r)
        self.duration = Histogram("dtq_job_duration_seconds", "Wall time of attempts", ["plugin"],
                                  buckets=BUCKETS, registry=r)
        self.pool_size = Gauge("dtq_pool_size", "Target number of workers", registry=r)
        self.busy = Gauge("dtq_busy_workers", "Workers running a job", registry=r)
        self.worker_rss = Gauge("dtq_worker_rss_bytes", "Resident memory of busy workers", ["pid"],
                                registry=r)
        self.queue_depth = Gauge("dtq_queue_depth", "Jobs by queue and state", ["queue", "state"],
                                 registry=r)
        self.redis_up = Gauge("dtq_redis_up", "1 when Redis answered the last call", registry=r)
        self._started: dict[str, Any] = {}
        self._ended: dict[tuple[str, str], Any] = {}
        Gauge("dtq_supervisor_info", "This supervisor", ["name"], registry=r).labels(supervisor).set(1)

    def job_started(self, plugin: str) -> None:
        child = self._started.get(plugin)
        if child is None:
            child = self._started[plugin] = self.started.labels(plugin)
        child.inc()

    def job_ended(self, plugin: str, outcome: str, wall: float, reason: str = "") -> None:
        children = self._ended.get((plugin, outcome))
        if children is None:  # labels() takes a lock and a lookup: once per plugin and outcome
            children = self._ended[(plugin, outcome)] = (
                self.finished.labels(plugin, outcome), self.duration.labels(plugin))
        children[0].inc()
        children[1].observe(wall)
        if reason:
            self.failed.labels(plugin, reason_kind(reason)).inc()

    def set_worker_rss(self, rss_by_pid: dict[int, int]) -> None:
        self.worker_rss.clear()
        for pid, rss in rss_by_pid.items():
            self.worker_rss.labels(str(pid)).set(rss)

    def set_queue_depths(self, queue: str, stats: dict[str, int]) -> None:
        for state in ("ready", "scheduled", "running", "dead", "inbox"):
            self.queue_depth.labels(queue, state).set(stats.get(state, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
