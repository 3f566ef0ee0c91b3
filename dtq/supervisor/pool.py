"""The worker processes of one supervisor: forking, pipes, and what each one is doing.

Each worker is a persistent forked child in its own process group. The
supervisor writes job frames to it (buffered, never blocking the loop) and reads
outcome frames back. A worker holds at most ``capacity`` jobs: the running one
(the head) and, for very short jobs only, the next one already in its pipe.
"""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dtq.engine.base import ClaimedJob
from dtq.plugin import Plugin
from dtq.supervisor.forkserver import ForkServer, ForkServerError
from dtq.supervisor.messages import FrameReader, encode_job
from dtq.supervisor.oslayer import OSLayer
from dtq.supervisor.started import StartedCounter
from dtq.supervisor.worker import run_worker

log = logging.getLogger("dtq.supervisor")


class WorkerState(enum.Enum):
    IDLE = "idle"  # alive, no job
    BUSY = "busy"  # running its head job
    RETIRING = "retiring"  # told to exit (pipe closed) once its jobs are done
    KILLING = "killing"  # its process group was signalled; waiting to reap it
    DEAD = "dead"  # reaped


@dataclass
class Assignment:
    """One job sent to a worker; ``started`` is set when it becomes the worker's head."""

    job: ClaimedJob
    timeout: float | None
    memory_limit: int | None
    started: float | None = None  # monotonic
    started_wall: float = 0.0
    deadline: float | None = None
    peak_rss: int = 0
    breaches: int = 0
    seq: int = 0  # its number among the jobs sent to this worker (1 for the first)

    def start(self, now: float, wall: float) -> None:
        self.started, self.started_wall = now, wall
        self.deadline = now + self.timeout if self.timeout else None


@dataclass
class WorkerHandle:
    pid: int
    to_worker: int
    from_worker: int
    spawned_at: float
    max_jobs: int | None = None
    state: WorkerState = WorkerState.IDLE
    jobs: deque[Assignment] = field(default_factory=deque)
    reader: FrameReader = field(default_factory=FrameReader)
    outbuf: bytearray = field(default_factory=bytearray)
    jobs_done: int = 0
    cpu_mark: float = 0.0  # worker CPU seconds at the end of its last job
    soft_killed_at: float | None = None
    hard_kill_at: float | None = None
    killed_by_us: bool = False
    eof: bool = False
    started: StartedCounter | None = None  # jobs the worker has started (shared memory)
    shrink_marked: bool = False  # a shrink told it to leave after its jobs; a regrow may undo it
    limit_before_shrink: int | None = None  # its max_jobs before that
    sent: int = 0  # jobs sent to it
    idle_rss_base: int = 0  # its idle memory after its first job: growth is counted from it
    idle_checked_at: float = 0.0
    pinned_count: int | None = None  # its started count as read before a kill decision
    last_write: int = 0  # jobs in the last write to it: one alone has no hand-back timer

    def started_count(self) -> int | None:
        return self.started.value if self.started is not None else None

    @property
    def head(self) -> Assignment | None:
        return self.jobs[0] if self.jobs else None

    @property
    def alive(self) -> bool:
        return self.state in (WorkerState.IDLE, WorkerState.BUSY)

    @property
    def leaving(self) -> bool:
        """Busy with the last jobs it will take: it retires once they are done."""
        limit = self.max_jobs
        return bool(self.jobs) and limit is not None and self.jobs_done + len(self.jobs) >= limit


class SpawnFailed(Exception):
    """The system would not give a new worker a pipe or a process (EAGAIN, EMFILE, ENOMEM).

    Nothing was left open and the pool is unchanged: back off and fork again later."""

    def __init__(self, error: OSError) -> None:
        self.error = error
        super().__init__(f"could not start a worker: {error.strerror or error}")


def recycle_after(max_jobs: int | None, rng: random.Random) -> int | None:
    """A worker's job limit: ``max_jobs`` +-10 % (rounded), so that workers started
    together do not all recycle at once; never below 1, and None only when unlimited."""
    if not max_jobs or max_jobs < 1:
        return None
    jitter = (max_jobs + 5) // 10  # 1-4: exact, 5-14: +-1, 15-24: +-2, ...
    return max(1, max_jobs + rng.randint(-jitter, jitter))


def _nonblocking(fd: int) -> None:
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)


