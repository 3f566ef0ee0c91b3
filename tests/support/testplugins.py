"""Plugins that misbehave on purpose, for the process tests (loaded with --plugin testplugins:X)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from typing import Any

from dtq.errors import PermanentJobError
from dtq.plugin import JobContext, Plugin


class Noop(Plugin):
    name = "noop"

    def process(self, data: Any, ctx: JobContext) -> Any:
        return {"echo": data, "pid": os.getpid(), "attempt": ctx.attempt}


class Sleep(Plugin):
    """Sleeps in C (time.sleep) for data['seconds']."""

    name = "sleep"

    def process(self, data: Any, ctx: JobContext) -> Any:
        time.sleep(float(data.get("seconds", 1)))
        return {"slept": data.get("seconds", 1), "pid": os.getpid()}


class Spin(Plugin):
    """Spins in pure Python for data['seconds']."""

    name = "spin"

    def process(self, data: Any, ctx: JobContext) -> Any:
        end = time.time() + float(data.get("seconds", 1))
        n = 0
        while time.time() < end:
            n += 1
        return {"loops": n}


class BlockInC(Plugin):
    """Blocks inside a C call that no Python signal handler can interrupt."""

    name = "block_in_c"

    def process(self, data: Any, ctx: JobContext) -> Any:
        libc = ctypes.CDLL(None)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        libc.sleep(int(data.get("seconds", 1000)))
        return "woke up"


class IgnoreTerm(Plugin):
    """Ignores SIGTERM and keeps sleeping."""

    name = "ignore_term"

    def process(self, data: Any, ctx: JobContext) -> Any:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(float(data.get("seconds", 1000)))
        return "done"


class Segfault(Plugin):
    """Reads address 0, after spinning data['spin'] seconds of CPU (default none)."""

    name = "segfault"

    def process(self, data: Any, ctx: JobContext) -> Any:
        end = time.process_time() + float((data or {}).get("spin", 0))
        while time.process_time() < end:
            pass
        ctypes.string_at(0)
        return "unreachable"


class Exit(Plugin):
    """os._exit with data['code'] unless data['after_attempt'] says the job may pass."""

    name = "exit"

    def process(self, data: Any, ctx: JobContext) -> Any:
        if ctx.attempt <= int(data.get("fail_attempts", 1000)):
            os._exit(int(data.get("code", 3)))
        return {"attempt": ctx.attempt}


class EatMemory(Plugin):
    """Allocates data['mib'] MiB in steps (touching every page), then holds it."""

    name = "eat_memory"

    def process(self, data: Any, ctx: JobContext) -> Any:
        hold = []
        for _ in range(int(data.get("mib", 100000))):
            hold.append(bytearray(1024 * 1024))
            time.sleep(float(data.get("step", 0.001)))
        time.sleep(float(data.get("hold", 0)))
        return {"held_mib": len(hold)}


class Raise(Plugin):
    name = "raise"

    def process(self, data: Any, ctx: JobContext) -> Any:
        if data.get("permanent"):
            raise PermanentJobError(data.get("message", "bad input"))
        raise RuntimeError(data.get("message", "boom"))


class Grandchildren(Plugin):
    """Starts child processes that would outlive the job, then sleeps."""

    name = "grandchildren"

    def process(self, data: Any, ctx: JobContext) -> Any:
        pids = []
        for _ in range(int(data.get("children", 2))):
            proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1000)"])
            pids.append(proc.pid)
        if data.get("pidfile"):
            with open(data["pidfile"], "w") as f:
                f.write(" ".join(map(str, pids)))
        time.sleep(float(data.get("seconds", 1000)))
        return {"children": pids}


class Progress(Plugin):
    name = "progress"

    def process(self, data: Any, ctx: JobContext) -> Any:
        steps = int(data.get("steps", 5))
        for i in range(steps):
            ctx.progress((i + 1) / steps, f"step {i + 1} of {steps}")
            time.sleep(float(data.get("step", 0.1)))
        return "ok"


class Ledger(Plugin):
    """Appends 'job attempt pid' to data['ledger'] and returns; for loss checks."""

    name = "ledger"

    def process(self, data: Any, ctx: JobContext) -> Any:
        time.sleep(float(data.get("seconds", 0)))
        with open(data["ledger"], "a") as f:
            f.write(f"{ctx.job_id} {ctx.attempt} {os.getpid()}\n")
        return {"n": data.get("n")}


class ExitAfterResult(Plugin):
    """Returns its result, then the worker dies a moment later (after the result is sent)."""

    name = "exit_after_result"

    def process(self, data: Any, ctx: JobContext) -> Any:
        import threading

        threading.Timer(float(data.get("after", 0.05)), os._exit, (5,)).start()
        return {"attempt": ctx.attempt}


class Context(Plugin):
    """Returns what the plugin sees of its context."""

    name = "context"

    def process(self, data: Any, ctx: JobContext) -> Any:
        return {"job_id": ctx.job_id, "attempt": ctx.attempt, "queue": ctx.queue,
                "time_left": ctx.time_left()}


_LEAKED: list[bytearray] = []


class Leak(Plugin):
    """Keeps data['mib'] MiB alive after the job, like a cache that never shrinks."""

    name = "leak"

    def process(self, data: Any, ctx: JobContext) -> Any:
        _LEAKED.extend(bytearray(1024 * 1024) for _ in range(int(data.get("mib", 10))))
        return {"pid": os.getpid()}


class ChaosLedger(Plugin):
    """Works 0-data['max_ms'] ms (20), then appends 'job attempt pid supervisor start end'
    to data['ledger'] in one O_APPEND write; data['fail'] raises PermanentJobError instead.
    The supervisor's name comes from $DTQ_CHAOS_NAME (scripts/chaos.py sets it)."""

    name = "chaos_ledger"

    def process(self, data: Any, ctx: JobContext) -> Any:
        import random

        start = time.time()
        if data.get("fail"):
            raise PermanentJobError(str(data["fail"]))
        time.sleep(random.Random(f"{ctx.job_id}:{ctx.attempt}").uniform(0, data.get("max_ms", 20)) / 1000)
        end = time.time()
        supervisor = os.environ.get("DTQ_CHAOS_NAME", "-")
        line = f"{ctx.job_id} {ctx.attempt} {os.getpid()} {supervisor} {start:.6f} {end:.6f}\n"
        fd = os.open(data["ledger"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return {"attempt": ctx.attempt, "pid": os.getpid(), "supervisor": supervisor}


class ForkBomb(Plugin):
    """Forks data['children'] processes that fork again once, then sleeps (bounded bomb)."""

    name = "fork_bomb"

    def process(self, data: Any, ctx: JobContext) -> Any:
        for _ in range(int(data.get("children", 100))):
            try:
                if os.fork() == 0:
                    if os.fork() == 0:
                        time.sleep(1000)
                    time.sleep(1000)
                    os._exit(0)
            except OSError:
                break
        time.sleep(1000)
        return "unreachable"


class FillDisk(Plugin):
    """Writes data['mib'] MiB into a file under data['dir']."""

    name = "fill_disk"

    def process(self, data: Any, ctx: JobContext) -> Any:
        path = os.path.join(data["dir"], f"fill-{ctx.job_id}")
        block = b"x" * (1024 * 1024)
        with open(path, "wb") as f:
            for _ in range(int(data.get("mib", 100))):
                f.write(block)
        return {"written": data.get("mib", 100)}


class ClosePipes(Plugin):
    """Closes every inherited descriptor above stderr, pipes to the supervisor included."""

    name = "close_pipes"

    def process(self, data: Any, ctx: JobContext) -> Any:
        os.closerange(3, 1024)
        return "closed"


class Garbage(Plugin):
    """Writes junk into every pipe it can write to (its result pipe among them)."""

    name = "garbage"

    def process(self, data: Any, ctx: JobContext) -> Any:
        for fd in range(3, 64):
            try:
                os.write(fd, b"\xff\xfe not a frame \x00" * 64)
            except OSError:
                continue
        time.sleep(float(data.get("seconds", 5)))
        return "wrote garbage"


class Chatty(Plugin):
    """Prints data['mib'] MiB to stdout."""

    name = "chatty"

    def process(self, data: Any, ctx: JobContext) -> Any:
        line = "x" * 1023 + "\n"
        for _ in range(int(data.get("mib", 10)) * 1024):
            sys.stdout.write(line)
        sys.stdout.flush()
        return {"printed_mib": data.get("mib", 10)}


class OwnHandlers(Plugin):
    """Installs handlers that swallow SIGTERM, SIGINT and SIGHUP, then keeps working."""

    name = "own_handlers"

    def process(self, data: Any, ctx: JobContext) -> Any:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)
        end = time.time() + float(data.get("seconds", 1000))
        while time.time() < end:
            time.sleep(0.05)
        return "survived"


class WhoAmI(Plugin):
    name = "whoami"

    def process(self, data: Any, ctx: JobContext) -> Any:
        return {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups()}


class Started(Plugin):
    """Returns the wall-clock time at which the job started (for latency checks)."""

    name = "started"

    def process(self, data: Any, ctx: JobContext) -> Any:
        return time.time()


_CHILD_EATS = """
import sys, time
hold = []
try:
    for _ in range(int(sys.argv[1])):
        hold.append(bytearray(1024 * 1024))
        time.sleep(float(sys.argv[2]))
except MemoryError:  # refused by the inherited RLIMIT_DATA: hold on, only a kill ends this
    pass
time.sleep(1000)
"""


class ChildEatsMemory(Plugin):
    """Starts one child (data['how']: 'subprocess' or 'fork') that allocates data['mib'] MiB
    in steps of data['step'] s and holds it (also when an allocation is refused: only a
    kill ends it), while the worker only waits for the child.
    Writes 'worker_pid child_pid' to data['pidfile'] (atomically) once the child exists."""

    name = "child_eats_memory"

    def process(self, data: Any, ctx: JobContext) -> Any:
        mib, step = int(data.get("mib", 2000)), float(data.get("step", 0.003))
        if data.get("how", "subprocess") == "fork":
            pid = os.fork()
            if pid == 0:  # the child: allocate, never return into the worker's loop
                try:
                    hold = []
                    try:
                        for _ in range(mib):
                            hold.append(bytearray(1024 * 1024))
                            time.sleep(step)
                    except MemoryError:  # as in _CHILD_EATS: only a kill ends the child
                        pass
                    time.sleep(1000)
                finally:
                    os._exit(0)
            wait = lambda: os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])  # noqa: E731
        else:
            proc = subprocess.Popen([sys.executable, "-c", _CHILD_EATS, str(mib), str(step)])
            pid, wait = proc.pid, proc.wait
        if data.get("pidfile"):
            tmp = data["pidfile"] + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{os.getpid()} {pid}")
            os.replace(tmp, data["pidfile"])
        return {"child_exit": wait()}
