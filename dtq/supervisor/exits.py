"""Turning a worker's wait status into the sentence an operator reads in `dtq status`."""

from __future__ import annotations

import os
import signal


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(wait_status: int) -> str:
    """'exit code 3', 'killed by SIGSEGV', 'killed by SIGKILL, not by dtq: out of memory?'."""
    if os.WIFEXITED(wait_status):
        return f"exit code {os.WEXITSTATUS(wait_status)}"
    if os.WIFSIGNALED(wait_status):
        signum = os.WTERMSIG(wait_status)
        if signum == signal.SIGKILL:
            return "killed by SIGKILL, not by dtq: out of memory?"
        return f"killed by {signal_name(signum)}"
    return f"ended with wait status {wait_status}"


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'; used in memory-limit reasons."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
