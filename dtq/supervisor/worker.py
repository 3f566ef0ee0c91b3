"""The worker process: runs one job at a time for the supervisor that forked it.

It reads job messages from a pipe, calls the plugin, and writes back one
outcome message per job. It never talks to Redis: the supervisor decides every
state change. Timeouts and memory limits are enforced from outside (the
supervisor kills this process group); the kernel limit set here is a backup.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import os
import resource
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

from dtq.errors import PermanentJobError
from dtq.plugin import JobContext, Plugin
from dtq.supervisor.exits import EXIT_LOST_PIPE, EXIT_START_FAILED, format_bytes
from dtq.supervisor.messages import MAX_FRAME, FrameError, FrameReader, encode, encode_done
from dtq.supervisor.proctitle import set_title
from dtq.supervisor.started import StartedCounter

_MIB = 1024 * 1024
_PR_SET_PDEATHSIG = 1
HOLD_SECONDS = 0.002  # longest a batched job's outcome waits for its neighbours'
BACKLOG_SECONDS = 0.02  # a batched job running longer hands back the jobs queued behind it


class SoftStop(BaseException):
    """Raised in the plugin's code by the supervisor's soft signal (timeout, cancel)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SoftStop()


def prepare_child(keep_fds: tuple[int, ...], parent_pid: int, max_file_size: int | None = None,
                  drop_privileges: Callable[[], None] | None = None) -> None:
    """Right after fork: own process group, limits, fewer privileges, default signals,
    no inherited descriptors. Privileges drop before PR_SET_PDEATHSIG: a change of
    credentials clears it."""
    os.setpgrp()
    if max_file_size:
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))
    if drop_privileges is not None:
        drop_privileges()
    die_with_parent(parent_pid)
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGHUP, signal.SIGCHLD, signal.SIGTTIN, signal.SIGTTOU, signal.SIGQUIT,
                signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    close_inherited(keep_fds)


def close_inherited(keep_fds: tuple[int, ...]) -> None:
    """Close every descriptor above stderr except ``keep_fds`` (a worker, the fork server)."""
    low = 3
    for fd in sorted(keep_fds):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, _max_fd())


def run_worker(fd_in: int, fd_out: int, plugins: Mapping[str, Plugin], supervisor_pid: int,
               started: StartedCounter | int | None = None, max_file_size: int | None = None,
               drop_privileges: Callable[[], None] | None = None) -> NoReturn:
    """A new worker process's whole life, wherever it was forked (by the supervisor or by
    its fork server). ``started`` may be a counter's descriptor: it is mapped after the
    inherited descriptors are closed, and then closed itself."""
    code = EXIT_START_FAILED
    try:
        keep = (fd_in, fd_out) if not isinstance(started, int) else (fd_in, fd_out, started)
        prepare_child(keep, supervisor_pid, max_file_size, drop_privileges)
        set_title("dtq worker: idle")
        if isinstance(started, int):
            fd, started = started, StartedCounter.attach(started)
            os.close(fd)
        Worker(fd_in, fd_out, plugins, started).serve()
    except BaseException as exc:  # noqa: BLE001 - report why the child could not start
        os.write(2, f"dtq worker {os.getpid()} failed to start: {exc!r}\n".encode())
    finally:
        os._exit(code)


def die_with_parent(parent_pid: int) -> None:
    """Linux: SIGKILL this process (a worker, or the fork server) when its supervisor dies,
    so a recovered job never runs twice at once because an orphaned worker kept going."""
    set_up = prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) is not None
    if set_up and os.getppid() != parent_pid:  # the supervisor died before prctl took effect
        os._exit(EXIT_START_FAILED)


