"""A short run of scripts/chaos.py: a few hundred jobs while workers, supervisors and Redis
are killed; nothing may be lost, no result may be stale, every duplicate is explained."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.process, pytest.mark.timeout(120)]


def run_chaos(args: list[str], timeout: float) -> tuple[int, str]:
    """Run the script in its own session; on a timeout, Ctrl-C it so that it cleans up."""
    env = {k: v for k, v in os.environ.items() if k != "DTQ_REDIS_URL"}
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "chaos.py"), *args], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        pytest.fail(f"chaos.py did not finish in {timeout} s:\n{out[-4000:]}")
    return proc.returncode, out


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
def test_short_chaos_run_loses_nothing(tmp_path):
    report_path = tmp_path / "report.json"
    code, out = run_chaos(["--jobs", "400", "--fail-jobs", "5", "--max-ms", "250", "--lease", "1",
                           "--min-gap", "0.2", "--max-gap", "0.6", "--max-seconds", "70",
                           "--json", str(report_path)], timeout=100)
    assert code == 0, out[-4000:]
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["finished"]
    assert report["lost"] == 0 and not report["stale"] and not report["held"]
    assert report["unexplained"] == [] and report["leftovers"] == []
    assert all(report["actions"][kind] >= 1 for kind in
               ("worker_kill", "supervisor_kill", "stop", "redis_restart")), report["actions"]
    assert report["stats"]["dead"] == 5 and report["stats"]["done"] == 400
