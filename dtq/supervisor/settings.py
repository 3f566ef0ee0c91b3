"""One settings object for a supervisor, instead of constructors with twenty keywords."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dtq.engine.base import Defaults
from dtq.plugin import PluginConfig


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
    # workers forked by a fresh interpreter that loaded the same plugins (forkserver.py), not
    # by the supervisor; off by default for library use, where plugins may be objects
    # no spec names; `dtq supervise` turns it on
    fork_server: bool = False
    timeout: float | None = 3600.0  # default per-job timeout
    timeout_ceiling: float | None = None  # no job may ask for more
    memory_limit: int | None = None  # default per-job limit
    memory_breaches: int = 1  # consecutive readings over the limit before a kill
    idle_memory_limit: int | None = None  # recycle a worker whose idle RSS grew past this
    idle_memory_growth: int | None = 256 * 2**20  # ... or grew by this since its first job
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
    max_batch: int = 128
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


def plugin_config(settings: SupervisorSettings) -> PluginConfig:
    """What every plugin is told: the allowed roots and the operator's plugin options."""
    return PluginConfig(allowed_paths=tuple(p.resolve() for p in settings.allow_paths),
                        options=dict(settings.plugin_options))


def drop_privileges(settings: SupervisorSettings) -> Callable[[], None] | None:
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