def prctl(option: int, value: int) -> int | None:
    """Linux prctl(2) through libc: its result, or None where libc has no prctl."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        return None


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if 0 < soft < 65536 else 65536


class Worker:
    """The loop of one worker process."""

    def __init__(self, fd_in: int, fd_out: int, plugins: Mapping[str, Plugin],
                 started: StartedCounter | None = None) -> None:
        self.fd_in, self.fd_out = fd_in, fd_out
        self.plugins = plugins
        self.reader = FrameReader()
        self.started = started
        self._backlog: deque[dict[str, Any]] = deque()
        self._held = bytearray()
        self._flushing = False
        self._alarm_set = False
        self._alarm_at = 0.0  # time.monotonic() when our timer fires, while it is set
        self._limited = False
        self._loggers: dict[str, logging.Logger] = {}
        self._held_since = 0.0
        self._job_t0: float | None = None  # perf_counter at the running batched job's start
        self._check_at = 0.0  # perf_counter when the timer next looks for jobs to hand back
        self._in_batch = False  # the last read brought several jobs: more may follow
        self._pipe_error: FrameError | None = None  # met while reading ahead in the timer
        self._report_at = 0  # backlog size at which held outcomes go out mid-batch
        # CPU time at the end of the last job, the start of the next one in the same batch:
        # one os.times() per batched job instead of two (it was a fifth of a no-op's cost).
        self._cpu_at_end: float | None = None

    def serve(self) -> NoReturn:
        """Run jobs until the pipe closes or a stop message comes; never returns."""
        code = 0
        # The hold timer takes SIGALRM only if no plugin did (at import, before the fork);
        # without it outcomes are never held. Python's default, no SA_RESTART: a job
        # blocked in a read or a sleep runs the handler at once, then resumes (PEP 475).
        if signal.getsignal(signal.SIGALRM) == signal.SIG_DFL:
            signal.signal(signal.SIGALRM, self._on_alarm)
        _peak_rss()  # the first job's peak starts here, not at the supervisor's
        try:
            while (message := self._next_message()) is not None and message.get("t") == "job":
                if self._run(message) == "exit":
                    break
        except SoftStop:
            code = 0
            self._flush_quietly()  # an external SIGTERM: the batch's earlier outcomes count
        except (OSError, FrameError):  # the pipe was closed, broken or fed garbage
            code = EXIT_LOST_PIPE
        finally:
            sys.stdout.flush()
        os._exit(code)

    def _next_message(self) -> dict[str, Any] | None:
        """The next frame; several may arrive in one read when jobs are batched."""
        if self._pipe_error is not None:
            raise self._pipe_error
        while not self._backlog:
            self._cpu_at_end = None  # the next job's start is measured after this wait
            chunk = os.read(self.fd_in, 1 << 16)
            if not chunk:
                return None
            self._backlog.extend(self.reader.feed(chunk))
            self._report_at = len(self._backlog) // 2
            self._in_batch = len(self._backlog) > 1 or self.reader.pending > 0
        return self._backlog.popleft()

    def _send(self, message: dict[str, Any], *, hold: bool = False) -> None:
        self._write(encode(message), hold)

    def _write(self, frame: bytes, hold: bool = False) -> None:
        """Write a frame; with ``hold``, outcomes of batched short jobs wait to go
        out together (one wake-up of the supervisor per batch). A timer sends them
        within ``HOLD_SECONDS`` whatever the next job does: a job that runs long, hangs
        or crashes after them must not delay or take its neighbours' results along (in C
        code that holds the GIL the timer waits for it; the shared started count then
        still tells the supervisor which job was running)."""
        if not self._held:
            self._held_since = time.monotonic()
        self._held += frame
        due = self._held_since + HOLD_SECONDS
        if hold and len(self._held) < 65536 and (left := due - time.monotonic()) > 0:
            if (self._alarm_set and self._alarm_at <= due) or self._arm_timer(left, due):
                return
        self._flush()

    def _arm_timer(self, seconds: float, due: float | None = None) -> bool:
        """Start the timer, unless a plugin has taken SIGALRM or set an alarm of its own
        (then nothing is held and no backlog handed back: the plugin's timer is left alone)."""
        if signal.getsignal(signal.SIGALRM) != self._on_alarm:
            return False
        if not self._alarm_set and signal.getitimer(signal.ITIMER_REAL)[0]:
            return False
        seconds = max(seconds, 1e-4)  # 0 would disarm it
        # ``due`` (time.monotonic()) when known, so that later outcomes of the same wait
        # see the timer is already early enough and make no system call
        self._alarm_set, self._alarm_at = True, time.monotonic() + seconds if due is None else due
        signal.setitimer(signal.ITIMER_REAL, seconds)
        return True

    def _flush(self) -> None:
        if self._flushing:  # the timer fired inside a write: that write sends everything
            return
        self._flushing = True
        try:
            while self._held:
                written = os.write(self.fd_out, self._held)
                del self._held[:written]
        finally:
            self._flushing = False
        if self._alarm_set and signal.getsignal(signal.SIGALRM) != self._on_alarm:
            self._alarm_set = False  # a plugin's alarm runs: leave it alone
        elif self._alarm_set and self._job_t0 is not None:
            # nothing is held now; the timer stays to watch the batched job that runs
            self._arm_timer(self._check_at - time.perf_counter())
        elif self._alarm_set:
            # the timer off, then the flag: a signal handled in between finds both off
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._alarm_set = False
        if self._held:  # the timer added a frame after the loop above: it goes too
            self._flush()

    def _on_alarm(self, signum: int, frame: Any) -> None:
        """The timer, run between two bytecodes of whatever job is running: it sends held
        outcomes, and once the running job has run ``BACKLOG_SECONDS`` it hands back the
        jobs queued behind it."""
        self._alarm_set = False
        self._flush_quietly()
        if self._job_t0 is None:
            return
        now = time.perf_counter()
        if now >= self._check_at:
            self._hand_back_backlog()
            # jobs the supervisor sends later go back too, looked for less and less often
            # (a long job gets a handful of these signals, not one every few milliseconds)
            self._check_at = now + 4 * (now - self._job_t0)
        self._arm_timer(self._check_at - now)

    def _hand_back_backlog(self) -> None:
        """The running job, batched as short, turned out long: the jobs behind it, in memory
        and already in the pipe, go back unstarted (a "back" frame), so that the supervisor
        returns them to the queue for idle workers instead of letting them wait. Runs in
        the timer, so it never raises into the plugin's code."""
        try:
            os.set_blocking(self.fd_in, False)
            try:
                while chunk := os.read(self.fd_in, 1 << 16):
                    self._backlog.extend(self.reader.feed(chunk))
            finally:
                os.set_blocking(self.fd_in, True)
        except (BlockingIOError, InterruptedError):
            pass
        except FrameError as exc:  # reported by the next read of the loop, not in the job
            self._pipe_error = exc
        except OSError:
            pass
        jobs = [[m.get("id"), m.get("a")] for m in self._backlog if m.get("t") == "job"]
        others = [m for m in self._backlog if m.get("t") != "job"]  # a stop keeps its turn
        self._backlog.clear()
        self._backlog.extend(others)
        self._report_at = 0
        if jobs:
            self._held += encode({"t": "back", "jobs": jobs})
            self._flush_quietly()

    def _flush_quietly(self) -> None:
        """Flush, leaving a broken pipe for the next ordinary write to report (never
        raise inside a plugin's code)."""
        try:
            self._flush()
        except OSError:
            pass

    def _run(self, msg: dict[str, Any]) -> str:
        """Run one job and report it; returns 'exit' when this worker should not go on."""
        job_id, attempt = msg["id"], msg["a"]
        if self.started is not None:
            self.started.increment()
        timeout = msg.get("timeout")
        ctx = JobContext(job_id=job_id, attempt=attempt, queue=msg.get("q", "default"),
                         deadline=time.time() + timeout if timeout else None,
                         logger=self._logger(msg["p"]),
                         report=lambda f, m: self._send({"t": "progress", "id": job_id, "f": f, "m": m}))
        set_title(f"dtq worker: {msg['p']} {job_id}")
        limit = msg.get("mem")
        if limit or self._limited:
            self._limit_data(limit)
        started, t0 = time.time(), time.perf_counter()
        c0 = _cpu() if self._cpu_at_end is None else self._cpu_at_end
        outcome: dict[str, Any] = {"id": job_id, "a": attempt}
        verdict = "go on"
        # Sent short among others: if it runs long, the timer hands back the jobs behind it.
        # A short job that came alone has nothing behind it, and gets no timer: arming one
        # costs more system calls than a no-op job takes.
        if msg.get("b") and (self._backlog or self._in_batch):
            self._job_t0, self._check_at = t0, t0 + BACKLOG_SECONDS
            if not self._alarm_set:
                self._arm_timer(BACKLOG_SECONDS)
        try:
            result_json = self._result_json(self._call(msg, ctx))
            outcome["t"] = "ok"
        except PermanentJobError as exc:
            outcome.update(t="err", perm=True, e=str(exc) or type(exc).__name__)
        except MemoryError:
            limit = msg.get("mem")
            outcome.update(t="err", e="memory limit exceeded: allocation refused"
                           + (f" (limit {limit // _MIB} MiB)" if limit else " (MemoryError)"))
            verdict = "exit"
        except SoftStop:
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin may raise anything, even SystemExit
            outcome.update(t="err", e=_describe(exc))
        finally:
            self._job_t0 = None
            if self._limited:
                self._limit_data(None)
        wall = time.perf_counter() - t0
        self._cpu_at_end = _cpu()
        cpu, rss = self._cpu_at_end - c0, _peak_rss() if wall > 0.005 else 0
        # Outcomes of a batch go out twice: at its half, so that the supervisor sends the
        # next batch while this one still runs (the worker never waits for it), and at its end.
        hold = len(self._backlog) > 0 and verdict != "exit"
        if hold and len(self._backlog) <= self._report_at:
            hold, self._report_at = False, 0
        if outcome.get("t") == "ok":
            self._write(encode_done(job_id, attempt, result_json, started, time.time(), wall, cpu,
                                    rss), hold)
        else:
            outcome.update(wall=wall, cpu=cpu, rss=rss)
            self._send(outcome, hold=hold)
        if not self._backlog:
            set_title("dtq worker: idle")
        return verdict

    def _logger(self, plugin: str) -> logging.Logger:
        logger = self._loggers.get(plugin)
        if logger is None:
            logger = self._loggers[plugin] = logging.getLogger(f"dtq.plugin.{plugin}")
        return logger

    def _call(self, msg: dict[str, Any], ctx: JobContext) -> Any:
        plugin = self.plugins.get(msg["p"])
        if plugin is None:
            known = ", ".join(sorted(self.plugins)) or "none"
            raise PermanentJobError(f"unknown plugin {msg['p']!r} (this supervisor runs: {known})")
        return plugin.process(msg.get("d"), ctx)

    @staticmethod
    def _result_json(result: Any) -> str:
        try:
            text = _RESULT_ENCODER.encode(result)
        except (TypeError, ValueError) as exc:
            raise PermanentJobError(f"plugin returned a result that is not JSON: {exc}") from None
        except RecursionError:  # nested deeper than the encoder goes: as unfit, for good
            raise PermanentJobError("plugin returned a result that is not JSON: nested too deeply") from None
        if len(text) > MAX_FRAME // 2:
            raise PermanentJobError(f"plugin returned a result of {len(text)} bytes "
                                    f"(limit {MAX_FRAME // 2})")
        return text

    def _limit_data(self, limit: int | None) -> None:
        """Kernel backup for the memory limit: cap the heap a little above the job's limit."""
        try:
            _, hard = resource.getrlimit(resource.RLIMIT_DATA)
            if limit is None:
                resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))
                self._limited = False
                return
            self._limited = True
            base = _vm_data()
            soft = base + int(limit * 1.25) + 64 * _MIB
            if hard == resource.RLIM_INFINITY or soft < hard:
                resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
        except (ValueError, OSError):
            pass


