"""`dtq top`: supervisors, workers and queues, refreshed in place (curses), or one plain frame.

Rates come from differences between two samples: queue counters (`dtq:{q}:stats`,
updated as jobs finish) between frames, and each supervisor's `done` counter between
two of its heartbeats (the registry changes only at a heartbeat). Worker CPU and RSS
are read on this host only, for pids that are descendants of the supervisor.
"""

from __future__ import annotations

import argparse
import curses
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from dtq.cli.admin_stats import human_bytes, human_seconds
from dtq.cli.operators import is_live
from dtq.engine.base import SupervisorInfo
from dtq.engine.redis_admin import RedisAdmin
from dtq.engine.redis_engine import RedisEngine
from dtq.supervisor import limits

WIDTH = 80


def register(commands: Any) -> None:
    p = commands.add_parser("top", help="live view of supervisors, workers and queues (q quits)")
    p.add_argument("--once", action="store_true", help="print one frame as plain text and exit")
    p.add_argument("--interval", type=float, default=1.0,
                   help="seconds between frames; --once samples twice this far apart for rates")
    p.set_defaults(run=cmd_top)


@dataclass
class Frame:
    """One sample of everything `dtq top` shows."""

    at: float  # monotonic
    wall: float
    supervisors: list[SupervisorInfo]
    queues: dict[str, dict[str, int]]
    cpu: dict[int, float] = field(default_factory=dict)  # local worker pid -> cpu seconds
    rss: dict[int, int] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)  # job id -> memory limit


class Sampler:
    """Takes frames and remembers per-supervisor heartbeats to turn counters into rates."""

    def __init__(self, admin: RedisAdmin) -> None:
        self.admin = admin
        self.host = socket.gethostname()
        self.beats: dict[str, tuple[float, int]] = {}  # name -> (heartbeat wall time, done)
        self.rates: dict[str, float] = {}

    def frame(self) -> Frame:
        sups = [s for s in self.admin.engine.supervisors() if is_live(s)]  # as `dtq supervisors`
        queues = sorted(set(self.admin.engine.queues()).union(*(s.queues for s in sups)))
        f = Frame(time.monotonic(), time.time(), sups, dict(self.admin.all_stats(queues)))
        for s in sups:
            self._note_beat(s, f.wall)
            self._read_local(s, f)
        self._read_limits(f)
        return f

    def _note_beat(self, s: SupervisorInfo, now: float) -> None:
        beat, done = now - s.heartbeat_age, int(s.extra.get("done") or 0)
        last = self.beats.get(s.name)
        if last is not None and beat - last[0] > 1e-3 and done >= last[1]:
            self.rates[s.name] = (done - last[1]) / (beat - last[0])
        if last is None or beat - last[0] > 1e-3:
            self.beats[s.name] = (beat, done)

    def rate(self, s: SupervisorInfo) -> str:
        """Jobs/s between heartbeats; before two were seen, the average since start ('~')."""
        if s.name in self.rates:
            return f"{self.rates[s.name]:.1f}"
        up = time.time() - s.heartbeat_age - s.started_at
        return f"~{int(s.extra.get('done') or 0) / up:.1f}" if s.started_at and up > 0 else "-"

    def _read_local(self, s: SupervisorInfo, f: Frame) -> None:
        if s.host != self.host or not s.pid:
            return
        mine = set(limits.descendants(s.pid))
        for w in _workers(s):
            pid = int(w.get("pid") or 0)
            if pid in mine:
                f.cpu[pid] = limits.cpu_seconds(pid)
                f.rss[pid] = limits.tree_rss(pid)

    def _read_limits(self, f: Frame) -> None:
        for s in f.supervisors:
            ids = [str(w["job"]) for w in _workers(s) if w.get("job")]
            given = {str(w["job"]): int(w["memory_limit"]) for w in _workers(s)
                     if w.get("job") and w.get("memory_limit")}
            found = self.admin.job_fields(s.queues, [i for i in ids if i not in given], "memory_limit")
            f.limits.update(given)
            f.limits.update({i: int(float(v["memory_limit"])) for i, v in found.items()
                             if v.get("memory_limit")})


def _workers(s: SupervisorInfo) -> list[dict[str, Any]]:
    workers = s.extra.get("workers")
    return [w for w in workers if isinstance(w, dict)] if isinstance(workers, list) else []


def fit(line: str, width: int = WIDTH) -> str:
    """Cut, never wrap: a frame must fit the terminal."""
    line = line.rstrip()
    return line if len(line) <= width else line[:width - 1] + ">"


