"""The chaos log: every action with its wall-clock window, kept in memory and in events.jsonl."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

KINDS = ("worker_kill", "supervisor_kill", "stop", "redis_restart")


@dataclass
class Event:
    """One action: ``t0``..``t1`` is its window in epoch seconds (equal for an instant)."""

    kind: str
    target: str
    t0: float
    t1: float
    detail: dict[str, Any] = field(default_factory=dict)


class EventLog:
    """Appends events to a list and to a JSON-lines file; echoes them when verbose."""

    def __init__(self, path: Path, verbose: bool = False, out: TextIO | None = None) -> None:
        self.events: list[Event] = []
        self.path = path
        self.verbose = verbose
        self.out = out
        self.started = time.time()

    def add(self, kind: str, target: str, t0: float, t1: float | None = None, **detail: Any) -> Event:
        event = Event(kind, target, t0, t0 if t1 is None else t1, detail)
        self.events.append(event)
        with self.path.open("a") as f:
            f.write(json.dumps(asdict(event)) + "\n")
        if self.verbose and self.out is not None:
            extra = " ".join(f"{k}={v}" for k, v in detail.items())
            span = f" ({event.t1 - event.t0:.2f} s)" if event.t1 > event.t0 else ""
            print(f"[{event.t0 - self.started:7.2f}] {kind} {target}{span} {extra}".rstrip(),
                  file=self.out, flush=True)
        return event

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)
