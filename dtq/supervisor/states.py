"""The supervisor's states (a worker's own live in pool.py as WorkerState)."""

from __future__ import annotations

import enum


class State(enum.Enum):
    RUNNING = "running"  # claiming and running jobs
    DRAINING = "draining"  # stopped claiming; running jobs may finish within the grace
    STOPPING = "stopping"  # killing what is left and giving its jobs back
    STOPPED = "stopped"
