"""`dtq supervisors` against a real running supervisor: the table's pool, busy-worker and
heartbeat-age columns say what the supervisor is doing, read by the table's header."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from supervisor_proc import dtq_env
from waiting import wait_until

from dtq import Queue
from dtq.engine.redis_engine import RedisEngine

pytestmark = [pytest.mark.redis, pytest.mark.process]

REPO = Path(__file__).resolve().parents[2]
NAME = "box-listing"


def supervisors_table(url: str) -> dict[str, dict[str, str]]:
    """`dtq supervisors` as {name: {column: cell}}, the columns named by its header line."""
    out = subprocess.run([sys.executable, "-m", "dtq", "supervisors", "--redis-url", url],
                         capture_output=True, text=True, timeout=30, cwd=REPO, env=dtq_env())
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()
    columns = header.split()
    assert columns[:2] == ["NAME", "HOST"] and {"POOL", "BUSY", "BEAT"} <= set(columns), header
    table = {}
    for line in rows:
        cells = line.split()
        assert len(cells) == len(columns), f"a row that does not fit the header: {line!r}"
        table[cells[0]] = dict(zip(columns, cells, strict=True))
    return table


def beat_age(cell: str) -> float:
    assert cell.endswith("s"), cell
    return float(cell[:-1])


def registered(url: str, name: str):
    return next((s for s in RedisEngine(url).supervisors() if s.name == name), None)


def test_busy_workers_and_heartbeat_age_of_a_running_supervisor(start_supervisor, redis_url: str):
    sup = start_supervisor("--workers", "2", "--name", NAME, "--grace", "1", plugins=("Noop", "Sleep"))
    wait_until(lambda: len(sup.worker_pids()) == 2 and registered(redis_url, NAME),
               timeout=15, message="two workers forked and the supervisor registered")
    # Run long enough that an age counted from the start (not the last beat) would show.
    started = registered(redis_url, NAME).started_at
    wait_until(lambda: time.time() - started > 1.5, timeout=5, interval=0.1, message="1.5 s up")

    idle = supervisors_table(redis_url)
    assert list(idle) == [NAME]
    row = idle[NAME]
    assert (row["PID"], row["STATE"], row["POOL"], row["BUSY"], row["QUEUES"]) == \
        (str(sup.pid), "running", "2", "0", "default")
    assert 0.0 <= beat_age(row["BEAT"]) < 1.0  # --heartbeat 0.2: the last beat is recent

    queue = Queue(redis_url)
    job = queue.enqueue("sleep", {"seconds": 60}, timeout=120)
    wait_until(lambda: queue.status(job).state == "running", timeout=10, message="the job started")
    wait_until(lambda: registered(redis_url, NAME).busy == 1, timeout=10,
               message="a heartbeat counting the busy worker")
    busy = supervisors_table(redis_url)[NAME]
    assert (busy["POOL"], busy["BUSY"], busy["STATE"]) == ("2", "1", "running")
    assert 0.0 <= beat_age(busy["BEAT"]) < 1.0

    second = queue.enqueue("sleep", {"seconds": 60}, timeout=120)
    wait_until(lambda: queue.status(second).state == "running", timeout=10, message="job 2 started")
    wait_until(lambda: registered(redis_url, NAME).busy == 2, timeout=10, message="two busy")
    assert supervisors_table(redis_url)[NAME]["BUSY"] == "2"
    queue.cancel(job)
    wait_until(lambda: registered(redis_url, NAME).busy == 1, timeout=10, message="one busy again")
    assert supervisors_table(redis_url)[NAME]["BUSY"] == "1"
    queue.cancel(second)
    wait_until(lambda: registered(redis_url, NAME).busy == 0, timeout=10, message="none busy again")
    assert supervisors_table(redis_url)[NAME]["BUSY"] == "0"
