"""The chaos report: a dict (for --json and the test) and its printed form."""

from __future__ import annotations

import argparse
from typing import Any

from scripts.chaos.events import KINDS, EventLog
from scripts.chaos.verify import Verdict, median

LABELS = {"worker_kill": "worker SIGKILLs", "supervisor_kill": "supervisor SIGKILLs",
          "stop": "supervisor SIGSTOPs", "redis_restart": "Redis restarts"}


def recovery_summary(verdict: Verdict, kind: str) -> dict[str, Any]:
    times = [r["seconds"] for r in verdict.recovery if r["kind"] == kind]
    return {"count": len(times), "max": max(times, default=0.0), "median": round(median(times), 3)}


def build_report(args: argparse.Namespace, verdict: Verdict, log: EventLog, **run: Any) -> dict:
    kills = log.events
    actions = {k: log.count(k) for k in KINDS}
    actions["supervisor_kill_same_name"] = sum(
        1 for e in kills if e.kind == "supervisor_kill" and e.detail.get("same_name"))
    actions["redis_sigkill"] = sum(1 for e in kills if e.kind == "redis_restart"
                                   and e.detail.get("how") == "SIGKILL")
    ok = (verdict.ok and run["finished"] and not run["leftovers"])
    return {
        "ok": ok, "seed": args.seed, "machine": run["machine"], "jobs": run["total"],
        "fail_jobs": args.fail_jobs, "supervisors": args.supervisors, "workers": args.workers,
        "lease": args.lease, "wall_seconds": round(run["wall"], 2), "finished": run["finished"],
        "actions": actions, "lost": len(verdict.lost), "lost_ids": verdict.lost[:20],
        "held": verdict.held[:20], "stale": verdict.stale[:20],
        "duplicated_jobs": verdict.duplicated_jobs, "extra_runs": verdict.extra_runs,
        "explained": dict(verdict.explained), "unexplained": verdict.unexplained[:50],
        "extra_runs_detail": verdict.extra,
        "recovery_bound": args.lease * 1.5 + args.slack,
        "recovery_kill": recovery_summary(verdict, "supervisor_kill"),
        "recovery_stop": recovery_summary(verdict, "stop"),
        "recovery_redis": recovery_summary(verdict, "redis_restart"),
        "slow_recoveries": verdict.slow_recoveries, "leftovers": run["leftovers"],
        "exits": run["exits"], "stats": run["stats"], "failure_reasons": dict(verdict.reasons),
    }


def format_report(r: dict[str, Any]) -> str:
    a = r["actions"]
    acts = ", ".join(f"{LABELS[k]} {a[k]}" for k in KINDS)
    rk, rs = r["recovery_kill"], r["recovery_stop"]
    explained = ", ".join(f"{k} {n}" for k, n in sorted(r["explained"].items())) or "none"
    lines = [
        f"dtq chaos: {r['jobs']:,} jobs ({r['fail_jobs']} meant to fail), {r['supervisors']} supervisors"
        f" x {r['workers']} workers, lease {r['lease']:g} s, seed {r['seed']}",
        f"machine: {r['machine']}",
        f"actions: {acts}",
        f"  supervisor restarts: {a['supervisor_kill_same_name']} same name, "
        f"{a['supervisor_kill'] - a['supervisor_kill_same_name']} new name; "
        f"Redis: {a['redis_sigkill']} SIGKILL, {a['redis_restart'] - a['redis_sigkill']} SIGTERM",
        f"lost: {r['lost']}  still held: {len(r['held'])}  stale results: {len(r['stale'])}  "
        f"leftover processes: {len(r['leftovers'])}  all ended: {r['finished']}",
        f"duplicates: {r['duplicated_jobs']} jobs ran more than once, {r['extra_runs']} extra runs: "
        f"explained {sum(r['explained'].values())} ({explained}), unexplained {len(r['unexplained'])}",
        f"recovery after supervisor SIGKILL: {rk['count']} with held jobs, max {rk['max']:.2f} s, "
        f"median {rk['median']:.2f} s; after SIGSTOP: {rs['count']}, max {rs['max']:.2f} s, "
        f"median {rs['median']:.2f} s (bound lease x 1.5 + slack = {r['recovery_bound']:.2f} s)",
        f"engine counters: {r['stats']}",
        f"failed attempts by reason: {r['failure_reasons']}",
        f"wall time: {r['wall_seconds']:.1f} s ({r['jobs'] / max(r['wall_seconds'], 1e-9):,.0f} jobs/s)",
    ]
    for label in ("lost_ids", "held", "stale", "unexplained", "slow_recoveries"):
        if r[label]:
            lines.append(f"{label}: {r[label]}")
    lines.append("verdict: " + ("PASS" if r["ok"] else "FAIL"))
    return "\n".join(lines)
