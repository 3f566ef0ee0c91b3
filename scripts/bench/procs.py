"""Subprocesses in their own process group, always torn down: TERM, wait, KILL.

Used by the orchestrator (stdlib only) and by the drivers (which also have
psutil, used to catch descendants that left the group, such as rq's work
horses or dtq's workers, which call setsid/setpgrp).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

try:
    import psutil
except ImportError:  # the orchestrator may run on a bare interpreter
    psutil = None


def _ledger() -> Path | None:
    """File where started/stopped groups are recorded for the orchestrator's sweep."""
    name = os.environ.get("BENCH_PGID_FILE")
    return Path(name) if name else None


def _record(line: str) -> None:
    ledger = _ledger()
    if ledger is not None:
        with ledger.open("a") as fh:
            fh.write(line + "\n")


def _descendants(pid: int) -> list:
    if psutil is None:
        return []
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Group:
    """A command run as the leader of a new session; stop() kills all of it."""

    def __init__(self, argv: list[str], log: Path, cwd: Path, env: dict | None = None):
        self.argv = argv
        self.log = log
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.pid = self.proc.pid
        _record(f"+{self.pid}")

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of the group's output, for error messages."""
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self, grace: float = 10.0) -> int | None:
        """TERM the group, wait up to grace, then KILL the group and strays."""
        strays = _descendants(self.pid)
        if self.proc.poll() is None:
            _signal_group(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        _signal_group(self.pid, signal.SIGKILL)
        for proc in strays:
            try:
                proc.kill()
            except psutil.Error:
                pass
        self.proc.wait()
        _record(f"-{self.pid}")
        return self.proc.returncode


def sweep(ledger: Path) -> list[int]:
    """KILL every group recorded as started but never stopped; returns them."""
    if not ledger.exists():
        return []
    live: set[int] = set()
    for line in ledger.read_text().split():
        pid = int(line[1:])
        (live.add if line[0] == "+" else live.discard)(pid)
    for pgid in live:
        _signal_group(pgid, signal.SIGKILL)
    return sorted(live)