_RESULT_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _describe(exc: BaseException) -> str:
    tail = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {tail[0].filename}:{tail[0].lineno})" if tail else ""
    if isinstance(exc, SystemExit):
        return f"plugin called sys.exit({exc.code!r})"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        return f"file size limit exceeded (max {format_bytes(limit)}): {exc}{where}"[:2000]
    return f"{type(exc).__name__}: {exc}{where}"[:2000]


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


_CLEAR_REFS = "/proc/self/clear_refs"
_peak_resets = True  # False once the kernel refused a reset (a worker run as another user)


def _peak_rss() -> int:
    """The worker's peak resident memory since the last call, and a fresh start for the
    next (the kernel's high-water mark VmHWM, reset by writing 5 to clear_refs, Linux
    4.0+): memory a job took and freed before it returned still counts. Only jobs over
    5 ms pay the two /proc calls; the peak of those in between counts towards the next
    one measured. Where the reset is refused (after --user, /proc/self belongs to root)
    the mark would be the worker's whole life's: then the resident size now, as a lower
    bound. 0 where /proc cannot tell."""
    global _peak_resets
    fields: dict[bytes, int] = {}
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith((b"VmHWM:", b"VmRSS:")):
                    fields[line[:5]] = int(line.split()[1]) * 1024
        if _peak_resets:
            with open(_CLEAR_REFS, "wb") as f:
                f.write(b"5")
    except PermissionError:
        _peak_resets = False
    except (OSError, ValueError, IndexError):
        pass
    return fields.get(b"VmHWM" if _peak_resets else b"VmRSS", 0)


def _vm_data() -> int:
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0
