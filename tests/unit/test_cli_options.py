"""Global options before or after the command, and the liveness rule of `dtq supervisors`."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from dtq.cli.main import _command_in, build_parser, main
from dtq.cli.operators import MIN_STALE_AFTER, is_live, stale_after
from dtq.cli.supervise import cmd_supervise
from dtq.engine.base import SupervisorInfo

REPO = Path(__file__).resolve().parents[2]
URL_A, URL_B = "redis://a.example:6379/0", "redis://b.example:6379/1"


def parse(*argv: str) -> argparse.Namespace:
    """As `main` does: find the command, build only its parser, parse."""
    return build_parser(_command_in(argv)).parse_args(argv)


COMMANDS = [("supervise",), ("scale", "2"), ("stats",), ("dead", "list"), ("supervisors",)]


@pytest.mark.parametrize("command", COMMANDS)
def test_the_redis_url_is_taken_before_or_after_the_command(command: tuple[str, ...]) -> None:
    assert _command_in(["--redis-url", URL_A, *command]) == command[0]
    assert _command_in([*command, "--redis-url", URL_A]) == command[0]
    assert parse("--redis-url", URL_A, *command).redis_url == URL_A
    assert parse(*command, "--redis-url", URL_A).redis_url == URL_A
    assert parse(f"--redis-url={URL_A}", *command, f"--redis-url={URL_B}").redis_url == URL_B
    assert parse("--redis-url", URL_A, *command, "--redis-url", URL_B).redis_url == URL_B
    assert parse(*command).redis_url is None


@pytest.mark.parametrize("command", COMMANDS)
def test_log_options_too_and_their_defaults_hold(command: tuple[str, ...]) -> None:
    args = parse(*command)
    assert (args.log_level, args.log_format) == ("info", "text")
    args = parse("--log-level", "debug", *command, "--log-format", "json")
    assert (args.log_level, args.log_format) == ("debug", "json")
    args = parse("--log-level", "debug", "--log-format", "json", *command, "--log-level", "error")
    assert (args.log_level, args.log_format) == ("error", "json")


def test_the_subcommand_value_goes_with_its_own_options() -> None:
    args = parse("scale", "--redis-url", URL_B, "3", "--name", "box")
    assert (args.redis_url, args.workers, args.name) == (URL_B, 3, "box")
    args = parse("dead", "--redis-url", URL_A, "list", "--limit", "5")
    assert (args.redis_url, args.limit) == (URL_A, 5)
    args = parse("dead", "--redis-url", URL_A, "list", "--redis-url", URL_B)
    assert args.redis_url == URL_B


def test_a_bad_value_after_the_command_is_reported_by_that_command(capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("supervise", "--log-level", "loud")
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "dtq supervise: error" in err and "invalid choice: 'loud'" in err


def test_the_url_after_the_command_is_the_one_connected_to() -> None:
    # port 1 refuses at once: the error names the address that was used
    out = subprocess.run([sys.executable, "-m", "dtq", "--redis-url", "redis://127.0.0.1:2/0",
                          "stats", "--redis-url", "redis://127.0.0.1:1/0"],
                         capture_output=True, text=True, timeout=30, cwd=REPO)
    assert out.returncode == 2 and "127.0.0.1:1 " in out.stderr, out.stderr


def test_command_help_lists_the_global_options(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["supervise", "--help"])
    out = capsys.readouterr().out
    assert "also accepted before the command" in out and "--redis-url URL" in out


@pytest.mark.parametrize("n", ["0", "-3"])
def test_max_jobs_per_worker_below_one_is_refused(n: str, capsys) -> None:
    args = parse("supervise", "--no-entry-points", "--max-jobs-per-worker", n)
    assert cmd_supervise(args) == 2
    assert "--max-jobs-per-worker must be 1 or more" in capsys.readouterr().err


def sup(age: float, heartbeat: float | None = 10.0, pid: int = 42) -> SupervisorInfo:
    extra = {} if heartbeat is None else {"heartbeat": heartbeat, "state": "running"}
    return SupervisorInfo(name="s", host="h", pid=pid, heartbeat_age=age, extra=extra)


def test_live_means_fewer_than_three_missed_heartbeats() -> None:
    assert is_live(sup(29.0)) and not is_live(sup(31.0))  # default lease: 3 heartbeats
    assert is_live(sup(170.0, heartbeat=60.0)) and not is_live(sup(181.0, heartbeat=60.0))
    assert stale_after(sup(0, heartbeat=0.2)) == MIN_STALE_AFTER  # millisecond beats: a floor
    assert is_live(sup(4.0, heartbeat=0.2)) and not is_live(sup(6.0, heartbeat=0.2))
    assert is_live(sup(20.0, heartbeat=None)) and not is_live(sup(40.0, heartbeat=None))


def test_an_entry_whose_details_expired_is_not_live() -> None:
    assert not is_live(sup(0.5, heartbeat=None, pid=0))
