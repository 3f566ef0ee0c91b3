"""Running the real `dtq supervise` in its own process group, and cleaning up after it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

SUPPORT = Path(__file__).resolve().parent
REPO = SUPPORT.parents[1]
FAST = ["--lease", "1", "--heartbeat", "0.2", "--poll", "0.1", "--kill-grace", "0.5",
        "--backoff", "0.05"]


def dtq_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("DTQ_REDIS_URL", None)
    return env


def running(proc: psutil.Process | int) -> bool:
    """Whether a process exists and is not a zombie; one that ends while we look at it
    (between listing and reading /proc) is not running."""
    try:
        return (proc if isinstance(proc, psutil.Process) else psutil.Process(proc)).status() \
            != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def is_fork_server(proc: psutil.Process) -> bool:
    """The supervisor's fork server (dtq/supervisor/forkserver.py), by its title or, before
    it has set one, its command line."""
    try:
        line = " ".join(proc.cmdline())
    except psutil.Error:
        return False
    return line.startswith("dtq fork server") or "dtq.supervisor.forkserver" in line


class SupervisorProcess:
    """One `python -m dtq supervise` process; remembers every process it saw below it."""

    def __init__(self, redis_url: str, *args: str, plugins: tuple[str, ...] = (),
                 fast: bool = True, entry_points: bool = False) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="dtq-sup-", suffix=".log", delete=False)
        cmd = [sys.executable, "-m", "dtq", "--redis-url", redis_url, "supervise",
               *([] if entry_points else ["--no-entry-points"]), *(FAST if fast else []), *args]
        for plugin in plugins:
            cmd += ["--plugin", f"testplugins:{plugin}"]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dtq_env(), cwd=REPO, start_new_session=True)
        self.seen: set[int] = set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def descendants(self) -> list[psutil.Process]:
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
        except psutil.Error:
            return []
        self.seen.update(k.pid for k in kids)
        return kids

    def _children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.pid).children(recursive=False)
        except psutil.Error:
            return []

    def worker_pids(self) -> list[int]:
        return [k.pid for k in self._children() if not is_fork_server(k)]

    def fork_server_pids(self) -> list[int]:
        return [k.pid for k in self._children() if is_fork_server(k)]

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.descendants()
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def alive_leftovers(self) -> list[int]:
        """Processes this supervisor started that still exist (zombies do not count)."""
        return [pid for pid in self.seen if running(pid)]

    def cleanup(self) -> None:
        self.descendants()
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(5)
        for pid in self.alive_leftovers():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0)
        self.log.close()
        os.unlink(self.log.name)
