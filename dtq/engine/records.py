"""Turning a stored job hash back into a `JobStatus` (engine-neutral decoding)."""

from __future__ import annotations

import json
from typing import Any

from dtq.engine.base import JobStatus

_OPTION_FIELDS = ("timeout", "memory_limit", "max_attempts", "backoff", "priority",
                  "result_ttl", "run_at")


def text(value: Any) -> str:
    """A Redis reply as text: bytes decoded (undecodable bytes replaced), None as '',
    anything else (a str, an integer reply) through str()."""
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _json(value: str, default: Any = None) -> Any:
    if not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return value


def _ms(value: str) -> float | None:
    return float(value) / 1000.0 if value else None


def _number(value: str) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() else number


def status_from_hash(queue: str, raw: dict[bytes, bytes]) -> JobStatus:
    """Decode a job hash as read with HGETALL."""
    h = {text(k): text(v) for k, v in raw.items()}
    options = {name: _number(h[name]) for name in _OPTION_FIELDS if h.get(name)}
    if "run_at" in options:
        options["run_at"] = options["run_at"] / 1000.0
    return JobStatus(
        id=h.get("id", ""),
        queue=queue,
        state=h.get("state", "unknown"),
        plugin=h.get("plugin", ""),
        data=_json(h.get("data", "")),
        attempt=int(h.get("attempt") or 0),
        failures=int(h.get("failures") or 0),
        holder=h.get("holder", ""),
        result=_json(h.get("result", "")),
        error=h.get("error", ""),
        history=_json(h.get("history", ""), []),
        progress=_json(h.get("progress", ""), None),
        enqueued_at=_ms(h.get("enqueued_at", "")),
        started_at=_ms(h.get("started_at", "")),
        finished_at=_ms(h.get("finished_at", "")),
        options=options,
        raw=h.get("raw") or None,
    )