class Pool:
    """Spawns workers and moves bytes to and from them; decisions live in the supervisor."""

    def __init__(self, os_layer: OSLayer, plugins: Mapping[str, Plugin],
                 max_jobs_per_worker: int | None = None,
                 child_init: Callable[[], None] | None = None,
                 max_file_size: int | None = None) -> None:
        self.os = os_layer
        self.plugins = plugins
        self.max_jobs_per_worker = max_jobs_per_worker
        self.child_init = child_init
        self.max_file_size = max_file_size
        self.workers: dict[int, WorkerHandle] = {}
        self.supervisor_pid = os.getpid()
        self.rng = random.Random()
        self.fork_server: ForkServer | None = None  # set: workers come from it (see forkserver.py)

    def spawn(self) -> WorkerHandle:
        """Start one worker: forked here (the child never returns from here) or, with a
        fork server, forked by it and adopted by this process.

        Raises `SpawnFailed` (having closed every descriptor it opened) when the
        system refuses a pipe or a fork: a full process or file table is a reason
        to try again later, not to bring the supervisor down."""
        opened: list[int] = []
        counter: StartedCounter | None = None
        try:
            # an mmap: ENOMEM is refused like a fork
            counter = StartedCounter(passable=self.fork_server is not None)
            down_r, down_w = self.os.pipe()  # supervisor -> worker
            opened += (down_r, down_w)
            up_r, up_w = self.os.pipe()  # worker -> supervisor
            opened += (up_r, up_w)
            pid = self._fork(down_r, up_w, counter)
        except OSError as exc:
            for fd in opened:
                self.os.close(fd)
            if counter is not None:
                counter.close()
            raise SpawnFailed(exc) from exc
        if pid == 0:  # pragma: no cover - runs in the child
            self._child(down_r, up_w, counter)
        self.os.close(down_r)
        self.os.close(up_w)
        for fd in (down_w, up_r):
            _nonblocking(fd)
            os.set_inheritable(fd, False)
        max_jobs = recycle_after(self.max_jobs_per_worker, self.rng)
        handle = WorkerHandle(pid, down_w, up_r, self.os.monotonic(), max_jobs, started=counter)
        self.workers[pid] = handle
        return handle

    def _fork(self, down_r: int, up_w: int, counter: StartedCounter) -> int:
        """0 in a child forked here, else the new worker's pid (from the fork server, if any)."""
        if self.fork_server is not None:
            try:
                pid = self.fork_server.fork(down_r, up_w, counter.fd)
                counter.drop_fd()
                return pid
            except ForkServerError as exc:  # a pool that keeps serving beats a faster one
                log.warning("%s: forking workers from the supervisor from now on", exc)
                self.fork_server = None
        pid = self.os.fork()
        if pid:
            counter.drop_fd()
        return pid

    def _child(self, fd_in: int, fd_out: int, started: StartedCounter) -> None:  # pragma: no cover
        run_worker(fd_in, fd_out, self.plugins, self.supervisor_pid, started, self.max_file_size,
                   self.child_init)

    def send(self, worker: WorkerHandle, assignment: Assignment, batched: bool = False) -> None:
        """Queue a job for the worker; `flush` writes it (several jobs go in one write).
        ``batched``: sent as a short job that others may follow into the worker's pipe."""
        job = assignment.job
        worker.sent += 1
        assignment.seq = worker.sent
        worker.jobs.append(assignment)
        worker.state = WorkerState.BUSY
        worker.outbuf += encode_job(job.id, job.queue, job.attempt, job.plugin, job.data_json,
                                    assignment.timeout, assignment.memory_limit, batched)

    def flush(self, worker: WorkerHandle) -> None:
        """Write what the pipe takes now; the rest waits for the next writable select."""
        while worker.outbuf:
            try:
                written = os.write(worker.to_worker, worker.outbuf)
            except BlockingIOError:
                return
            except OSError:  # worker gone: reaping will tell why
                worker.outbuf.clear()
                return
            del worker.outbuf[:written]

    def read(self, worker: WorkerHandle) -> list[dict[str, Any]]:
        """Every complete frame the worker has written so far (raises FrameError on garbage)."""
        messages: list[dict[str, Any]] = []
        while not worker.eof:
            try:
                chunk = os.read(worker.from_worker, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                worker.eof = True
                break
            messages.extend(worker.reader.feed(chunk))
        return messages

    def retire(self, worker: WorkerHandle) -> None:
        """Ask a worker to exit after its current job: closing its pipe ends its loop."""
        worker.state = WorkerState.RETIRING
        self.os.close(worker.to_worker)
        worker.to_worker = -1

    def kill(self, worker: WorkerHandle, sig: int) -> None:
        worker.killed_by_us = True
        worker.state = WorkerState.KILLING
        self.os.killpg(worker.pid, sig)

    def forget(self, worker: WorkerHandle) -> None:
        """After reaping (which killed its process group): close its pipes."""
        worker.state = WorkerState.DEAD
        for fd in (worker.to_worker, worker.from_worker):
            if fd >= 0:
                self.os.close(fd)
        if worker.started is not None:
            worker.started.close()
        self.workers.pop(worker.pid, None)
