"""Following many jobs from the command line: a progress bar, then a summary."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, TextIO

from dtq.client import Queue
from dtq.engine.base import JobStatus

BAR_WIDTH = 30


def render(counts: Counter[str], total: int, elapsed: float) -> str:
    ended = counts["done"] + counts["dead"] + counts["cancelled"]
    filled = int(BAR_WIDTH * ended / total) if total else BAR_WIDTH
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    failed = counts["dead"] + counts["cancelled"]
    return (f"[{bar}] {ended}/{total} finished, {counts['running']} running"
            + (f", {failed} failed" if failed else "") + f"  {elapsed:.0f}s")


def follow(queue: Queue, job_ids: Sequence[str], timeout: float | None = None,
           stream: TextIO = sys.stderr, interval: float = 0.25) -> list[JobStatus | None]:
    """Show progress until every job has finished (or timeout); returns the final statuses."""
    start = time.monotonic()
    tty = stream.isatty()
    statuses: list[JobStatus | None] = []
    last = ""
    while True:
        statuses = queue.get_jobs(job_ids)
        counts = Counter(s.state if s else "missing" for s in statuses)
        line = render(counts, len(job_ids), time.monotonic() - start)
        if tty:
            stream.write("\r" + line)
        elif line.split("  ")[0] != last:
            stream.write(line + "\n")
        last = line.split("  ")[0]
        stream.flush()
        if all(s is None or s.finished for s in statuses):
            break
        if timeout is not None and time.monotonic() - start > timeout:
            break
        time.sleep(interval)
    if tty:
        stream.write("\n")
    return statuses


def summarise(job_ids: Sequence[str], statuses: Sequence[JobStatus | None],
              describe: Any = None, stream: TextIO = sys.stdout) -> int:
    """Print done/failed lines; returns 0 when every job is done, else 1."""
    done = [s for s in statuses if s and s.state == "done"]
    failed = [(i, s) for i, s in zip(job_ids, statuses, strict=True) if not s or s.state != "done"]
    print(f"{len(done)} done, {len(failed)} not done", file=stream)
    for s in done:
        if describe:
            print(f"  {s.id}: {describe(s)}", file=stream)
    for job_id, s in failed:
        why = "record expired or missing" if s is None else f"{s.state}: {s.error or '-'}"
        print(f"  {job_id}: {why}", file=stream)
    return 0 if not failed else 1
