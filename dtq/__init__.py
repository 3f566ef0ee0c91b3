"""dtq: a distributed task queue for CPU-heavy work (JSON jobs in Redis, forked workers)."""

from dtq.client import Queue
from dtq.engine.base import Engine, JobStatus
from dtq.errors import (
    DtqError,
    EngineUnavailable,
    InvalidJob,
    JobFailed,
    JobNotFound,
    PermanentJobError,
    ResultTimeout,
)
from dtq.job import Job, JobState
from dtq.plugin import JobContext, Plugin, PluginConfig

__all__ = [
    "DtqError", "Engine", "EngineUnavailable", "InvalidJob", "Job", "JobContext", "JobFailed",
    "JobNotFound", "JobState", "JobStatus", "Plugin", "PluginConfig", "PermanentJobError",
    "Queue", "ResultTimeout",
]
__version__ = "0.1.0"
