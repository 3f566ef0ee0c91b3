"""Operator commands: stats, dead (list/show/retry/purge), pause, resume, top."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from typing import Any

from dtq.cli import admin_stats as st
from dtq.cli import top
from dtq.cli.producer import format_status, status_dict
from dtq.engine.redis_admin import SAMPLE_CAP, RedisAdmin
from dtq.engine.redis_engine import RedisEngine

STATS_HELP = """Queue depths, counters, failure reasons and per-plugin percentiles.
Percentiles, failed-attempt reasons and recent activity come from a bounded sample:
at most --sample job records per queue, found with SCAN (not necessarily the newest);
finished jobs expire after their result TTL. Dead-letter reasons cover the newest
--sample dead jobs."""


def register(commands: Any) -> None:
    p = commands.add_parser("stats", help="queue depths, counters, failure reasons, percentiles",
                            description=STATS_HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--queue", action="append", help="this queue (repeatable; default: all)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--sample", type=int, default=SAMPLE_CAP, metavar="N",
                   help=f"job records read per queue at most (default {SAMPLE_CAP})")
    p.set_defaults(run=cmd_stats)
    _register_dead(commands)
    for name, run, why in (
            ("pause", cmd_pause, "stop supervisors claiming jobs of a queue (running jobs go on)"),
            ("resume", cmd_resume, "claim from a paused queue again")):
        p = commands.add_parser(name, help=why)
        p.add_argument("queue")
        p.set_defaults(run=run)
    top.register(commands)


def _register_dead(commands: Any) -> None:
    dead = commands.add_parser("dead", help="the dead-letter queue: list, show, retry, purge")
    sub = dead.add_subparsers(dest="dead_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="dead jobs, newest first")
    p.add_argument("--queue", help="only this queue (default: all)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--offset", type=int, default=0, help="skip this many (paging)")
    p.set_defaults(run=cmd_dead_list)
    p = sub.add_parser("show", help="everything about one dead job, every attempt's reason")
    p.add_argument("id")
    p.add_argument("--queue", help="where to look first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_dead_show)
    p = sub.add_parser("retry", help="queue dead jobs again with a fresh failure count")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="every dead job (of --queue, or of all)")
    p.add_argument("--queue", help="the queue (default: found by id; with --all: every queue)")
    p.set_defaults(run=cmd_dead_retry)
    p = sub.add_parser("purge", help="delete dead jobs (all, or the given ids) and their records")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--queue", help="the queue (default: found by id; without ids: every queue)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(run=cmd_dead_purge)


def _admin(args: argparse.Namespace) -> RedisAdmin:
    return RedisAdmin(RedisEngine(args.redis_url))


def _queues(admin: RedisAdmin, wanted: list[str] | str | None) -> list[str]:
    if wanted:
        return [wanted] if isinstance(wanted, str) else list(dict.fromkeys(wanted))
    return admin.engine.queues()


# --- stats ------------------------------------------------------------------------
def queue_report(admin: RedisAdmin, queue: str, cap: int) -> dict[str, Any]:
    """Everything `dtq stats` says about one queue, as plain data (printed or as JSON)."""
    sample = admin.sample_jobs(queue, cap)
    reasons = st.failure_reasons(sample.jobs, admin.dead_reasons(queue, cap))
    return {"queue": queue, "counts": admin.engine.stats(queue),
            "sample": {"jobs": len(sample.jobs), "complete": sample.complete},
            "recent": st.recent_activity(sample.jobs, time.time()),
            "reasons": {k: dict(v.most_common()) for k, v in reasons.items()},
            "plugins": st.plugin_percentiles(sample.jobs)}


def format_report(r: dict[str, Any]) -> list[str]:
    c = r["counts"]
    lines = [f"queue {r['queue']}" + ("  (PAUSED)" if c["paused"] else ""),
             "  depth: " + ", ".join(f"{k} {c[k]}" for k in
                                    ("ready", "scheduled", "running", "dead", "inbox")),
             "  counters: " + ", ".join(f"{k} {c.get(k, 0)}" for k in
                                       ("enqueued", "done", "failed", "retried", "cancelled", "malformed"))]
    s = r["sample"]
    lines.append(f"  sample: {s['jobs']} job records" + ("" if s["complete"] else " (capped)"))
    lines.append("  finished attempts: " + ", ".join(
        f"last {w}: {v['done']} done, {v['failed']} failed" for w, v in r["recent"].items()))
    for title, key in (("dead letters by reason", "dead"), ("failed attempts by reason", "failed_attempts")):
        if r["reasons"][key]:
            lines.append(f"  {title}:")
            lines += [f"    {n:>6}  {reason}" for reason, n in list(r["reasons"][key].items())[:15]]
    if r["plugins"]:
        lines.append(f"  {'plugin':<18} {'metric':<9} {'n':>6} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for plugin, metrics in r["plugins"].items():
        for metric, label in st.METRICS:
            if metric in metrics:
                m = metrics[metric]
                fmt = st.human_bytes if metric == "peak_rss" else st.human_seconds
                lines.append(f"  {plugin[:18]:<18} {label:<9} {m['n']:>6} " + " ".join(
                    f"{fmt(m[k]):>8}" for k in ("p50", "p90", "p99", "max")))
    return lines


def cmd_stats(args: argparse.Namespace) -> int:
    admin = _admin(args)
    reports = [queue_report(admin, q, max(1, args.sample)) for q in _queues(admin, args.queue)]
    if args.json:
        print(json.dumps(reports, indent=2))
    elif not reports:
        print("no queues yet")
    else:
        print("\n\n".join("\n".join(format_report(r)) for r in reports))
    return 0


# --- dead letters --------------------------------------------------------------------
def _age(epoch: float) -> str:
    return st.human_seconds(max(0.0, time.time() - epoch)) + " ago"


def cmd_dead_list(args: argparse.Namespace) -> int:
    admin = _admin(args)
    rows = []
    for queue in _queues(admin, args.queue):  # each queue newest first, then merged
        rows += admin.dead_list(queue, 0, args.offset + args.limit)
    rows.sort(key=lambda e: e.dead_at, reverse=True)
    rows = rows[args.offset:args.offset + args.limit]
    total = sum(admin.dead_count(q) for q in _queues(admin, args.queue))
    if not rows:
        print("no dead jobs" if not total else f"no dead jobs on this page ({total} in all)")
        return 0
    width = shutil.get_terminal_size((200, 24)).columns if sys.stdout.isatty() else 10_000
    print(f"{'ID':<24} {'QUEUE':<10} {'DEAD':>10} {'FAILS':>5} {'PLUGIN':<14} REASON")
    for e in rows:
        line = (f"{e.id[:24]:<24} {e.queue[:10]:<10} {_age(e.dead_at):>10} {e.failures:>5} "
                f"{(e.plugin or '-')[:14]:<14} {e.reason}")
        print(line[:width])
    print(f"{args.offset + 1}-{args.offset + len(rows)} of {total} dead jobs")
    return 0


def _locate(admin: RedisAdmin, job_id: str, queue: str | None) -> str | None:
    found = admin.find_queue(job_id, queue)
    if found is None:
        print(f"dtq: no dead job {job_id!r}" + (f" in queue {queue}" if queue else ""), file=sys.stderr)
    return found


def cmd_dead_show(args: argparse.Namespace) -> int:
    admin = _admin(args)
    queue = _locate(admin, args.id, args.queue)
    status = admin.engine.status(args.id, queue) if queue else None
    if status is None:
        return 1
    if args.json:
        print(json.dumps(status_dict(status), indent=2, default=str))
    else:
        print(format_status(status))
    return 0


def cmd_dead_retry(args: argparse.Namespace) -> int:
    admin = _admin(args)
    if bool(args.ids) == bool(args.all):
        print("dtq: give job ids or --all (not both)", file=sys.stderr)
        return 2
    outcomes: dict[str, str] = {}
    if args.all:
        for queue in _queues(admin, args.queue):
            outcomes.update(admin.retry(queue, admin.dead_ids(queue)))
    for job_id in args.ids:
        queue = _locate(admin, job_id, args.queue)
        outcomes[job_id] = admin.retry(queue, [job_id])[job_id] if queue else "missing"
    retried = [i for i, o in outcomes.items() if o in ("queued", "scheduled")]
    for job_id, outcome in outcomes.items():
        if outcome == "malformed":
            print(f"dtq: {job_id} is a malformed inbox entry: nothing to run "
                  "(fix and push it again, then purge it)", file=sys.stderr)
    print(f"retried {len(retried)} dead jobs" + (": " + " ".join(retried[:20]) if args.ids else ""))
    return 0 if len(retried) == len(outcomes) else 1


def cmd_dead_purge(args: argparse.Namespace) -> int:
    admin = _admin(args)
    targets: dict[str, list[str]] = {}
    if args.ids:
        for job_id in args.ids:
            queue = _locate(admin, job_id, args.queue)
            if queue:
                targets.setdefault(queue, []).append(job_id)
    else:
        targets = {q: admin.dead_ids(q) for q in _queues(admin, args.queue)}
    count = sum(len(ids) for ids in targets.values())
    if not args.yes and not args.ids:
        if not sys.stdin.isatty():
            print(f"dtq: this deletes {count} dead jobs; add --yes to confirm", file=sys.stderr)
            return 2
        if input(f"delete {count} dead jobs of {', '.join(targets) or '-'}? [y/N] ").lower() != "y":
            return 1
    purged = sum(admin.purge(queue, ids) for queue, ids in targets.items())
    print(f"purged {purged} dead jobs")
    return 0 if purged == len(args.ids) or not args.ids else 1


# --- pause / resume ------------------------------------------------------------------
def cmd_pause(args: argparse.Namespace) -> int:
    admin = _admin(args)
    if args.queue not in admin.engine.queues():
        print(f"dtq: note: nothing was ever enqueued to {args.queue!r}", file=sys.stderr)
    fresh = admin.pause(args.queue)
    print(f"queue {args.queue} " + ("paused" if fresh else "was already paused")
          + ": supervisors claim none of its jobs; running jobs go on")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    was = _admin(args).resume(args.queue)
    print(f"queue {args.queue} " + ("resumed" if was else "was not paused"))
    return 0
