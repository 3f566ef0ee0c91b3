"""Reading a real forked worker's outcome frames, as the supervisor reads them: shared by
the worker protocol tests and the supervisor gap tests."""

from __future__ import annotations

import os
import select
import time

from dtq.supervisor.messages import FrameReader


def read_outcomes(fd: int, want: int, timeout: float = 10.0, raw: bytearray | None = None) -> list[dict]:
    """The next ``want`` frames from the worker's pipe ``fd``; fails after ``timeout`` s or
    when the worker closes its pipe first. ``raw`` collects the bytes read."""
    reader, got, deadline = FrameReader(), [], time.monotonic() + timeout
    while len(got) < want:
        left = deadline - time.monotonic()
        arrived = [m.get("id", m.get("t")) for m in got]
        assert left > 0, f"only {arrived} of {want} frames arrived in {timeout} s"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 1 << 16)
            assert chunk, f"the worker closed its pipe after {len(got)} of {want} frames"
            if raw is not None:
                raw += chunk
            got += reader.feed(chunk)
    return got
