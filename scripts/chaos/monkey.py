"""The chaos monkey: one action at a time, at random intervals, each recorded with its window.

Kinds come in shuffled rounds (every kind once per round), so a short run still gets
each kind a few times. Actions never overlap: a duplicate is then explained by one window.
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from scripts.chaos.cluster import Cluster
from scripts.chaos.events import KINDS, EventLog


@dataclass
class Pace:
    """Gaps between actions, and how long a SIGSTOP lasts (as a multiple of the lease)."""

    min_gap: float = 0.3
    max_gap: float = 1.5
    stop_min: float = 1.3
    stop_max: float = 2.0
    restart_delay: float = 0.3  # at most, before a killed supervisor is started again


class Monkey:
    """Runs actions against a cluster until ``finished()`` or the deadline."""

    def __init__(self, cluster: Cluster, log: EventLog, rng: random.Random, pace: Pace) -> None:
        self.cluster = cluster
        self.log = log
        self.rng = rng
        self.pace = pace
        self.round: list[str] = []
        self.kills = 0  # supervisor kills so far: odd ones restart under a new name
        self.renamed = 0

    def run(self, finished: Callable[[], bool], deadline: float) -> None:
        while time.monotonic() < deadline and not finished():
            if not self.pause(self.rng.uniform(self.pace.min_gap, self.pace.max_gap), finished):
                return
            self.act(self.next_kind())

    def pause(self, seconds: float, finished: Callable[[], bool]) -> bool:
        """Sleep in slices; False as soon as the jobs are finished."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if finished():
                return False
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))
        return True

    def next_kind(self) -> str:
        if not self.round:
            self.round = list(KINDS)
            self.rng.shuffle(self.round)
        return self.round.pop()

    def act(self, kind: str) -> None:
        getattr(self, kind)()

    def slot(self) -> int:
        return self.rng.randrange(len(self.cluster.slots))

    def worker_kill(self) -> None:
        slot = self.slot()
        name = self.cluster.slots[slot].name
        t0 = time.time()
        pid = self.cluster.kill_worker(slot, self.rng.choice)
        self.log.add("worker_kill", name, t0, pid=pid)

    def supervisor_kill(self) -> None:
        slot = self.slot()
        t0 = time.time()
        sup = self.cluster.kill_supervisor(slot)
        self.kills += 1
        same = self.kills % 2 == 1
        name = sup.name if same else self.new_name(sup.name)
        time.sleep(self.rng.uniform(0, self.pace.restart_delay))
        new = self.cluster.replace(slot, name)
        self.log.add("supervisor_kill", sup.name, t0, time.time(), pid=sup.pid,
                     restarted_as=name, same_name=same, new_pid=new.pid)

    def new_name(self, old: str) -> str:
        self.renamed += 1
        return f"{old.split('~')[0]}~{self.renamed}"

    def stop(self) -> None:
        slot = self.slot()
        sup = self.cluster.slots[slot]
        seconds = self.cluster.timings.lease * self.rng.uniform(self.pace.stop_min, self.pace.stop_max)
        t0 = time.time()
        self.cluster.signal_group(slot, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            self.cluster.signal_group(slot, signal.SIGCONT)
        self.log.add("stop", sup.name, t0, time.time(), pid=sup.pid)

    def redis_restart(self) -> None:
        crash = self.rng.random() < 0.5
        t0 = time.time()
        self.cluster.restart_redis(crash)
        self.log.add("redis_restart", "redis", t0, time.time(), how="SIGKILL" if crash else "SIGTERM")