def supervisor_lines(sampler: Sampler, cur: Frame) -> list[str]:
    lines = [f"{'SUPERVISOR':<18} {'HOST':<14} {'STATE':<8} {'POOL':>4} {'BUSY':>4} {'JOBS/S':>7} "
             f"{'BEAT':>6}"]
    for s in sorted(cur.supervisors, key=lambda s: s.name):
        lines.append(f"{s.name[:18]:<18} {s.host[:14]:<14} {str(s.extra.get('state', '?'))[:8]:<8} "
                     f"{s.workers:>4} {s.busy:>4} {sampler.rate(s):>7} {human_seconds(s.heartbeat_age):>6}")
    return lines


def worker_lines(prev: Frame | None, cur: Frame) -> list[str]:
    lines = [f"{'SUPERVISOR':<12} {'PID':>7} {'JOB':<18} {'PLUGIN':<12} {'RUNNING':>8} {'CPU%':>5} "
             f"{'RSS/LIMIT':>11}"]
    dt = cur.at - prev.at if prev else 0.0
    for s in sorted(cur.supervisors, key=lambda s: s.name):
        for w in sorted(_workers(s), key=lambda w: int(w.get("pid") or 0)):
            pid, job = int(w.get("pid") or 0), w.get("job")
            running = "-"
            if job and w.get("running_for") is not None:
                running = human_seconds(float(w["running_for"]) + s.heartbeat_age)
            cpu = "-"
            if prev and dt > 0 and pid in cur.cpu and pid in prev.cpu:
                cpu = f"{100 * (cur.cpu[pid] - prev.cpu[pid]) / dt:.0f}"
            rss = human_bytes(cur.rss[pid]) if pid in cur.rss else "-"
            limit = cur.limits.get(str(job)) if job else None
            lines.append(f"{s.name[:12]:<12} {pid:>7} {str(job or '-')[:18]:<18} "
                         f"{str(w.get('plugin') or '-')[:12]:<12} {running:>8} {cpu:>5} "
                         f"{rss + ('/' + human_bytes(limit) if limit else ''):>11}")
    return lines


def queue_lines(prev: Frame | None, cur: Frame) -> list[str]:
    lines = [f"{'QUEUE':<16} {'READY':>7} {'DELAYED':>7} {'RUNNING':>7} {'DONE/MIN':>9} "
             f"{'FAIL/MIN':>9} {'DEAD':>7} {'PAUSED':>6}"]
    dt = cur.at - prev.at if prev else 0.0
    for name, q in sorted(cur.queues.items()):
        before = prev.queues.get(name) if prev else None
        done = failed = "-"
        if before is not None and dt > 0:
            done = f"{60 * (q['done'] - before['done']) / dt:.1f}"
            failed = f"{60 * (q['failed'] - before['failed']) / dt:.1f}"
        lines.append(f"{name[:16]:<16} {q['ready']:>7} {q['scheduled']:>7} {q['running']:>7} "
                     f"{done:>9} {failed:>9} {q['dead']:>7} {'yes' if q['paused'] else '':>6}")
    return lines


def render(sampler: Sampler, prev: Frame | None, cur: Frame, width: int = WIDTH) -> list[str]:
    """One frame as lines of at most ``width`` characters."""
    pool = sum(s.workers for s in cur.supervisors)
    busy = sum(s.busy for s in cur.supervisors)
    head = (f"dtq top  {time.strftime('%H:%M:%S', time.localtime(cur.wall))}  "
            f"{len(cur.supervisors)} supervisors, {busy}/{pool} workers busy, {len(cur.queues)} queues")
    lines = [head, ""] + supervisor_lines(sampler, cur) + [""] + worker_lines(prev, cur)
    lines += [""] + queue_lines(prev, cur)
    return [fit(line, width) for line in lines]


def _live(stdscr: Any, sampler: Sampler, interval: float) -> None:
    try:
        curses.curs_set(0)
    except curses.error:
        pass
    stdscr.timeout(max(50, int(interval * 1000)))
    prev = None
    while True:
        cur = sampler.frame()
        height, width = stdscr.getmaxyx()
        stdscr.erase()
        lines = render(sampler, prev, cur, max(20, width - 1)) + ["", "q quits"]
        for y, line in enumerate(lines[:height]):
            stdscr.addnstr(y, 0, line, max(1, width - 1))
        stdscr.refresh()
        if stdscr.getch() in (ord("q"), ord("Q"), 27):
            return
        prev = cur


def cmd_top(args: argparse.Namespace) -> int:
    sampler = Sampler(RedisAdmin(RedisEngine(args.redis_url)))
    interval = max(0.05, args.interval)
    if args.once or not sys.stdout.isatty():
        prev = None
        while True:  # not a terminal: plain frames, like `top -b`
            first = sampler.frame() if prev is None else prev
            time.sleep(interval)
            cur = sampler.frame()
            print("\n".join(render(sampler, first, cur)), flush=True)
            if args.once:
                return 0
            print(flush=True)
            prev = cur
    try:
        curses.wrapper(_live, sampler, interval)
    except KeyboardInterrupt:
        pass
    return 0
