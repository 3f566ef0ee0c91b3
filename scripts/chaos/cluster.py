"""The processes under test: a private AOF redis-server and N supervisors, each in its own
process group, and the cleanup that ends every one of them (and anything they left)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "tests" / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from redis_server import RedisServer  # noqa: E402
from supervisor_proc import dtq_env  # noqa: E402


@dataclass
class Timings:
    """Supervisor timing flags; recovery is due within lease + lease/2 (+ slack)."""

    lease: float = 2.0
    poll: float = 0.1
    kill_grace: float = 0.5
    backoff: float = 0.05
    workers: int = 2

    def args(self) -> list[str]:
        return ["--lease", str(self.lease), "--poll", str(self.poll), "--kill-grace",
                str(self.kill_grace), "--backoff", str(self.backoff), "--workers", str(self.workers)]


@dataclass
class Sup:
    """One incarnation of a supervisor under a name; ``pid`` is also its process group."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    seen: dict[int, float] = field(default_factory=dict)  # pid -> create time

    @property
    def pid(self) -> int:
        return self.proc.pid

    def workers(self) -> list[int]:
        """Descendants (the forked workers); remembered for the leftover check."""
        try:
            kids = psutil.Process(self.pid).children(recursive=True)
            for k in kids:
                self.seen.setdefault(k.pid, k.create_time())
        except psutil.Error:
            return []
        return [k.pid for k in kids]


class Cluster:
    """Starts, kills, stops and restarts the processes; `cleanup` ends all of them."""

    def __init__(self, workdir: Path, timings: Timings) -> None:
        self.workdir = workdir
        self.timings = timings
        self.redis = RedisServer("--appendonly", "yes", "--appendfsync", "always")
        self.slots: list[Sup] = []
        self.retired: list[Sup] = []
        self.incarnations = 0

    @property
    def url(self) -> str:
        return self.redis.url

    def start_redis(self, timeout: float = 30.0) -> None:
        """Start, then wait until Redis answers PONG (not LOADING: the AOF is read)."""
        self.redis.start(timeout=timeout)
        client = self.redis.client(socket_timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
        finally:
            client.close()

    def restart_redis(self, crash: bool) -> None:
        """Stop (SIGKILL if ``crash``, else SIGTERM) and start on the same port and AOF dir."""
        self.redis.stop(kill=crash)
        self.start_redis()

    def spawn(self, name: str) -> Sup:
        self.incarnations += 1
        log = self.workdir / "logs" / f"{name}.{self.incarnations}.log"
        log.parent.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "dtq", "--redis-url", self.url, "supervise", "--no-entry-points",
               "--name", name, "--plugin", "testplugins:ChaosLedger", "--grace", "5",
               *self.timings.args()]
        env = {**dtq_env(), "DTQ_CHAOS_NAME": name}
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
                                    start_new_session=True)
        return Sup(name, proc, log)

    def start(self, names: list[str]) -> None:
        self.slots = [self.spawn(name) for name in names]

    def kill_supervisor(self, slot: int) -> Sup:
        """SIGKILL the supervisor's process group (its workers die by PDEATHSIG)."""
        sup = self.slots[slot]
        sup.workers()
        os.killpg(sup.pid, signal.SIGKILL)
        sup.proc.wait(10)
        self.retired.append(sup)
        return sup

    def replace(self, slot: int, name: str) -> Sup:
        self.slots[slot] = self.spawn(name)
        return self.slots[slot]

    def kill_worker(self, slot: int, pick) -> int | None:
        """SIGKILL one worker of the slot's supervisor, chosen by ``pick`` (None: no worker)."""
        workers = self.slots[slot].workers()
        if not workers:
            return None
        pid = pick(workers)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return None
        return pid

    def signal_group(self, slot: int, sig: int) -> None:
        os.killpg(self.slots[slot].pid, sig)

    def alive(self) -> list[Sup]:
        return [s for s in self.slots if s.proc.poll() is None]

    def stop_all(self, timeout: float = 15.0) -> dict[str, int | None]:
        """Graceful stop (SIGCONT, SIGTERM, wait); returns each supervisor's exit code."""
        for sup in self.slots:
            sup.workers()
            if sup.proc.poll() is None:
                os.killpg(sup.pid, signal.SIGCONT)
                os.killpg(sup.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for sup in self.slots:
            try:
                sup.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        return {s.name: s.proc.poll() for s in self.slots}

    def leftovers(self) -> list[int]:
        """Processes any supervisor started that still exist (zombies do not count)."""
        alive = []
        for sup in self.slots + self.retired:
            for pid, created in sup.seen.items():
                try:
                    proc = psutil.Process(pid)
                    if proc.create_time() == created and proc.status() != psutil.STATUS_ZOMBIE:
                        alive.append(pid)
                except psutil.Error:
                    continue
        return sorted(alive)

    def cleanup(self) -> list[int]:
        """Kill whatever is left, Redis last; returns the leftovers that had to be killed."""
        for sup in self.slots:
            if sup.proc.poll() is None:
                sup.workers()
                for sig in (signal.SIGCONT, signal.SIGKILL):
                    try:
                        os.killpg(sup.pid, sig)
                    except ProcessLookupError:
                        pass
                sup.proc.wait(10)
        left = self.leftovers()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.redis.cleanup()
        return left
