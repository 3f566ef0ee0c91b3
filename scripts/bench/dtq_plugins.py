"""dtq plugins for the benchmark: a no-op that stamps its start, and the CPU spinner."""

from __future__ import annotations

import time
from typing import Any

from dtq.plugin import JobContext, Plugin
from scripts.bench.spin import SPIN_ITERATIONS, timed_spin


class Noop(Plugin):
    """Does nothing but report when it started, for the latency measurement."""

    name = "noop"

    def process(self, data: Any, ctx: JobContext) -> Any:
        return {"started": time.time()}


class TimedSpin(Plugin):
    """Burns ~0.25 s of pure-Python CPU, the same work the Pool baseline does, and
    returns what the loop itself cost (the benchmark splits its gap to the Pool with it)."""

    name = "timed_spin"

    def process(self, data: Any, ctx: JobContext) -> Any:
        return timed_spin(int((data or {}).get("iterations", SPIN_ITERATIONS)))
