"""The `dtq` command: argument parsing and error reporting; each command lives in its module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from dtq.cli import admin, montage, operators, producer, supervise
from dtq.cli.logs import setup_logging
from dtq.errors import EngineUnavailable, InvalidJob, JobNotFound, PluginError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dtq", description="dtq: a distributed task queue for CPU-heavy work.")
    parser.add_argument("--redis-url", help="Redis URL (default: $DTQ_REDIS_URL, else "
                        "redis://localhost:6379/0); may carry a password, an ACL user, rediss://")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="json: one object per line with job_id, plugin, attempt, duration, reason")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    producer.register(commands)
    supervise.register(commands)
    operators.register(commands)
    montage.register(commands)
    admin.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return int(args.run(args) or 0)
    except EngineUnavailable as exc:
        print(f"dtq: {exc}", file=sys.stderr)
        return 2
    except (InvalidJob, PluginError) as exc:
        print(f"dtq: {exc}", file=sys.stderr)
        return 2
    except JobNotFound as exc:
        print(f"dtq: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
