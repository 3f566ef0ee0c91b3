"""The operating-system calls the supervisor makes, behind one small replaceable object.

Unit tests swap in a fake (see tests/unit/fakes.py) to drive timeouts, memory
breaches and deaths with an injected clock and no real processes.
"""

from __future__ import annotations

import os
import signal
import time

from dtq.supervisor import limits


class OSLayer:
    """Real processes, real signals, real clocks."""

    def __init__(self) -> None:
        # CPU seconds of the children reaped by the last reap(): /proc forgets a reaped
        # process, so a dead worker's last attempt is charged from wait4's rusage.
        self._reaped_cpu: dict[int, float] = {}

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def fork(self) -> int:
        return os.fork()

    def pipe(self) -> tuple[int, int]:
        return os.pipe()

    def killpg(self, pgid: int, sig: int) -> None:
        """Signal a worker's whole process group (the worker and anything it started)."""
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            self.kill(pgid, sig)

    def kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def reap(self) -> list[tuple[int, int]]:
        """Every child that has ended: (pid, wait status); never blocks.

        Each one's process group is killed while it is still a zombie, so that
        grandchildren die with it and its pid cannot have been reused yet.
        """
        ended = []
        self._reaped_cpu.clear()
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if info is None or info.si_pid == 0:
                break
            self.killpg(info.si_pid, signal.SIGKILL)
            pid, status, usage = os.wait4(info.si_pid, 0)
            self._reaped_cpu[pid] = usage.ru_utime + usage.ru_stime
            ended.append((pid, status))
        return ended

    def tree_rss(self, pid: int) -> int:
        return limits.tree_rss(pid)

    def cpu_seconds(self, pid: int) -> float:
        """CPU seconds of a worker and the children it waited for, alive or just reaped."""
        if pid in self._reaped_cpu:
            return self._reaped_cpu[pid]
        return limits.cpu_seconds(pid)

    def close(self, fd: int) -> None:
        try:
            os.close(fd)
        except OSError:
            pass


SOFT_SIGNAL = signal.SIGTERM
HARD_SIGNAL = signal.SIGKILL
