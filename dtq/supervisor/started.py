"""How many jobs a worker has started, in memory it shares with its supervisor.

A worker running a batch of short jobs sends their outcomes together, so the
supervisor's idea of the running job can lag by a job or two. When the worker
then dies or is killed, this count names the job that was really running: that
one is charged, and the earlier ones, finished but unreported, go back uncharged.
Reading it costs no system call and no wake-up, on either side.
"""

from __future__ import annotations

import mmap
import os
import struct

_COUNT = struct.Struct("=Q")


class StartedCounter:
    """An 8-byte anonymous shared mapping, made before the fork and shared by both sides.

    With ``passable`` it lives in a memfd instead, whose descriptor (``fd``) can be sent
    to the fork server for a worker that the supervisor does not fork itself."""

    def __init__(self, passable: bool = False) -> None:
        self.fd = -1
        if passable:
            self.fd = os.memfd_create("dtq-started", os.MFD_CLOEXEC)
            try:
                os.ftruncate(self.fd, _COUNT.size)
                self._map = mmap.mmap(self.fd, _COUNT.size)
            except OSError:
                os.close(self.fd)
                raise
        else:
            self._map = mmap.mmap(-1, _COUNT.size)
        self._local = 0

    @classmethod
    def attach(cls, fd: int) -> StartedCounter:
        """Worker side of a passable counter: map the descriptor the supervisor sent."""
        counter = cls.__new__(cls)
        counter.fd, counter._map, counter._local = -1, mmap.mmap(fd, _COUNT.size), 0
        return counter

    def drop_fd(self) -> None:
        """The mapping stays; the descriptor is not needed once the worker has its own."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def increment(self) -> None:
        """Worker side: a job starts."""
        self._local += 1
        _COUNT.pack_into(self._map, 0, self._local)

    @property
    def value(self) -> int:
        """Supervisor side: jobs the worker has started since its fork."""
        return _COUNT.unpack_from(self._map, 0)[0]

    def close(self) -> None:
        self.drop_fd()
        self._map.close()
