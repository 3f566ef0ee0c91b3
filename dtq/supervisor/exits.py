"""Turning a worker's wait status into the sentence an operator reads in `dtq status`."""

from __future__ import annotations

import os
import signal

EXIT_LOST_PIPE = 75  # a worker whose pipe to the supervisor was closed or broken
EXIT_START_FAILED = 70  # a worker that could not set itself up after the fork
_EXIT_MEANING = {EXIT_LOST_PIPE: "the worker lost its pipe to the supervisor",
                 EXIT_START_FAILED: "the worker failed to start"}
_SIGNAL_MEANING = {signal.SIGXFSZ: "file size limit exceeded", signal.SIGXCPU: "CPU time limit"}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(wait_status: int) -> str:
    """'exit code 3', 'killed by SIGSEGV', 'killed by SIGKILL, not by dtq: out of memory?'."""
    if os.WIFEXITED(wait_status):
        code = os.WEXITSTATUS(wait_status)
        meaning = _EXIT_MEANING.get(code)
        return f"exit code {code}" + (f" ({meaning})" if meaning else "")
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        if signum == signal.SIGKILL:
            return "killed by SIGKILL, not by dtq: out of memory?"
        meaning = _SIGNAL_MEANING.get(signum)
        return f"killed by {signal_name(signum)}" + (f" ({meaning})" if meaning else "")
    return f"ended with wait status {wait_status}"


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; used in memory-limit reasons."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
