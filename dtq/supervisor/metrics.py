"""Prometheus metrics of one supervisor, with the standard client library.

The hot path only bumps plain counters (a labelled prometheus Counter takes a
lock and a lookup, a measurable share of a no-op job's cost); a custom
collector turns them into metric families when /metrics is scraped. No
exporter thread is used: the supervisor's loop serves the page
(`dtq/supervisor/http.py`), so nothing runs beside the loop in the process that forks.
prometheus_client is imported at the first scrape: a supervisor that serves no metrics
does not pay its ~25 ms of import at start, nor carry it in every forked worker.
"""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
QUEUE_STATES = ("ready", "scheduled", "running", "dead", "inbox")


def reason_kind(reason: str) -> str:
    """A small, fixed set of label values from a free-text failure reason."""
    for prefix, kind in (("timeout after", "timeout"), ("memory limit", "memory"),
                         ("killed by SIGKILL, not by dtq", "killed_oom"), ("killed by", "signal"),
                         ("exit code", "exit"), ("lease", "lease"), ("supervisor", "lease"),
                         ("cancelled", "cancelled"), ("unknown plugin", "unknown_plugin"),
                         ("protocol error", "protocol"), ("plugin returned", "bad_result"),
                         ("file size limit", "file_size")):
        if reason.startswith(prefix):
            return kind
    return "error" if re.match(r"^[A-Za-z_.]+(Error|Exception)\b", reason) else "other"


class Metrics:
    """Counters the loop bumps; `render` produces the Prometheus text format."""

    def __init__(self, supervisor: str) -> None:
        self.supervisor = supervisor
        self.started: dict[str, int] = defaultdict(int)
        self.finished: dict[tuple[str, str], int] = defaultdict(int)
        self.failed: dict[tuple[str, str], int] = defaultdict(int)
        self.durations: dict[str, list[float]] = {}  # plugin -> [bucket counts..., +Inf, sum]
        self.pool_size = 0
        self.busy = 0
        self.redis_up = 1
        self.worker_rss: dict[int, int] = {}
        self.queue_depths: dict[str, dict[str, int]] = {}
        self._registry: Any = None  # made at the first render

    def job_started(self, plugin: str) -> None:
        self.started[plugin] += 1

    def job_ended(self, plugin: str, outcome: str, wall: float, reason: str = "") -> None:
        self.finished[(plugin, outcome)] += 1
        hist = self.durations.get(plugin)
        if hist is None:
            hist = self.durations[plugin] = [0.0] * (len(BUCKETS) + 2)
        hist[bisect.bisect_left(BUCKETS, wall)] += 1
        hist[-1] += wall
        if reason:
            self.failed[(plugin, reason_kind(reason))] += 1

    def set_queue_depths(self, queue: str, stats: dict[str, int]) -> None:
        self.queue_depths[queue] = {s: stats.get(s, 0) for s in QUEUE_STATES}

    def collect(self) -> Iterator[Metric]:
        """Called by the registry at scrape time."""
        yield _counter("dtq_jobs_started", "Attempts started", ["plugin"],
                       {(plugin,): n for plugin, n in self.started.items()})
        yield _counter("dtq_jobs_finished", "Attempts ended", ["plugin", "outcome"], self.finished)
        yield _counter("dtq_jobs_failed", "Failed attempts by reason", ["plugin", "reason"],
                       self.failed)
        yield self._durations()
        yield from self._gauges()

    def _durations(self) -> HistogramMetricFamily:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily("dtq_job_duration_seconds", "Wall time of attempts",
                                       labels=["plugin"])
        for plugin, hist in self.durations.items():
            cumulative, buckets = 0.0, []
            for bound, count in zip((*BUCKETS, float("inf")), hist[:-1], strict=True):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else str(bound), cumulative))
            family.add_metric([plugin], buckets, hist[-1])
        return family

    def _gauges(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily("dtq_pool_size", "Target number of workers", value=self.pool_size)
        yield GaugeMetricFamily("dtq_busy_workers", "Workers running a job", value=self.busy)
        yield GaugeMetricFamily("dtq_redis_up", "1 when Redis answered the last call",
                                value=self.redis_up)
        rss = GaugeMetricFamily("dtq_worker_rss_bytes", "Resident memory of busy workers",
                                labels=["pid"])
        for pid, value in self.worker_rss.items():
            rss.add_metric([str(pid)], value)
        depth = GaugeMetricFamily("dtq_queue_depth", "Jobs by queue and state",
                                  labels=["queue", "state"])
        for queue, states in self.queue_depths.items():
            for state, value in states.items():
                depth.add_metric([queue, state], value)
        info = GaugeMetricFamily("dtq_supervisor_info", "This supervisor", labels=["name"])
        info.add_metric([self.supervisor], 1)
        yield from (rss, depth, info)

    def render(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        if self._registry is None:
            self._registry = CollectorRegistry()
            self._registry.register(self)
        return generate_latest(self._registry)


def _counter(name: str, doc: str, labels: list[str],
             counts: dict[tuple[str, ...], int]) -> CounterMetricFamily:
    """A counter family with one sample per label tuple."""
    from prometheus_client.core import CounterMetricFamily

    family = CounterMetricFamily(name, doc, labels=labels)
    for values, n in counts.items():
        family.add_metric(list(values), n)
    return family
