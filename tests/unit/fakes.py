"""A fake OS layer: no real processes, an injected clock, real pipes the test can write into."""

from __future__ import annotations

import os
import signal

from dtq.supervisor.oslayer import OSLayer


class FakeOS(OSLayer):
    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = 1_700_000_000.0
        self.next_pid = 5000
        self.signals: list[tuple[int, int]] = []  # (pid or pgid, signal), from kill and killpg alike
        self.calls: list[tuple[str, int, int]] = []  # the same, saying which: ("killpg", pgid, sig)
        self.dead: list[tuple[int, int]] = []
        self.rss: dict[int, int] = {}
        self.child_ends: dict[int, tuple[int, int]] = {}  # pid -> (job pipe read end, result write end)
        self._pending_pipes: list[tuple[int, int]] = []
        self._keep: set[int] = set()

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.wall + (self.now - 1000.0)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def pipe(self) -> tuple[int, int]:
        pair = os.pipe()
        self._pending_pipes.append(pair)
        return pair

    def fork(self) -> int:
        (down_r, _), (_, up_w) = self._pending_pipes[-2:]
        self._pending_pipes.clear()
        pid = self.next_pid
        self.next_pid += 1
        self.child_ends[pid] = (down_r, up_w)
        self._keep |= {down_r, up_w}
        return pid

    def close(self, fd: int) -> None:
        if fd not in self._keep:
            super().close(fd)

    def killpg(self, pgid: int, sig: int) -> None:
        self.signals.append((pgid, sig))
        self.calls.append(("killpg", pgid, sig))

    def kill(self, pid: int, sig: int) -> None:
        self.signals.append((pid, sig))
        self.calls.append(("kill", pid, sig))

    def die(self, pid: int, status: int) -> None:
        """Make a worker 'exit': its result pipe closes and reap reports it."""
        super().close(self.child_ends[pid][1])
        self.dead.append((pid, status))

    def reap(self) -> list[tuple[int, int]]:
        out, self.dead = self.dead, []
        return out

    def tree_rss(self, pid: int) -> int:
        return self.rss.get(pid, 10 * 2**20)

    def cpu_seconds(self, pid: int) -> float:
        return 0.25

    def close_all(self) -> None:
        for fds in self.child_ends.values():
            for fd in fds:
                super().close(fd)


def signalled(status_signal: int) -> int:
    """A wait status for death by a signal."""
    return status_signal & 0x7F


def exited(code: int) -> int:
    return (code & 0xFF) << 8


SIGKILL, SIGTERM, SIGSEGV = signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV
