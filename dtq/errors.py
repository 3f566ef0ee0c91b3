"""Exceptions shared by the client, the engine, the supervisor and plugins."""

from __future__ import annotations


class DtqError(Exception):
    """Base of every error dtq raises on purpose."""


class InvalidJob(DtqError, ValueError):
    """A job envelope or option is malformed; the message names the field."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class EngineUnavailable(DtqError):
    """The backend (Redis) cannot be used now: unreachable, refusing commands (out of
    memory, a read-only replica...), or answering with an error it should not give (a
    key of ours overwritten). The message says which server and what it said; a
    supervisor holds what it has and tries again."""


class JobNotFound(DtqError, KeyError):
    """No job with that id exists (never enqueued, or its result expired)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "job not found"


class JobFailed(DtqError):
    """Raised by `Queue.result` when the job ended dead-lettered or cancelled."""

    def __init__(self, job_id: str, state: str, reason: str) -> None:
        self.job_id = job_id
        self.state = state
        self.reason = reason
        super().__init__(f"job {job_id} ended {state}: {reason}")


class ResultTimeout(DtqError, TimeoutError):
    """`Queue.result(timeout=...)` ran out of time before the job finished."""


class PermanentJobError(DtqError):
    """Raised by a plugin for a failure that retrying cannot fix (bad input).

    The job goes to the dead-letter queue at once instead of being retried.
    """


class PluginError(DtqError):
    """A plugin could not be found, imported or set up."""
