"""Process titles ('dtq supervisor NAME', 'dtq worker: PLUGIN JOB_ID') for ps and top."""

from __future__ import annotations

try:
    from setproctitle import setproctitle as set_title
except ImportError:  # pragma: no cover - titles are a convenience
    def set_title(title: str) -> None:
        return None
