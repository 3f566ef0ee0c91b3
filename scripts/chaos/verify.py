"""The verdict: job hashes from Redis and the plugin's ledger, checked against the chaos log.

- lost: a job missing, not done (or, for a job meant to fail, not dead with its reason);
- held: a job still running or with a holder, or ids left in the running set;
- stale: a done job whose result, last history record or ledger run names another attempt;
- duplicates: runs of a job beyond its final attempt, each explained by an action window;
- recovery: kill (or SIGSTOP) -> the record that requeued the job, per action.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.chaos.events import Event

FAIL_PREFIX = "chaos-fail-"


@dataclass(frozen=True)
class Run:
    """One ledger line: a plugin run that reached its end."""

    job: str
    attempt: int
    pid: int
    supervisor: str
    start: float
    end: float


@dataclass
class Verdict:
    lost: list[str] = field(default_factory=list)
    held: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    explained: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    unexplained: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # every extra run, with its cause
    duplicated_jobs: int = 0
    extra_runs: int = 0
    recovery: list[dict[str, Any]] = field(default_factory=list)
    slow_recoveries: list[dict[str, Any]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.held or self.stale or self.unexplained or self.slow_recoveries)


def read_ledger(path: Path) -> dict[str, list[Run]]:
    runs: dict[str, list[Run]] = defaultdict(list)
    if path.exists():
        for line in path.read_text().splitlines():
            job, attempt, pid, sup, start, end = line.split()
            runs[job].append(Run(job, int(attempt), int(pid), sup, float(start), float(end)))
    return runs


def read_jobs(client, queue: str, ids: list[str]) -> dict[str, dict[str, str]]:
    """Every job hash, decoded; a missing job maps to {}."""
    out: dict[str, dict[str, str]] = {}
    for i in range(0, len(ids), 1000):
        chunk = ids[i:i + 1000]
        pipe = client.pipeline(transaction=False)
        for job_id in chunk:
            pipe.hgetall(f"dtq:{{{queue}}}:job:{job_id}")
        for job_id, raw in zip(chunk, pipe.execute(), strict=True):
            out[job_id] = {k.decode(): v.decode() for k, v in raw.items()}
    return out


def fail_reason(job_id: str) -> str:
    return f"chaos: meant to fail ({job_id})"


def count_reasons(h: dict[str, str], v: Verdict) -> None:
    """Failed attempts by reason, with names and numbers blanked out."""
    for rec in json.loads(h.get("history") or "[]"):
        if rec.get("reason"):
            v.reasons[re.sub(r"\(chaos-fail-\d+\)|sup-[\w~]+|\d+(\.\d+)?", "#", rec["reason"])] += 1


def check_end_state(job_id: str, h: dict[str, str], runs: list[Run], v: Verdict) -> None:
    """Lost, held or stale: the job's final state against what the test meant."""
    if h.get("state") == "running" or h.get("holder"):
        v.held.append(job_id)
    if job_id.startswith(FAIL_PREFIX):
        if h.get("state") != "dead" or h.get("error") != fail_reason(job_id):
            v.lost.append(job_id)
        return
    if h.get("state") != "done":
        v.lost.append(job_id)
        return
    attempt = int(h["attempt"])
    history = json.loads(h.get("history") or "[]")
    result = json.loads(h.get("result") or "null") or {}
    last = history[-1] if history else {}
    final_runs = [r for r in runs if r.attempt == attempt]
    if (result.get("attempt") != attempt or last.get("attempt") != attempt
            or len(final_runs) != 1 or final_runs[0].supervisor != last.get("holder")
            or result.get("supervisor") != last.get("holder")):
        v.stale.append(job_id)


def explains(e: Event, r: Run, slack: float) -> bool:
    """Can action ``e`` account for run ``r`` ending without its outcome being recorded?"""
    if e.kind == "worker_kill":
        return e.detail.get("pid") == r.pid and r.start - slack <= e.t0 <= r.end + slack
    if e.kind == "supervisor_kill":
        return e.target == r.supervisor and r.start - slack <= e.t0 <= r.end + slack
    if e.kind == "stop":
        return e.target == r.supervisor and r.start <= e.t1 + slack and r.end >= e.t0 - slack
    if e.kind == "redis_restart":  # in flight while Redis was away (a later claim is fresh)
        return r.start <= e.t1 and r.end >= e.t0 - slack
    return False


