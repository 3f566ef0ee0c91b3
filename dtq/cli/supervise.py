"""`dtq supervise`: run a supervisor on this box."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dtq.engine.base import Defaults
from dtq.engine.redis_engine import RedisEngine
from dtq.job import parse_size
from dtq.plugin_loader import ENTRY_POINT_GROUP, load_plugins
from dtq.supervisor.limits import usable_cores
from dtq.supervisor.settings import SupervisorSettings, default_name, plugin_config
from dtq.supervisor.supervisor import Supervisor


def register(commands: Any) -> None:
    p = commands.add_parser("supervise", help="run a supervisor with a pool of forked workers")
    p.add_argument("--workers", default="auto", help="pool size, or 'auto' (usable cores)")
    p.add_argument("--queues", default="default", help="comma-separated, in priority order")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE:CLASS",
                   help="load this plugin (repeatable); installed dtq.plugins entry points load too")
    p.add_argument("--no-entry-points", action="store_true",
                   help="load only the plugins named with --plugin")
    p.add_argument("--no-fork-server", action="store_true",
                   help="fork workers from the supervisor itself, not from a fresh interpreter "
                        "that loaded the plugins (the default: faster workers, see docs/design.md)")
    p.add_argument("--timeout", type=float, default=3600.0, help="default per-job timeout (s)")
    p.add_argument("--timeout-ceiling", type=float, help="no job may run longer than this (s)")
    p.add_argument("--memory-limit", help="default per-job memory limit, e.g. 512M")
    p.add_argument("--memory-breaches", type=int, default=1,
                   help="consecutive readings over the limit before a kill (ignores spikes)")
    p.add_argument("--idle-memory-limit", help="recycle a worker whose idle RSS exceeds this")
    p.add_argument("--idle-memory-growth", default="256M",
                   help="recycle a worker whose idle RSS grew by more than this since its first "
                        "job (default 256M; 0 = never)")
    p.add_argument("--max-file-size", help="largest file a worker may write, e.g. 1G (RLIMIT_FSIZE)")
    p.add_argument("--memory-sample", type=float, default=0.1,
                   help="seconds between memory readings of busy workers")
    p.add_argument("--max-jobs-per-worker", type=int, metavar="N",
                   help="recycle workers after N jobs (+-10%%, so that they do not all recycle "
                        "at once; never below 1)")
    p.add_argument("--name", help="supervisor name (default: HOST-PID)")
    p.add_argument("--burst", action="store_true", help="exit once the queues are empty and idle")
    p.add_argument("--lease", type=float, default=30.0, help="job lease in seconds")
    p.add_argument("--heartbeat", type=float, help="seconds between heartbeats (default lease/3)")
    p.add_argument("--poll", type=float, default=1.0, help="idle poll interval (s)")
    p.add_argument("--grace", type=float, default=30.0, help="graceful stop: seconds for running jobs")
    p.add_argument("--kill-grace", type=float, default=2.0, help="soft signal to SIGKILL (s)")
    p.add_argument("--max-attempts", type=int, default=3, help="default attempts before dead-letter")
    p.add_argument("--backoff", type=float, default=1.0, help="default retry backoff base (s)")
    p.add_argument("--result-ttl", type=float, default=7 * 86400.0, help="default result TTL (s)")
    p.add_argument("--allow-path", action="append", default=[], type=Path, metavar="DIR",
                   help="a directory plugins may read and write under (repeatable)")
    p.add_argument("--plugin-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a setting for plugins, e.g. montage_max_inputs=500 (repeatable)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics and /healthz here")
    p.add_argument("--metrics-host", default="127.0.0.1",
                   help="address for --metrics-port (0.0.0.0 for every interface)")
    p.add_argument("--user", help="run workers as this user")
    p.add_argument("--group", help="run workers with this group")
    p.set_defaults(run=cmd_supervise)


def settings_from_args(args: argparse.Namespace) -> SupervisorSettings:
    workers = usable_cores() if args.workers == "auto" else int(args.workers)
    return SupervisorSettings(
        name=args.name or default_name(),
        queues=[q.strip() for q in args.queues.split(",") if q.strip()],
        workers=workers, plugins=list(args.plugin), entry_points=not args.no_entry_points,
        fork_server=not args.no_fork_server,
        timeout=args.timeout, timeout_ceiling=args.timeout_ceiling,
        memory_limit=parse_size(args.memory_limit, "--memory-limit") if args.memory_limit else None,
        memory_breaches=max(1, args.memory_breaches), memory_sample=args.memory_sample,
        max_file_size=parse_size(args.max_file_size, "--max-file-size") if args.max_file_size else None,
        idle_memory_limit=parse_size(args.idle_memory_limit, "--idle-memory-limit")
        if args.idle_memory_limit else None,
        idle_memory_growth=None if args.idle_memory_growth.strip() == "0"
        else parse_size(args.idle_memory_growth, "--idle-memory-growth"),
        max_jobs_per_worker=args.max_jobs_per_worker, lease=args.lease, heartbeat=args.heartbeat,
        poll=args.poll, grace=args.grace, kill_grace=args.kill_grace, burst=args.burst,
        allow_paths=list(args.allow_path), user=args.user, group=args.group,
        metrics_port=args.metrics_port, metrics_host=args.metrics_host,
        defaults=Defaults(max_attempts=args.max_attempts, backoff=args.backoff,
                          result_ttl=args.result_ttl))


def cmd_supervise(args: argparse.Namespace) -> int:
    if args.max_jobs_per_worker is not None and args.max_jobs_per_worker < 1:
        print("dtq: --max-jobs-per-worker must be 1 or more (leave it out for no limit)",
              file=sys.stderr)
        return 2
    settings = settings_from_args(args)
    problem = _check_identity(settings.user, settings.group)
    if problem:
        print(f"dtq: {problem}", file=sys.stderr)
        return 2
    for path in settings.allow_paths:
        if not path.is_dir():
            print(f"dtq: --allow-path {path}: not a directory", file=sys.stderr)
            return 2
    options = {}
    for item in args.plugin_option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            print(f"dtq: --plugin-option {item!r}: expected KEY=VALUE", file=sys.stderr)
            return 2
        options[key.strip()] = _option_value(value.strip())
    settings.plugin_options = options
    plugins = load_plugins(settings.plugins,
                           entry_point_group=ENTRY_POINT_GROUP if settings.entry_points else None,
                           config=plugin_config(settings))
    if not plugins:
        print("dtq: no plugins to run (install one or pass --plugin module:Class)", file=sys.stderr)
        return 2
    engine = RedisEngine(args.redis_url, defaults=settings.defaults, socket_timeout=5.0)
    return Supervisor(settings, engine, plugins).run()


def _option_value(text: str) -> Any:
    """Numbers and booleans as such, anything else as the string it is."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _check_identity(user: str | None, group: str | None) -> str | None:
    """A clear message for --user/--group that cannot work, before any fork."""
    import grp
    import os
    import pwd

    try:
        if user:
            pwd.getpwnam(user)
    except KeyError:
        return f"--user {user}: no such user"
    try:
        if group:
            grp.getgrnam(group)
    except KeyError:
        return f"--group {group}: no such group"
    if (user or group) and os.geteuid() != 0:
        return "--user/--group need the supervisor to run as root"
    return None
