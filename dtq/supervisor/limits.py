"""Memory and CPU readings of worker process trees (the only module that imports psutil).

Resident memory counts the worker and every descendant, found through
/proc/<pid>/task/<tid>/children (cheap: proportional to the tree, not to the
machine's process count), with psutil's scan as the fallback.
"""

from __future__ import annotations

import os

import psutil

_CHILDREN_FILES = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")


def _children(pid: int) -> list[int]:
    if not _CHILDREN_FILES:
        try:
            return [p.pid for p in psutil.Process(pid).children(recursive=False)]
        except psutil.Error:
            return []
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                kids.extend(int(x) for x in f.read().split())
    except (OSError, ValueError):
        pass
    return kids


def descendants(pid: int, limit: int = 10_000) -> list[int]:
    """The pids below ``pid`` (children, grandchildren, ...), at most ``limit``."""
    out, todo = [], [pid]
    while todo and len(out) < limit:
        kids = _children(todo.pop())
        out.extend(kids)
        todo.extend(kids)
    return out


_PROCESSES: dict[int, psutil.Process] = {}  # sampled ten times a second: keep the handles


def _process(pid: int) -> psutil.Process:
    proc = _PROCESSES.get(pid)
    if proc is None:
        if len(_PROCESSES) > 4096:
            _PROCESSES.clear()
        proc = _PROCESSES[pid] = psutil.Process(pid)
    return proc


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its descendants; 0 when it is gone."""
    total = 0
    for member in (pid, *descendants(pid)):
        try:
            total += _process(member).memory_info().rss
        except psutil.Error:
            _PROCESSES.pop(member, None)
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (and of children it has waited for)."""
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return t.user + t.system + t.children_user + t.children_system


def usable_cores() -> int:
    """Cores this process may run on (honours taskset/cgroup affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, psutil.cpu_count() or 1)
