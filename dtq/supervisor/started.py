"""How many jobs a worker has started, in memory it shares with its supervisor.

A worker running a batch of short jobs sends their outcomes together, so the
supervisor's idea of the running job can lag by a job or two. When the worker
then dies or is killed, this count names the job that was really running: that
one is charged, and the earlier ones, finished but unreported, go back uncharged.
Reading it costs no system call and no wake-up, on either side.
"""

from __future__ import annotations

import mmap
import struct

_COUNT = struct.Struct("=Q")


class StartedCounter:
    """An 8-byte anonymous shared mapping, made before the fork and shared by both sides."""

    def __init__(self) -> None:
        self._map = mmap.mmap(-1, _COUNT.size)
        self._local = 0

    def increment(self) -> None:
        """Worker side: a job starts."""
        self._local += 1
        _COUNT.pack_into(self._map, 0, self._local)

    @property
    def value(self) -> int:
        """Supervisor side: jobs the worker has started since its fork."""
        return _COUNT.unpack_from(self._map, 0)[0]

    def close(self) -> None:
        self._map.close()
