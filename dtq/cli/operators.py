"""Operator commands: supervisors, scale."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dtq.engine.base import SupervisorInfo
from dtq.engine.redis_engine import RedisEngine

# A supervisor renews its job leases at each heartbeat, and its lease is three heartbeat
# periods unless told otherwise: three missed beats and its jobs are up for recovery, so
# it no longer counts as live. The floor keeps a busy box with millisecond heartbeats
# (tests) from flickering in and out of the list.
MISSED_BEATS = 3
MIN_STALE_AFTER = 5.0  # seconds
DEFAULT_HEARTBEAT = 10.0  # seconds: --lease 30 / 3, for an entry that does not say


def register(commands: Any) -> None:
    p = commands.add_parser("supervisors", help="list the live supervisors and their pools")
    p.add_argument("--all", action="store_true",
                   help="also list stale registry entries (no heartbeat for over "
                        f"{MISSED_BEATS} periods: stopped, crashed or cut off)")
    p.set_defaults(run=cmd_supervisors)
    p = commands.add_parser("scale", help="set a running supervisor's pool size")
    p.add_argument("workers", type=int)
    p.add_argument("--name", help="the supervisor (default: the only live one)")
    p.set_defaults(run=cmd_scale)


def stale_after(sup: SupervisorInfo) -> float:
    """Seconds without a heartbeat after which this supervisor is not live."""
    try:
        period = float(sup.extra.get("heartbeat") or DEFAULT_HEARTBEAT)
    except (TypeError, ValueError):
        period = DEFAULT_HEARTBEAT
    return max(MIN_STALE_AFTER, MISSED_BEATS * period)


def is_live(sup: SupervisorInfo) -> bool:
    """Its heartbeat is recent, and its details have not expired (they outlive a live one's beats)."""
    return bool(sup.pid) and sup.heartbeat_age <= stale_after(sup)


def cmd_supervisors(args: argparse.Namespace) -> int:
    sups = RedisEngine(args.redis_url).supervisors()
    shown = [s for s in sups if args.all or is_live(s)]
    hidden = len(sups) - len(shown)
    if not shown:
        print("no live supervisors" if sups else "no supervisors registered")
    else:
        print(f"{'NAME':<28} {'HOST':<16} {'PID':>7} {'STATE':<9} {'POOL':>5} {'BUSY':>5} "
              f"{'BEAT':>7}  QUEUES")
    for s in shown:
        state = str(s.extra.get("state") or "?") if is_live(s) else "stale"
        print(f"{s.name[:28]:<28} {(s.host or '-')[:16]:<16} {s.pid or '-':>7} {state[:9]:<9} "
              f"{s.workers:>5} {s.busy:>5} {s.heartbeat_age:>6.1f}s  {','.join(s.queues)}")
    if hidden:
        print(f"({hidden} stale {'entry' if hidden == 1 else 'entries'} not shown: "
              "no heartbeat for too long; --all lists them)")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    if args.workers < 0:
        print("dtq: the pool size must be 0 or more", file=sys.stderr)
        return 2
    engine = RedisEngine(args.redis_url)
    name = args.name
    if name is None:
        live = [s.name for s in engine.supervisors() if is_live(s)]
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
