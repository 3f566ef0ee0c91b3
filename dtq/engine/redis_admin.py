"""Operator actions on a Redis engine: dead letters, pause/resume, and bounded job samples.

Kept apart from `RedisEngine` because nothing here is on a supervisor's path: these
are the commands behind `dtq dead`, `dtq pause`, `dtq stats` and `dtq top`. State
changes are Lua scripts (`retry_dead.lua`, `purge_dead.lua`) so they stay atomic
against supervisors claiming and finishing jobs. Keys are listed in docs/operations.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from dtq import keys
from dtq.engine.redis_engine import RedisEngine, _chunks, _s

SAMPLE_CAP = 10_000  # job hashes read at most per queue for `dtq stats`
SCAN_COUNT = 1_000


def job_pattern(queue: str) -> str:
    """SCAN MATCH pattern of one queue's job hashes (queue names hold no glob characters)."""
    return keys.QueueKeys(queue).prefix + "job:*"


@dataclass(frozen=True)
class DeadEntry:
    """One dead-lettered job as `dtq dead list` shows it."""

    id: str
    queue: str
    dead_at: float  # epoch seconds
    failures: int
    plugin: str
    reason: str


@dataclass
class JobSample:
    """The fields of one job hash that statistics need."""

    id: str
    plugin: str
    state: str
    error: str
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class SampleResult:
    """Sampled jobs of one queue; ``complete`` is False when the cap cut the scan short."""

    jobs: list[JobSample]
    complete: bool