def self_recovered(h: dict[str, str], r: Run, margin: float = 0.2) -> bool:
    """Was this run's attempt requeued as 'supervisor X restarted' by X while X itself ran it?
    A real restart comes after a kill and a start-up (far more than ``margin``) past the run."""
    for rec in json.loads(h.get("history") or "[]"):
        if (rec.get("attempt") == r.attempt and rec.get("holder") == r.supervisor
                and rec.get("reason", "").endswith("restarted while running it")
                and r.start - margin <= rec.get("finished_at", 0) / 1000.0 <= r.end + margin):
            return True
    return False


def check_duplicates(job_id: str, h: dict[str, str], runs: list[Run], events: list[Event],
                     slack: float, v: Verdict) -> None:
    """Runs that are not the recorded final attempt: each must overlap an action window."""
    if len(runs) <= 1:
        return
    v.duplicated_jobs += 1
    final = int(h.get("attempt") or 0) if h.get("state") == "done" else None
    seen: set[int] = set()
    for r in sorted(runs, key=lambda r: r.start):
        if r.attempt == final and r.attempt not in seen:
            seen.add(r.attempt)
            continue
        v.extra_runs += 1
        cause = next((e for e in sorted(events, key=lambda e: e.kind == "redis_restart")
                      if explains(e, r, slack)), None)
        what = (f"{job_id} attempt {r.attempt} on {r.supervisor} pid {r.pid} "
                f"ran {r.start:.3f}-{r.end:.3f}")
        if self_recovered(h, r):
            cause = None
            what += " [requeued by its own supervisor while running: claimed before its start-up recovery]"
        if cause is None or r.attempt in seen:
            v.unexplained.append(what)
        else:
            v.explained[cause.kind] += 1
        v.extra.append(f"{what}: {cause.kind + ' ' + cause.target if cause else 'unexplained'}"
                       f"{f' at {cause.t0:.3f}-{cause.t1:.3f}' if cause else ''}")
        seen.add(r.attempt)


def recovery_records(h: dict[str, str]) -> list[tuple[str, float]]:
    """(holder, when) of every history record that requeued the job from a stopped holder."""
    out = []
    for rec in json.loads(h.get("history") or "[]"):
        reason = rec.get("reason", "")
        if reason.startswith(("lease expired: supervisor ", "supervisor ")) and "finished_at" in rec:
            out.append((rec.get("holder", ""), rec["finished_at"] / 1000.0))
    return out


def check_recovery(jobs: dict[str, dict[str, str]], events: list[Event], bound: float,
                   v: Verdict) -> None:
    """Per supervisor kill or stop: the time until the last job it held was requeued.
    A requeue whose latest preceding action is a Redis restart is counted apart."""
    kinds = ("supervisor_kill", "stop", "redis_restart")
    actions = sorted((e for e in events if e.kind in kinds), key=lambda e: e.t0)
    worst: dict[int, float] = {}
    for h in jobs.values():
        for holder, when in recovery_records(h):
            match = [i for i, e in enumerate(actions)
                     if e.target in (holder, "redis") and e.t0 <= when]
            if match:
                i = match[-1]
                worst[i] = max(worst.get(i, 0.0), when - actions[i].t0)
    for i, seconds in sorted(worst.items()):
        e = actions[i]
        row = {"kind": e.kind, "supervisor": e.target, "seconds": round(seconds, 3),
               "same_name": e.detail.get("same_name")}
        v.recovery.append(row)
        if seconds > bound and e.kind != "redis_restart":
            v.slow_recoveries.append(row)


def verify(jobs: dict[str, dict[str, str]], runs: dict[str, list[Run]], events: list[Event],
           running_left: int, lease: float, slack: float) -> Verdict:
    v = Verdict()
    for job_id, h in jobs.items():
        check_end_state(job_id, h, runs.get(job_id, []), v)
        count_reasons(h, v)
        check_duplicates(job_id, h, runs.get(job_id, []), events, slack, v)
    if running_left:
        v.held.append(f"{running_left} ids left in the running set")
    check_recovery(jobs, events, lease * 1.5 + slack, v)
    return v


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0
