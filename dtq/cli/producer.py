"""Producer commands: enqueue, status, result, cancel."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from typing import Any

from dtq.cli.progress import follow, summarise
from dtq.client import Queue
from dtq.engine.base import JobStatus
from dtq.errors import InvalidJob, JobFailed, ResultTimeout
from dtq.job import decode_json, parse_size


def register(commands: Any) -> None:
    p = commands.add_parser("enqueue", help="enqueue a job, or one envelope per line of a file")
    p.add_argument("plugin", nargs="?", help="the plugin that handles the job")
    p.add_argument("--data", default="null", help="the job's data as JSON")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="a JSON-lines file of envelopes ('-' for stdin)")
    p.add_argument("--id", help="job id (default: generated); an existing id is not enqueued twice")
    p.add_argument("--queue", default="default")
    p.add_argument("--timeout", type=float, help="seconds")
    p.add_argument("--memory-limit", help="bytes, or e.g. 512M, 2G")
    p.add_argument("--max-attempts", type=int)
    p.add_argument("--backoff", type=float, help="base seconds of the retry backoff")
    p.add_argument("--priority", type=int, help="higher runs first (-1000..1000)")
    p.add_argument("--delay", type=float, help="seconds before the job may run")
    p.add_argument("--run-at", type=float, help="epoch seconds before which the job does not run")
    p.add_argument("--result-ttl", type=float, help="seconds the result is kept")
    p.add_argument("--wait", action="store_true", help="show progress until the jobs are done")
    p.set_defaults(run=cmd_enqueue)

    p = commands.add_parser("status", help="show a job's state, attempts and result")
    p.add_argument("id")
    p.add_argument("--queue", default="default", help="where to look first")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_status)

    p = commands.add_parser("result", help="print a job's result as JSON")
    p.add_argument("id")
    p.add_argument("--queue", default="default", help="where to look first")
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="wait up to this long for the job to finish")
    p.set_defaults(run=cmd_result)

    p = commands.add_parser("cancel", help="cancel a waiting job, or stop a running one")
    p.add_argument("id")
    p.add_argument("--queue", default="default", help="where to look first")
    p.set_defaults(run=cmd_cancel)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    names = ("timeout", "max_attempts", "backoff", "priority", "delay", "run_at", "result_ttl")
    options = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    if args.memory_limit is not None:
        options["memory_limit"] = parse_size(args.memory_limit, "--memory-limit")
    return options


def cmd_enqueue(args: argparse.Namespace) -> int:
    queue = Queue(args.redis_url, queue=args.queue)
    if args.from_file:
        if args.plugin:
            raise InvalidJob("--from", "give either a PLUGIN or --from FILE, not both")
        code, ids = enqueue_file(queue, args.from_file)
        if args.wait and ids:
            code = max(code, summarise(ids, follow(queue, ids)))
        return code
    if not args.plugin:
        raise InvalidJob("PLUGIN", "name the plugin, or give --from FILE")
    try:
        data = decode_json(args.data)
    except InvalidJob as exc:
        raise InvalidJob("--data", exc.problem) from None
    envelope: dict[str, Any] = {"job": {"plugin": args.plugin, "data": data},
                                "options": {"queue": args.queue, **_options(args)}}
    if args.id is not None:
        envelope["id"] = args.id
    result = queue.engine.enqueue(queue.job(envelope))  # errors name the field, not '[0].'
    if not result.created:
        print(f"dtq: job {result.id} exists already ({result.state}); not enqueued again",
              file=sys.stderr)
    print(result.id)
    if args.wait:
        return summarise([result.id], follow(queue, [result.id]))
    return 0


def _lines(path: str) -> Iterator[tuple[int, bytes]]:
    stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    with stream:
        for number, line in enumerate(stream, 1):
            if line.strip():
                yield number, line.strip()


def enqueue_file(queue: Queue, path: str, chunk: int = 5000) -> tuple[int, list[str]]:
    """One envelope per line; bad lines are reported by number, good ones enqueued.

    Returns the exit code (1 when a line was bad) and the ids of the enqueued jobs.
    """
    bad = created = existing = 0
    batch: list[Any] = []
    ids: list[str] = []

    def flush() -> None:
        nonlocal created, existing
        for result in queue.submit_many(batch):
            created += result.created
            existing += not result.created
            ids.append(result.id)
        batch.clear()

    for number, line in _lines(path):
        try:
            batch.append(queue.job(line))
        except InvalidJob as exc:
            bad += 1
            print(f"dtq: line {number}: {exc}", file=sys.stderr)
        if len(batch) >= chunk:
            flush()
    flush()
    print(f"enqueued {created} jobs" + (f" ({existing} already existed)" if existing else "")
          + (f"; {bad} bad lines skipped" if bad else ""))
    return (1 if bad else 0), ids


def status_dict(status: JobStatus) -> dict[str, Any]:
    return {k: v for k, v in status.__dict__.items()}


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def format_status(s: JobStatus) -> str:
    lines = [f"job {s.id}  queue {s.queue}  plugin {s.plugin or '-'}",
             f"state: {s.state}" + (f" ({s.error})" if s.error else ""),
             f"attempts: {s.attempt} (failed {s.failures})"
             + (f", held by {s.holder}" if s.holder else ""),
             f"enqueued {_when(s.enqueued_at)}, started {_when(s.started_at)}, "
             f"finished {_when(s.finished_at)}"]
    if s.progress:
        frac = s.progress.get("fraction")
        lines.append("progress: " + (f"{frac:.0%} " if isinstance(frac, (int, float)) else "")
                     + str(s.progress.get("message", "")))
    lines.extend(_history_line(rec) for rec in s.history)
    if s.state == "done":
        lines.append("result: " + json.dumps(s.result)[:2000])
    if s.raw:
        lines.append("raw entry: " + s.raw[:500])
    return "\n".join(lines)


def _history_line(rec: dict[str, Any]) -> str:
    """One attempt (figures and reason), or an operator's note such as a retry."""
    if rec.get("event"):
        return f"  note: {rec.get('reason') or rec['event']}"
    figures = ""
    if "wall" in rec:
        # attempts of 5 ms or less are not measured (two /proc reads would double a no-op)
        peak = f"{rss / 2**20:.1f} MiB" if (rss := rec.get("peak_rss")) else "not measured"
        figures = f"wall {rec['wall']:.3f} s, cpu {rec.get('cpu', 0):.3f} s, peak {peak}"
    outcome = f" - {rec['reason']}" if rec.get("reason") else " - done"
    return f"  attempt {rec.get('attempt', '?')}: {figures}{outcome}"


def cmd_status(args: argparse.Namespace) -> int:
    status = Queue(args.redis_url, queue=args.queue).status(args.id)
    if args.json:
        print(json.dumps(status_dict(status), indent=2, default=str))
    else:
        print(format_status(status))
    return 0


def cmd_result(args: argparse.Namespace) -> int:
    queue = Queue(args.redis_url, queue=args.queue)
    try:
        result = queue.result(args.id, timeout=args.wait)
    except JobFailed as exc:
        print(f"dtq: {exc}", file=sys.stderr)
        return 1
    except ResultTimeout as exc:
        print(f"dtq: {exc}", file=sys.stderr)
        return 3
    print(json.dumps(result))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    outcome = Queue(args.redis_url, queue=args.queue).cancel(args.id)
    messages = {"cancelled": f"job {args.id} cancelled",
                "requested": f"job {args.id} is running; its supervisor stops it now",
                "missing": f"no job {args.id}"}
    print(messages.get(outcome, f"job {args.id} has already finished ({outcome.partition(':')[2]})"))
    return 0 if outcome in ("cancelled", "requested") else 1
