"""Driver of the chaos test: set up, enqueue, unleash the monkey, wait, verify, report."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from scripts.chaos.cluster import Cluster, Timings
from scripts.chaos.events import EventLog
from scripts.chaos.monkey import Monkey, Pace
from scripts.chaos.report import build_report, format_report
from scripts.chaos.verify import FAIL_PREFIX, fail_reason, read_jobs, read_ledger, verify

QUEUE = "default"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="chaos.py", description=__doc__)
    p.add_argument("--jobs", type=int, default=10_000, help="jobs that must end done")
    p.add_argument("--fail-jobs", type=int, default=10, help="extra jobs meant to be dead-lettered")
    p.add_argument("--supervisors", type=int, default=3)
    p.add_argument("--workers", type=int, default=2, help="workers per supervisor")
    p.add_argument("--lease", type=float, default=2.0, help="supervisor --lease (s)")
    p.add_argument("--max-ms", type=float, default=20.0, help="each job works 0..max-ms ms")
    p.add_argument("--max-seconds", type=float, default=300.0, help="give up after this long")
    p.add_argument("--min-gap", type=float, default=0.3, help="shortest pause between actions (s)")
    p.add_argument("--max-gap", type=float, default=1.5, help="longest pause between actions (s)")
    p.add_argument("--slack", type=float, default=1.0, help="slack (s) for recovery and windows")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    p.add_argument("--keep", action="store_true", help="keep the work dir (kept anyway on failure)")
    p.add_argument("--quiet", action="store_true", help="do not echo each action")
    return p.parse_args(argv)


def envelopes(args: argparse.Namespace, ledger: Path, rng: random.Random) -> list[dict[str, Any]]:
    """The jobs, shuffled: the ones meant to fail are spread among the others."""
    opts = {"max_attempts": 50}
    out = [{"id": f"chaos-{i:05d}", "job": {"plugin": "chaos_ledger",
            "data": {"ledger": str(ledger), "max_ms": args.max_ms}}, "options": opts}
           for i in range(args.jobs)]
    for i in range(args.fail_jobs):
        job_id = f"{FAIL_PREFIX}{i:03d}"
        out.append({"id": job_id, "job": {"plugin": "chaos_ledger",
                    "data": {"ledger": str(ledger), "fail": fail_reason(job_id)}}, "options": opts})
    rng.shuffle(out)
    return out


def enqueue(url: str, envs: list[dict[str, Any]]) -> list[str]:
    from dtq import Queue

    queue = Queue(url, queue=QUEUE)
    ids: list[str] = []
    for i in range(0, len(envs), 1000):
        ids += queue.enqueue_many(envs[i:i + 1000])
    queue.engine.client.close()
    return ids


class Progress:
    """Whether every job has ended, asked of Redis (False while Redis is away)."""

    def __init__(self, client: redis.Redis, total: int) -> None:
        self.client = client
        self.total = total
        self.ended = 0

    def finished(self) -> bool:
        k = f"dtq:{{{QUEUE}}}:"
        try:
            pipe = self.client.pipeline(transaction=False)
            for name in ("ready", "delayed", "running", "dead"):
                pipe.zcard(k + name)
            pipe.hget(k + "stats", "done")
            ready, delayed, running, dead, done = pipe.execute()
        except redis.RedisError:
            return False
        self.ended = int(done or 0) + dead
        return self.ended >= self.total and not (ready or delayed or running)


def wait_registered(client: redis.Redis, names: list[str], deadline: float) -> None:
    """Chaos starts once every supervisor has sent its first heartbeat."""
    while time.monotonic() < deadline:
        if all(client.zscore("dtq:supervisors", name) is not None for name in names):
            return
        time.sleep(0.05)


def wait_finished(progress: Progress, deadline: float) -> bool:
    while time.monotonic() < deadline:
        if progress.finished():
            return True
        time.sleep(0.05)
    return progress.finished()


def execute(args: argparse.Namespace, cluster: Cluster, log: EventLog, rng: random.Random) -> dict:
    """One chaos run from a fresh Redis to the verdict; returns the report."""
    deadline = time.monotonic() + args.max_seconds
    ledger = cluster.workdir / "ledger"
    cluster.start_redis()
    ids = enqueue(cluster.url, envelopes(args, ledger, rng))
    client = cluster.redis.client(socket_timeout=2.0, socket_connect_timeout=1.0)
    progress = Progress(client, len(ids))
    names = [f"sup-{chr(ord('a') + i)}" for i in range(args.supervisors)]
    t0 = time.monotonic()
    cluster.start(names)
    wait_registered(client, names, deadline)
    Monkey(cluster, log, rng, Pace(args.min_gap, args.max_gap)).run(progress.finished, deadline)
    finished = wait_finished(progress, deadline)
    wall = time.monotonic() - t0
    exits = cluster.stop_all()
    leftovers = cluster.leftovers()
    jobs = read_jobs(client, QUEUE, ids)
    running_left = client.zcard(f"dtq:{{{QUEUE}}}:running")
    stats = {k.decode(): int(v) for k, v in client.hgetall(f"dtq:{{{QUEUE}}}:stats").items()}
    client.close()
    verdict = verify(jobs, read_ledger(ledger), log.events, running_left, args.lease, args.slack)
    return build_report(args, verdict, log, wall=wall, finished=finished, exits=exits,
                        leftovers=leftovers, stats=stats, total=len(ids), machine=machine())


def machine() -> str:
    return (f"{platform.node()}: {os.cpu_count()} cores, {platform.platform()}, "
            f"Python {platform.python_version()}")


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    args.seed = seed
    workdir = Path(tempfile.mkdtemp(prefix="dtq-chaos-"))
    cluster = Cluster(workdir, Timings(lease=args.lease, workers=args.workers))
    log = EventLog(workdir / "events.jsonl", verbose=not args.quiet, out=sys.stdout)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    ok = False
    try:
        report = execute(args, cluster, log, random.Random(seed))
        print(format_report(report), flush=True)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        ok = report["ok"]
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("chaos: interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        left = cluster.cleanup()
        signal.signal(signal.SIGTERM, previous)
        if left:
            print(f"chaos: killed leftover processes {left}", file=sys.stderr)
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"chaos: work dir kept: {workdir} (ledger, events.jsonl, logs/)", file=sys.stderr)
