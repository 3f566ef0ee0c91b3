"""One settings object for a supervisor, instead of constructors with twenty keywords."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtq.engine.base import Defaults


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class SupervisorSettings:
    """Everything `dtq supervise` can be told. Times in seconds, sizes in bytes."""

    name: str = field(default_factory=default_name)
    queues: list[str] = field(default_factory=lambda: ["default"])
    workers: int = 2
    plugins: list[str] = field(default_factory=list)  # module:Class specs
    entry_points: bool = True
    timeout: float | None = 3600.0  # default per-job timeout
    timeout_ceiling: float | None = None  # no job may ask for more
    memory_limit: int | None = None  # default per-job limit
    memory_breaches: int = 1  # consecutive readings over the limit before a kill
    idle_memory_limit: int | None = None  # recycle a worker whose idle RSS grew past this
    max_file_size: int | None = None  # RLIMIT_FSIZE of workers
    max_jobs_per_worker: int | None = None  # recycle after N jobs (with +-10% jitter)
    lease: float = 30.0
    heartbeat: float | None = None  # default lease / 3
    recover_every: float | None = None  # default lease / 2
    poll: float = 1.0  # idle poll for delayed jobs and inbox entries without a wake-up
    memory_sample: float = 0.1  # seconds between memory readings of busy workers
    grace: float = 30.0  # graceful stop: how long running jobs may finish
    kill_grace: float = 2.0  # soft signal -> SIGKILL of the process group
    batch_window: float = 0.002  # no job waits longer than this behind batched short jobs
    max_batch: int = 64
    burst: bool = False
    allow_paths: list[Path] = field(default_factory=list)
    plugin_options: dict[str, Any] = field(default_factory=dict)
    defaults: Defaults = field(default_factory=Defaults)
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    user: str | None = None
    group: str | None = None

    @property
    def heartbeat_every(self) -> float:
        return self.heartbeat if self.heartbeat is not None else self.lease / 3.0

    @property
    def recover_interval(self) -> float:
        return self.recover_every if self.recover_every is not None else self.lease / 2.0
