"""A real worker in a forked child, fed and read through pipes as the supervisor feeds and
reads one: shared by the worker protocol tests and the supervisor gap tests."""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Iterable

from dtq.cli.logs import setup_logging
from dtq.plugin import Plugin
from dtq.supervisor.messages import FrameReader, encode_job
from dtq.supervisor.started import StartedCounter
from dtq.supervisor.worker import Worker, prepare_child


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


def reap(pid: int, timeout: float = 10.0) -> int:
    """Wait for the child at most ``timeout`` s (then kill it); its exit code."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"child {pid} did not exit within {timeout} s")


class ForkedWorker:
    """Worker.serve() in a forked child prepared as Pool._child prepares one: its own
    process group, only its pipes, the standard streams and ``keep_fds`` left open, and a
    started counter shared with the test. Its stderr is a pipe that finish() reads.

    SIGALRM is left as the supervisor leaves it (pytest-timeout's timer is stopped) unless
    ``child_setup``, run after the preparation, takes it as a plugin may at import. With
    ``log_format`` logging is set up as `dtq supervise` sets it up before forking."""

    def __init__(self, plugins: dict[str, Plugin], *, log_format: str | None = None,
                 child_setup: Callable[[], None] | None = None, keep_fds: Iterable[int] = ()) -> None:
        self.down_r, self.down_w = os.pipe()
        self.up_r, self.up_w = os.pipe()
        self.err_r, self.err_w = os.pipe()
        self.counter = StartedCounter()
        parent = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the worker
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, signal.SIG_DFL)
                os.dup2(self.err_w, 2)
                sys.stderr = open(2, "w", buffering=1, closefd=False)
                if log_format:
                    setup_logging("info", log_format)
                prepare_child((self.down_r, self.up_w, *keep_fds), parent)
                if child_setup:
                    child_setup()
                Worker(self.down_r, self.up_w, plugins, self.counter).serve()
            finally:
                os._exit(70)
        for fd in (self.down_r, self.up_w, self.err_w):
            os.close(fd)
        self.raw = bytearray()

    def send(self, frames: bytes) -> None:
        os.write(self.down_w, frames)

    def send_jobs(self, plugins: list[str], first: int = 0, batched: bool = True) -> None:
        """Jobs j<first>, j<first + 1>, ... with empty data in one write, as the supervisor
        sends a batch of short jobs (``batched``), or one job that is not short."""
        self.send(b"".join(encode_job(f"j{i}", "q", 1, p, "{}", None, None, batched)
                           for i, p in enumerate(plugins, first)))

    def run(self, *jobs: tuple[str, object], timeout: float = 10.0) -> list[dict]:
        """Send jobs (plugin, data) as j0, j1, ..., each after the outcome of the one before
        (as the supervisor sends jobs that are not short: one at a time), and return those."""
        got = []
        for i, (plugin, data) in enumerate(jobs):
            self.send(encode_job(f"j{i}", "q", 1, plugin, json.dumps(data), None, None))
            got += self.outcomes(1, timeout)
        return got

    def outcomes(self, want: int, timeout: float = 10.0) -> list[dict]:
        return read_outcomes(self.up_r, want, timeout, raw=self.raw)

    def finish(self) -> tuple[int, str]:
        """Close its job pipe (it exits between jobs); its exit code and all it wrote to stderr."""
        os.close(self.down_w)
        self.down_w = -1
        pid, self.pid = self.pid, 0
        code = reap(pid)
        err = bytearray()
        while select.select([self.err_r], [], [], 5)[0] and (chunk := os.read(self.err_r, 1 << 16)):
            err += chunk
        return code, err.decode(errors="replace")

    def close(self) -> None:
        if self.pid:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        for fd in (self.down_w, self.up_r, self.err_r):
            if fd >= 0:
                os.close(fd)
        self.counter.close()
