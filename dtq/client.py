"""The producer's API: `Queue`, in the spirit of Perl's Distributed::Tasks::Queue.

    q = Queue("redis://localhost:6379/0", plugin_list=["montage_image"])
    job_id = q.append({"id": "21876931", "job": {"plugin": "montage_image", "data": {...}}})
    q.result(job_id, timeout=60)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from dtq.engine.base import Engine, EnqueueResult, JobStatus
from dtq.errors import InvalidJob, JobFailed, JobNotFound, ResultTimeout
from dtq.job import Job, build_job, parse_envelope

Envelope = dict[str, Any] | str | bytes | Job
DEAD_LETTER_PREFIX = "bad-"  # the id a malformed inbox entry is dead-lettered under


class Queue:
    """Enqueue jobs and follow them. ``engine`` replaces the default Redis engine."""

    def __init__(self, redis_url: str | None = None, plugin_list: Iterable[Any] | None = None,
                 *, queue: str = "default", engine: Engine | None = None) -> None:
        if engine is None:
            from dtq.engine.redis_engine import RedisEngine  # only the engine imports redis

            engine = RedisEngine(redis_url)
        self.engine = engine
        self.queue = build_job("noop", None, options={"queue": queue}).options.queue
        self.plugin_list = None if plugin_list is None else frozenset(
            p if isinstance(p, str) else p.name for p in plugin_list)

    # --- enqueueing -------------------------------------------------------------
    def job(self, envelope: Envelope) -> Job:
        """Validate one envelope against this queue (its default queue and plugin list)."""
        job = envelope if isinstance(envelope, Job) else parse_envelope(
            envelope, default_queue=self.queue)
        if self.plugin_list is not None and job.plugin not in self.plugin_list:
            known = ", ".join(sorted(self.plugin_list)) or "none"
            raise InvalidJob("job.plugin", f"unknown plugin {job.plugin!r} (this queue accepts: {known})")
        return job

    def append(self, envelope: Envelope) -> str:
        """Enqueue one envelope as the Perl module took it; returns the job id."""
        return self.engine.enqueue(self.job(envelope)).id

    def enqueue(self, plugin: str, data: Any = None, *, id: str | None = None, **options: Any) -> str:
        """Enqueue ``data`` for ``plugin``; options as in docs/protocol.md. Returns the id."""
        job = build_job(plugin, data, id, options, default_queue=self.queue)  # no envelope to parse
        return self.append(job)

    def enqueue_many(self, envelopes: Iterable[Envelope]) -> list[str]:
        """Validate every envelope first (nothing is stored if one is bad), then store in bulk."""
        return [r.id for r in self.submit_many(envelopes)]

    def submit_many(self, envelopes: Iterable[Envelope]) -> list[EnqueueResult]:
        """Like `enqueue_many`, but says per job whether it was new or already there."""
        jobs = []
        for index, envelope in enumerate(envelopes):
            try:
                jobs.append(self.job(envelope))
            except InvalidJob as exc:
                raise InvalidJob(f"[{index}].{exc.field}", exc.problem) from None
        return self.engine.enqueue_many(jobs)

    # --- following jobs -----------------------------------------------------------
    def _queue_of(self, job_id: str) -> str:
        """The queue holding ``job_id``: ours first, then every known queue."""
        if self.engine.status(job_id, self.queue) is not None:
            return self.queue
        for queue in self.engine.queues():
            if queue != self.queue and self.engine.status(job_id, queue) is not None:
                return queue
        raise JobNotFound(f"no job {job_id!r} (never enqueued, or its result expired)")

    def status(self, job_id: str) -> JobStatus:
        """Everything recorded about the job; raises JobNotFound.

        A malformed inbox entry is dead-lettered as ``bad-<its id>``; asking for the
        id the producer gave finds that dead letter and its reason.
        """
        try:
            queue = self._queue_of(job_id)
        except JobNotFound:
            try:
                queue = self._queue_of(DEAD_LETTER_PREFIX + job_id)
            except JobNotFound:
                raise JobNotFound(f"no job {job_id!r} (never enqueued, or its result expired)") from None
            job_id = DEAD_LETTER_PREFIX + job_id
        status = self.engine.status(job_id, queue)
        if status is None:
            raise JobNotFound(f"no job {job_id!r} (never enqueued, or its result expired)")
        return status

    def wait(self, job_id: str, timeout: float | None = None) -> JobStatus:
        """Block until the job has finished (or ``timeout``); returns its status."""
        status = self.engine.wait(job_id, self.queue, timeout)  # the usual case: our queue
        if status is None:
            status = self.engine.wait(job_id, self._queue_of(job_id), timeout)
        if status is None:
            raise JobNotFound(f"no job {job_id!r} (its record expired while waiting)")
        return status

    def result(self, job_id: str, timeout: float | None = None) -> Any:
        """The plugin's return value; raises ResultTimeout or JobFailed (dead or cancelled)."""
        status = self.wait(job_id, timeout)
        if status.state == "done":
            return status.result
        if status.finished:
            raise JobFailed(job_id, status.state, status.error)
        raise ResultTimeout(f"job {job_id} is still {status.state} after {timeout} s")

    def cancel(self, job_id: str) -> str:
        """Cancel a waiting job, or ask the holder of a running one to stop it."""
        return self.engine.cancel(job_id, self._queue_of(job_id))

    def stats(self) -> dict[str, int]:
        """Depths and counters of this queue."""
        return self.engine.stats(self.queue)

    def get_jobs(self, job_ids: Sequence[str]) -> list[JobStatus | None]:
        """The status of several jobs at once (None for unknown ids)."""
        return [self.engine.status(job_id, self.queue) for job_id in job_ids]
