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
    name = "segfault"

    def process(self, data: Any, ctx: JobContext) -> Any:
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