class RedisAdmin:
    """Operator actions, reusing the engine's connection, script loading and error mapping."""

    def __init__(self, engine: RedisEngine) -> None:
        self.engine = engine
        self.client = engine.client

    # --- dead letters -----------------------------------------------------------
    def dead_count(self, queue: str) -> int:
        with self.engine._errors():
            return int(self.client.zcard(keys.QueueKeys(queue).dead))

    def dead_list(self, queue: str, offset: int = 0, limit: int = 50) -> list[DeadEntry]:
        """Dead jobs of one queue, newest first, one page."""
        qk = keys.QueueKeys(queue)
        with self.engine._errors():
            rows = self.client.zrevrange(qk.dead, offset, offset + limit - 1, withscores=True)
            pipe = self.client.pipeline(transaction=False)
            for job_id, _ in rows:
                pipe.hmget(qk.job(_s(job_id)), "failures", "plugin", "error")
            fields = pipe.execute() if rows else []
        return [DeadEntry(_s(job_id), queue, score / 1000.0, int(f[0] or 0), _s(f[1] or b""),
                          _s(f[2] or b""))
                for (job_id, score), f in zip(rows, fields, strict=True)]

    def dead_ids(self, queue: str) -> list[str]:
        """Every dead id of a queue, oldest first (a snapshot for retry/purge --all)."""
        with self.engine._errors():
            return [_s(x) for x in self.client.zrange(keys.QueueKeys(queue).dead, 0, -1)]

    def find_queue(self, job_id: str, first: str | None = None) -> str | None:
        """The queue whose dead set lists ``job_id`` (``first`` is asked first)."""
        queues = self.engine.queues()
        order = ([first] if first else []) + [q for q in queues if q != first]
        with self.engine._errors():
            for queue in order:
                if self.client.zscore(keys.QueueKeys(queue).dead, job_id) is not None:
                    return queue
        return None

    def retry(self, queue: str, job_ids: Sequence[str]) -> dict[str, str]:
        """Requeue dead jobs with a fresh failure count: id -> 'queued', 'missing', 'malformed'."""
        qk = keys.QueueKeys(queue)
        out: dict[str, str] = {}
        now = int(time.time() * 1000)
        with self.engine._errors():
            for chunk in _chunks(list(job_ids)):
                reply = self.engine._run("retry_dead", qk.dead, [qk.prefix, now, *chunk])
                out.update(zip(chunk, (_s(r) for r in reply), strict=True))
        return out

    def purge(self, queue: str, job_ids: Sequence[str]) -> int:
        """Delete dead jobs and their hashes; returns how many were purged."""
        qk = keys.QueueKeys(queue)
        purged = 0
        with self.engine._errors():
            for chunk in _chunks(list(job_ids)):
                purged += int(self.engine._run("purge_dead", qk.dead, [qk.prefix, *chunk]))
        return purged

    # --- pause / resume -------------------------------------------------------------
    def pause(self, queue: str) -> bool:
        """Stop supervisors claiming from ``queue``; running jobs go on. False if already paused."""
        with self.engine._errors():
            return bool(self.client.set(keys.QueueKeys(queue).paused, int(time.time()), nx=True))

    def resume(self, queue: str) -> bool:
        """Let supervisors claim again, waking idle ones at once. False if it was not paused."""
        qk = keys.QueueKeys(queue)
        with self.engine._errors():
            removed = bool(self.client.delete(qk.paused))
            self.client.publish(qk.wake_channel, "1")
        return removed

    # --- samples for statistics -------------------------------------------------------
    def _scan_job_keys(self, queue: str, cap: int) -> tuple[list[str], bool]:
        found: list[str] = []
        cursor = 0
        while True:
            cursor, batch = self.client.scan(cursor, match=job_pattern(queue), count=SCAN_COUNT)
            found.extend(_s(k) for k in batch)
            if cursor == 0:
                return found[:cap], len(found) <= cap
            if len(found) >= cap:
                return found[:cap], False

    def sample_jobs(self, queue: str, cap: int = SAMPLE_CAP) -> SampleResult:
        """Up to ``cap`` job hashes found by SCAN (an operator command, never a supervisor's)."""
        with self.engine._errors():
            job_keys, complete = self._scan_job_keys(queue, cap)
            jobs: list[JobSample] = []
            for chunk in _chunks(job_keys):
                pipe = self.client.pipeline(transaction=False)
                for key in chunk:
                    pipe.hmget(key, "id", "plugin", "state", "error", "history")
                jobs.extend(_sample(f) for f in pipe.execute() if f[2] is not None)
        return SampleResult(jobs, complete)

    def dead_reasons(self, queue: str, cap: int = SAMPLE_CAP) -> list[str]:
        """The last reason of the newest ``cap`` dead jobs."""
        qk = keys.QueueKeys(queue)
        with self.engine._errors():
            ids = [_s(x) for x in self.client.zrevrange(qk.dead, 0, cap - 1)]
            reasons: list[str] = []
            for chunk in _chunks(ids):
                pipe = self.client.pipeline(transaction=False)
                for job_id in chunk:
                    pipe.hget(qk.job(job_id), "error")
                reasons.extend(_s(r or b"") for r in pipe.execute())
        return reasons

    def job_fields(self, queues: Sequence[str], job_ids: Sequence[str],
                   *names: str) -> dict[str, dict[str, str]]:
        """Selected fields of jobs whose queue is one of ``queues`` (for `dtq top`)."""
        wanted = [(q, j) for q in queues for j in job_ids]
        with self.engine._errors():
            pipe = self.client.pipeline(transaction=False)
            for queue, job_id in wanted:
                pipe.hmget(keys.QueueKeys(queue).job(job_id), "state", *names)
            replies = pipe.execute() if wanted else []
        out: dict[str, dict[str, str]] = {}
        for (_, job_id), values in zip(wanted, replies, strict=True):
            if values[0] is not None and job_id not in out:
                out[job_id] = {n: _s(v) for n, v in zip(names, values[1:], strict=True) if v}
        return out

    def all_stats(self, queues: Sequence[str]) -> Iterator[tuple[str, dict[str, int]]]:
        for queue in queues:
            yield queue, self.engine.stats(queue)


def _sample(f: list[Any]) -> JobSample:
    try:
        history = json.loads(f[4]) if f[4] else []
    except ValueError:
        history = []
    return JobSample(_s(f[0] or b""), _s(f[1] or b""), _s(f[2]), _s(f[3] or b""),
                     [r for r in history if isinstance(r, dict)] if isinstance(history, list) else [])
