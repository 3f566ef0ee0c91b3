"""Signals as a queue: handlers only record the signal and wake the loop's select.

No logging, no Redis and no raising inside a handler (gunicorn and rq lost data
or deadlocked doing that); the loop handles each signal as a normal step.
"""

from __future__ import annotations

import fcntl
import os
import signal
from collections import deque

HANDLED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGTTIN,
           signal.SIGTTOU)


class SignalQueue:
    """Installs recording handlers and a wake-up pipe for them."""

    def __init__(self) -> None:
        self.pending: deque[int] = deque()
        self.read_fd, self.write_fd = os.pipe()
        for fd in (self.read_fd, self.write_fd):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
            os.set_inheritable(fd, False)
        self._previous = {}
        signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, self._record)

    def _record(self, signum: int, frame: object) -> None:
        self.pending.append(signum)

    def pop_all(self) -> list[int]:
        """Signals received since the last call, in order; empties the wake-up pipe."""
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        out = []
        while self.pending:
            out.append(self.pending.popleft())
        return out

    def close(self) -> None:
        signal.set_wakeup_fd(-1)
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        os.close(self.read_fd)
        os.close(self.write_fd)
