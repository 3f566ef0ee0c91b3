"""The plugin contract: what a job-kind handler implements, and the context it gets.

A plugin is a class with a ``name`` (the ``job.plugin`` value it handles) and a
``process(data, ctx)`` method that returns a JSON-serialisable result or raises.
Plugins are instantiated once in the supervisor, before workers fork, with a
`PluginConfig`; ``setup()`` runs there too so heavy imports are shared
copy-on-write by every worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar


@dataclass(frozen=True)
class PluginConfig:
    """Settings a supervisor hands to every plugin it loads."""

    allowed_paths: tuple[Path, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


ProgressSink = Callable[[float | None, str], None]


def _ignore_progress(fraction: float | None, message: str) -> None:
    return None


@dataclass
class JobContext:
    """What a plugin knows about the attempt it is running."""

    job_id: str
    attempt: int
    deadline: float | None = None  # time.time() after which the job is killed
    queue: str = "default"
    logger: logging.Logger = field(default_factory=lambda: logging.getLogger("dtq.plugin"))
    report: ProgressSink = _ignore_progress

    def progress(self, fraction: float | None = None, message: str = "") -> None:
        """Report progress (0.0-1.0 and/or a short message); shown by `dtq status`."""
        if fraction is not None:
            fraction = min(1.0, max(0.0, float(fraction)))
        self.report(fraction, str(message)[:200])

    def time_left(self) -> float | None:
        """Seconds until the deadline, or None when the job has no timeout."""
        return None if self.deadline is None else self.deadline - time.time()


class Plugin:
    """Base class for plugins; subclasses set ``name`` and implement ``process``."""

    name: ClassVar[str] = ""

    def __init__(self, config: PluginConfig | None = None) -> None:
        self.config = config or PluginConfig()

    def setup(self) -> None:
        """Import and prepare heavy things once, before the workers fork."""

    def process(self, data: Any, ctx: JobContext) -> Any:
        raise NotImplementedError
