"""The `dtq` command imports only the module of the command it runs, and exits cleanly
without the interpreter's teardown."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from dtq.cli.main import COMMAND_MODULES, MODULE_ORDER, _command_in, build_parser

REPO = Path(__file__).resolve().parents[2]


def _registered_by(module: str) -> set[str]:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    importlib.import_module(f"dtq.cli.{module}").register(commands)
    return set(commands.choices)


def test_the_table_names_every_command_of_every_module() -> None:
    for module in MODULE_ORDER:
        table = {cmd for cmd, owner in COMMAND_MODULES.items() if owner == module}
        assert table == _registered_by(module), module
    full = build_parser()
    sub = next(a for a in full._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == set(COMMAND_MODULES)


@pytest.mark.parametrize(("argv", "command"), [
    (["supervise", "--workers", "2"], "supervise"),
    (["--redis-url", "status", "supervise"], "supervise"),  # an option's value is not the command
    (["--log-level=debug", "stats", "--json"], "stats"),
    (["--log-level", "bogus", "status", "x"], None),  # the full parser reports the mistake
    ([], None),
    (["-h"], None),
])
def test_the_command_is_found_before_any_command_module_is_imported(argv: list[str],
                                                                      command: str | None) -> None:
    assert _command_in(argv) == command


def _python(code: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=30, cwd=REPO)


IMPORTED = """
import sys
from dtq.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(sorted(m for m in sys.modules if m.startswith(("dtq.cli.", "prometheus_client", "curses"))))
"""


def test_supervise_loads_neither_the_admin_views_nor_prometheus() -> None:
    out = _python(IMPORTED, "supervise", "--help")
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.strip().splitlines()[-1]
    assert "'dtq.cli.supervise'" in loaded
    for absent in ("dtq.cli.admin", "dtq.cli.top", "prometheus_client", "curses"):
        assert f"'{absent}'" not in loaded


def test_an_admin_command_loads_its_module() -> None:
    loaded = _python(IMPORTED, "stats", "--help").stdout.strip().splitlines()[-1]
    assert "'dtq.cli.admin'" in loaded and "'dtq.cli.supervise'" not in loaded


def test_run_flushes_output_and_runs_exit_handlers() -> None:
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('exit handler ran'))\n"
            "sys.argv = ['dtq', *sys.argv[1:]]\n"
            "from dtq.cli.main import run\n"
            "run()\n")
    helped = _python(code, "--help")
    assert helped.returncode == 0
    assert "usage: dtq" in helped.stdout and helped.stdout.rstrip().endswith("exit handler ran")
    wrong = _python(code, "nosuch")
    assert wrong.returncode == 2
    assert "invalid choice: 'nosuch'" in wrong.stderr and "exit handler ran" in wrong.stdout


def test_a_thread_left_running_is_waited_for_as_usual() -> None:
    code = ("import sys, threading, time\n"
            "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done'))).start()\n"
            "sys.argv = ['dtq', '--help']\n"
            "from dtq.cli.main import run\n"
            "run()\n")
    out = _python(code)
    assert out.returncode == 0 and "thread done" in out.stdout


def test_python_dash_m_dtq_exits_with_the_commands_code() -> None:
    out = subprocess.run([sys.executable, "-m", "dtq", "status"], capture_output=True, text=True,
                         timeout=30, cwd=REPO)
    assert out.returncode == 2 and "usage: dtq status" in out.stderr
    out = subprocess.run([sys.executable, "-m", "dtq", "enqueue"], capture_output=True, text=True,
                         timeout=30, cwd=REPO)
    assert out.returncode == 2 and out.stderr.startswith("dtq: PLUGIN: name the plugin")


def test_global_options_after_the_command_still_load_only_its_module() -> None:
    out = _python(IMPORTED, "supervise", "--redis-url", "redis://x:1/0", "--log-level", "debug",
                  "--help")
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.strip().splitlines()[-1]
    assert "'dtq.cli.supervise'" in loaded and "'dtq.cli.admin'" not in loaded
