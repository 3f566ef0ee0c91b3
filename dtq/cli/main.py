"""The `dtq` command: argument parsing and error reporting; each command lives in its module.

Only the module of the command being run is imported: `dtq supervise` does not load
the admin views, and every command starts ~50 ms sooner than with all of them.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import Any, NoReturn

from dtq.cli.logs import setup_logging
from dtq.errors import EngineUnavailable, InvalidJob, JobNotFound, PluginError

# Which module registers which command (tests check this against the modules themselves).
COMMAND_MODULES = {
    "enqueue": "producer", "status": "producer", "result": "producer", "cancel": "producer",
    "supervise": "supervise",
    "supervisors": "operators", "scale": "operators",
    "montage": "montage",
    "stats": "admin", "dead": "admin", "pause": "admin", "resume": "admin", "top": "admin",
}
MODULE_ORDER = ("producer", "supervise", "operators", "montage", "admin")  # as `dtq --help` lists


class _SilentParser(argparse.ArgumentParser):
    """Finds the command without printing: the full parser reports any mistake."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def _add_global_options(parser: argparse.ArgumentParser, *, after_command: bool = False) -> None:
    """--redis-url, --log-level, --log-format: before the command, or (``after_command``) after it.

    After the command they default to SUPPRESS, so that a value given before the command
    stands unless it is given again after it (the later one wins)."""
    if after_command:
        keep = {"default": argparse.SUPPRESS}
        parser = parser.add_argument_group("global options (also accepted before the command)")
    else:
        keep = {}
    parser.add_argument("--redis-url", metavar="URL", help="Redis URL (default: $DTQ_REDIS_URL, else "
                        "redis://localhost:6379/0); may carry a password, an ACL user, rediss://",
                        **keep)
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                        **(keep or {"default": "info"}))
    parser.add_argument("--log-format", choices=["text", "json"],
                        help="json: one object per line with job_id, plugin, attempt, duration, reason",
                        **(keep or {"default": "text"}))


class _CommandParser(argparse.ArgumentParser):
    """A command's parser (and its subcommands'): takes the global options after the command too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_global_options(self, after_command=True)


def _top_level_parser(cls: type[argparse.ArgumentParser] = argparse.ArgumentParser,
                      add_help: bool = True) -> argparse.ArgumentParser:
    parser = cls(prog="dtq", description="dtq: a distributed task queue for CPU-heavy work.",
                 add_help=add_help)
    _add_global_options(parser)
    return parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or (given a known command) one that holds only that command's module."""
    parser = _top_level_parser()
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                     parser_class=_CommandParser)
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else MODULE_ORDER
    for name in modules:
        importlib.import_module(f"dtq.cli.{name}").register(commands)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command named in argv, found without importing any command module."""
    pre = _top_level_parser(_SilentParser, add_help=False)
    pre.add_argument("command", nargs="?")
    try:
        known, _ = pre.parse_known_args(argv)
    except ValueError:
        return None
    return known.command


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
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


def run() -> NoReturn:
    """The console script: main(), then exit without tearing the interpreter down.

    By then every command has finished its work (a supervisor has given back its jobs
    and left the registry); atexit handlers, logging and the standard streams are still
    flushed, but freeing every module and object (~60-80 ms with redis-py loaded) is
    left to the kernel. If a plugin left a thread running, the usual exit waits for it."""
    try:
        code = main()
    except SystemExit as exc:  # argparse's --help and usage errors; as Python treats them
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    run()
