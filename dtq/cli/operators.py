"""Operator commands: supervisors, scale."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dtq.engine.redis_engine import RedisEngine


def register(commands: Any) -> None:
    p = commands.add_parser("supervisors", help="list the supervisors and their pools")
    p.set_defaults(run=cmd_supervisors)
    p = commands.add_parser("scale", help="set a running supervisor's pool size")
    p.add_argument("workers", type=int)
    p.add_argument("--name", help="the supervisor (default: the only live one)")
    p.set_defaults(run=cmd_scale)


def cmd_supervisors(args: argparse.Namespace) -> int:
    sups = RedisEngine(args.redis_url).supervisors()
    if not sups:
        print("no supervisors registered")
        return 0
    print(f"{'NAME':<28} {'HOST':<16} {'PID':>7} {'POOL':>5} {'BUSY':>5} {'BEAT':>7}  QUEUES")
    for s in sups:
        print(f"{s.name[:28]:<28} {s.host[:16]:<16} {s.pid:>7} {s.workers:>5} {s.busy:>5} "
              f"{s.heartbeat_age:>6.1f}s  {','.join(s.queues)}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    if args.workers < 0:
        print("dtq: the pool size must be 0 or more", file=sys.stderr)
        return 2
    engine = RedisEngine(args.redis_url)
    name = args.name
    if name is None:
        live = [s.name for s in engine.supervisors() if s.heartbeat_age < 120]
        if len(live) != 1:
            print(f"dtq: {len(live)} live supervisors; say which with --name "
                  f"({', '.join(live) or 'none'})", file=sys.stderr)
            return 2
        name = live[0]
    if not engine.send_control(name, {"workers": args.workers}):
        print(f"dtq: no supervisor named {name!r} is registered", file=sys.stderr)
        return 1
    print(f"supervisor {name}: pool size set to {args.workers}")
    return 0
