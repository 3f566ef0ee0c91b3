"""dtq plugins for the benchmark: a no-op that stamps its start, and CPU spinners."""

from __future__ import annotations

import time
from typing import Any

from dtq.plugin import JobContext, Plugin
from scripts.bench.spin import SPIN_ITERATIONS, spin, timed_spin


class Noop(Plugin):
    """Does nothing but report when it started, for the latency measurement."""

    name = "noop"

    def process(self, data: Any, ctx: JobContext) -> Any:
        return {"started": time.time()}


class Spin(Plugin):
    """Burns ~0.25 s of pure-Python CPU, the same work the Pool baseline does."""

    name = "spin"

    def process(self, data: Any, ctx: JobContext) -> Any:
        iterations = int((data or {}).get("iterations", SPIN_ITERATIONS))
        return {"result": spin(iterations)}


class TimedSpin(Plugin):
    """Spin, returning what the loop itself cost (for scripts/cpu_ab.py)."""

    name = "timed_spin"

    def process(self, data: Any, ctx: JobContext) -> Any:
        return timed_spin(int((data or {}).get("iterations", SPIN_ITERATIONS)))
