"""Pure statistics for `dtq stats`: reason grouping, percentiles, recent activity.

No Redis here: the samples come from `RedisAdmin`, so these functions are tested
with hand-made attempt records.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from dtq.engine.redis_admin import JobSample

METRICS = (("wall", "wall s"), ("cpu", "cpu s"), ("peak_rss", "peak rss"))
PERCENTILES = (50, 90, 99)
WINDOWS = (60, 300, 900)  # seconds: "finished in the last 1/5/15 minutes"

_NORMALISERS = [
    (re.compile(r"supervisor \S+"), "supervisor X"),
    (re.compile(r"(?<![\w.])/[^\s:,'\")]+"), "PATH"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "N"),
    (re.compile(r"\b[0-9a-f]{16,}\b"), "ID"),
    (re.compile(r"\d+(\.\d+)?"), "N"),
]


def normalise_reason(reason: str, width: int = 120) -> str:
    """Group reasons that differ only in numbers, paths or names: 'timeout after N s'."""
    text = reason.strip().splitlines()[0] if reason.strip() else "(no reason)"
    for pattern, replacement in _NORMALISERS:
        text = pattern.sub(replacement, text)
    return text[:width]


def is_attempt(record: dict[str, Any]) -> bool:
    """History records are attempts, except notes such as an operator's retry."""
    return "event" not in record


def failure_reasons(samples: Iterable[JobSample], dead_reasons: Iterable[str]) -> dict[str, Counter[str]]:
    """Normalised reasons of dead letters, and of every failed attempt in the sample."""
    dead = Counter(normalise_reason(r) for r in dead_reasons)
    attempts: Counter[str] = Counter()
    for job in samples:
        for record in job.history:
            if is_attempt(record) and record.get("reason"):
                attempts[normalise_reason(str(record["reason"]))] += 1
    return {"dead": dead, "failed_attempts": attempts}


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence (p in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def plugin_percentiles(samples: Iterable[JobSample]) -> dict[str, dict[str, dict[str, float]]]:
    """plugin -> metric -> {n, p50, p90, p99, max} over every measured attempt."""
    values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for job in samples:
        for record in job.history:
            if not is_attempt(record) or "wall" not in record:
                continue
            for metric, _ in METRICS:
                value = record.get(metric)
                if isinstance(value, (int, float)):
                    values[job.plugin or "-"][metric].append(float(value))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for plugin, metrics in sorted(values.items()):
        out[plugin] = {}
        for metric, found in metrics.items():
            found.sort()
            row = {f"p{p}": percentile(found, p) for p in PERCENTILES}
            out[plugin][metric] = {"n": len(found), **row, "max": found[-1]}
    return out


def _epoch_s(value: Any) -> float | None:
    """Records carry epoch seconds (supervisor) or ms (recovery); tell them apart."""
    if not isinstance(value, (int, float)) or value <= 0:
        return None
    return value / 1000.0 if value > 1e11 else float(value)


def recent_activity(samples: Iterable[JobSample], now: float) -> dict[str, dict[str, int]]:
    """Attempts that ended done / failed within each window, from the sampled history."""
    out = {f"{w // 60}m": {"done": 0, "failed": 0} for w in WINDOWS}
    for job in samples:
        for record in job.history:
            ended = _epoch_s(record.get("finished_at"))
            if not is_attempt(record) or ended is None:
                continue
            kind = "failed" if record.get("reason") else "done"
            for window in WINDOWS:
                if now - ended <= window:
                    out[f"{window // 60}m"][kind] += 1
    return out


def human_bytes(n: float) -> str:
    """Short sizes for narrow columns: 950B, 12K, 3.4M, 1.2G."""
    if math.isnan(n):
        return "-"
    for unit in ("B", "K", "M", "G", "T"):
        if abs(n) < 1024 or unit == "T":
            return f"{n:.0f}{unit}" if unit in ("B", "K") or n >= 100 else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n:.1f}T"


def human_seconds(s: float) -> str:
    """0.012s, 3.4s, 12m, 3.1h: readable in seven characters."""
    if math.isnan(s):
        return "-"
    if s < 10:
        return f"{s:.3f}s" if s < 1 else f"{s:.2f}s"
    if s < 600:
        return f"{s:.0f}s"
    return f"{s / 60:.0f}m" if s < 36000 else f"{s / 3600:.1f}h"
