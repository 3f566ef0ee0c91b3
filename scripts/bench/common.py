"""Helpers shared by the drivers: paths, log files, percentiles, completion timing."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = ROOT / ".bench" / "logs"
POLL_S = 0.005
STALL_S = 30.0  # a drain that makes no progress this long has failed


def redis_url() -> str:
    return os.environ["BENCH_REDIS_URL"]


def log_path(tool: str, what: str) -> Path:
    return LOG_DIR / f"{tool}-{what}.log"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 200 is the 198th value)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def time_completions(count: Callable[[], int], n: int, alive: Callable[[], None],
                     start_timeout: float, drain_timeout: float) -> dict:
    """Rate from the first sighting of a completion to the n-th, polled every POLL_S.

    Starting the clock at the first completion leaves worker start-up out for
    every tool alike. ``alive`` raises if the worker died meanwhile.
    """
    deadline = time.monotonic() + start_timeout
    while (first_count := count()) < 1:
        alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no job completed within {start_timeout:.0f} s of worker start")
        time.sleep(POLL_S)
    first = time.perf_counter()
    wait_for_count(count, n, alive, drain_timeout)
    elapsed = time.perf_counter() - first
    if first_count >= n:
        raise RuntimeError(f"all {n} jobs were done at the first poll; use a larger --jobs")
    return {"jobs_per_s": (n - first_count) / elapsed, "jobs": n, "seconds": elapsed}


def wait_for_count(count: Callable[[], int], n: int, alive: Callable[[], None],
                    timeout: float) -> None:
    """Poll until count() >= n; fail after timeout, or after STALL_S without progress."""
    deadline = time.monotonic() + timeout
    last, last_change = -1, time.monotonic()
    while (done := count()) < n:
        alive()
        now = time.monotonic()
        if done != last:
            last, last_change = done, now
        if now > deadline or now - last_change > STALL_S:
            raise TimeoutError(f"only {done}/{n} jobs done after {now - deadline + timeout:.0f} s")
        time.sleep(POLL_S)


def drain_timeout(n: int) -> float:
    """Bound a drain by a floor rate of 20 jobs/s plus a minute."""
    return 60.0 + n / 20.0
