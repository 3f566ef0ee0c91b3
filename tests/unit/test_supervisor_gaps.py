"""Gaps in the supervisor's and the worker's tests: kills reach a worker's whole process
group, and the plugin contract as a real forked worker keeps it (results that are not
JSON, ctx.logger, the figures of an attempt)."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import select
import signal
import time

import pytest
from fakes import SIGKILL, SIGTERM, FakeOS
from forked_worker import ForkedWorker, reap

from dtq.job import build_job
from dtq.plugin import Plugin
from dtq.supervisor.messages import FrameReader
from dtq.supervisor.worker import prepare_child

_MIB = 2**20
NOT_JSON = "plugin returned a result that is not JSON: "


# --- kills go to the process group -----------------------------------------------------

def frames_sent(fake_os: FakeOS, pid: int) -> bytes:
    """The bytes the supervisor has written to the worker's job pipe so far."""
    fd = fake_os.child_ends[pid][0]
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return b""


def start_one(world, **job_options):
    """A one-worker supervisor that has sent its worker one job: (sup, pid, job frame, job)."""
    fake_os, engine, make = world
    sup = make()
    job = build_job("noop", {"n": 1}, options=job_options)
    engine.enqueue(job)
    sup.tick()  # forks the worker
    sup.tick()  # claims and sends the job
    (pid,) = sup.pool.workers
    frame = frames_sent(fake_os, pid)
    (sent,) = FrameReader().feed(frame)
    assert sent["id"] == job.id
    return sup, pid, frame, job


def test_a_timeout_signals_the_workers_process_group_softly_then_hard(world):
    """Whatever the job started (a shell, a converter) dies with it: both the soft signal
    and the kill after the grace go to the group, never to the worker's pid alone."""
    fake_os, engine, _ = world
    sup, pid, _, job = start_one(world, timeout=5)
    fake_os.advance(5.1)
    sup.tick()
    assert fake_os.calls == [("killpg", pid, SIGTERM)]
    assert engine.status(job.id, "default").error == "timeout after 5 s"
    fake_os.advance(sup.settings.kill_grace + 0.1)
    sup.tick()
    assert fake_os.calls == [("killpg", pid, SIGTERM), ("killpg", pid, SIGKILL)]
    sup.tick()
    assert len(fake_os.calls) == 2  # the hard kill is sent once


def test_a_memory_breach_kills_the_workers_process_group(world):
    fake_os, engine, _ = world
    sup, pid, _, job = start_one(world, memory_limit="100M")
    fake_os.rss[pid] = 250 * _MIB
    fake_os.advance(0.2)
    sup.tick()
    assert fake_os.calls == [("killpg", pid, SIGKILL)]
    assert engine.status(job.id, "default").error.startswith("memory limit exceeded")


def test_a_worker_leads_its_own_process_group():
    """killpg(worker pid) reaches the worker's group only because prepare_child (run right
    after the fork) makes the worker a group leader, apart from the supervisor's group."""
    r, w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            signal.setitimer(signal.ITIMER_REAL, 0)
            prepare_child((w,), parent)
            os.write(w, f"{os.getpid()} {os.getpgrp()}".encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert select.select([r], [], [], 10)[0], "the child wrote nothing in 10 s"
        child, group = map(int, os.read(r, 100).split())
    finally:
        os.close(r)
        reap(pid)
    assert child == pid and group == pid and group != os.getpgrp()


# --- a real worker in a forked child ---------------------------------------------------

@pytest.fixture
def real_worker():
    made: list[ForkedWorker] = []

    def make(plugins: dict[str, Plugin], log_format: str | None = None) -> ForkedWorker:
        made.append(ForkedWorker(plugins, log_format=log_format))
        return made[-1]

    yield make
    for worker in made:
        worker.close()


class _Echo(Plugin):
    name = "echo"

    def process(self, data, ctx):
        return data


class _Opaque:
    pass


class _Returns(Plugin):
    """Returns what data['kind'] names: values json.dumps refuses."""

    name = "returns"
    VALUES = {"set": lambda: {1, 2}, "object": _Opaque, "nan": lambda: math.nan,
              "tuple_key": lambda: {(1, 2): "x"}, "bytes": lambda: b"raw", "deep": lambda: _deep(100_000)}

    def process(self, data, ctx):
        return self.VALUES[data["kind"]]()


@pytest.mark.parametrize(("kind", "says"), [
    ("set", "Object of type set is not JSON serializable"),
    ("object", "Object of type _Opaque is not JSON serializable"),
    ("bytes", "Object of type bytes is not JSON serializable"),
    ("nan", "Out of range float values are not JSON compliant"),
    ("tuple_key", "keys must be str, int, float, bool or None, not tuple"),
    ("deep", "nested too deeply"),  # RecursionError in the encoder: unfit for good too
])
def test_a_result_that_is_not_json_fails_the_job_for_good_and_the_worker_goes_on(
        real_worker, kind: str, says: str):
    worker = real_worker({"returns": _Returns(), "echo": _Echo()})
    bad, after = worker.run(("returns", {"kind": kind}), ("echo", {"still": "here"}))
    assert (bad["t"], bad["id"], bad.get("perm")) == ("err", "j0", True)
    assert bad["e"].startswith(NOT_JSON) and says in bad["e"], bad["e"]
    assert "r" not in bad
    assert (after["t"], after["id"], json.loads(after["r"])) == ("ok", "j1", {"still": "here"})
    code, _ = worker.finish()
    assert code == 0


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


class _SetForNoop(Plugin):
    name = "noop"

    def process(self, data, ctx):
        return {"seen": set(data)}


def test_the_supervisor_makes_a_result_that_is_not_json_dead_without_retries(world, real_worker):
    """End to end in one process: the supervisor's own job frame goes to a real worker,
    whose outcome frame goes back to the supervisor. Attempts are left, yet none is made."""
    fake_os, engine, _ = world
    sup, pid, frame, job = start_one(world, max_attempts=3)
    worker = real_worker({"noop": _SetForNoop()})
    worker.send(frame)
    worker.outcomes(1)
    os.write(fake_os.child_ends[pid][1], bytes(worker.raw))
    sup.tick()
    status = engine.status(job.id, "default")
    assert status.state == "dead" and status.failures == 1 and len(status.history) == 1
    assert status.error == NOT_JSON + "Object of type set is not JSON serializable"
    assert fake_os.calls == []  # a refused result is an outcome, not a reason to kill
    assert worker.finish()[0] == 0


class _Chatter(Plugin):
    name = "chatter"

    def process(self, data, ctx):
        ctx.logger.info("converting %s", data["file"])
        ctx.logger.debug("too fine to show at level info")
        ctx.logger.warning("%s looks odd", data["file"])
        return "converted"


PLAIN_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<level>[A-Z]+) (?P<name>\S+): "
                        r"(?P<msg>.*)$")


def test_ctx_logger_lines_reach_the_workers_stderr_under_the_plugins_name(real_worker):
    worker = real_worker({"chatter": _Chatter()}, log_format="plain")
    (outcome,) = worker.run(("chatter", {"file": "a.png"}))
    assert outcome["t"] == "ok" and json.loads(outcome["r"]) == "converted"  # the pipe stays clean
    code, err = worker.finish()
    assert code == 0
    lines = [m.groupdict() for m in map(PLAIN_LINE.match, err.splitlines()) if m]
    assert lines == [{"level": "INFO", "name": "dtq.plugin.chatter", "msg": "converting a.png"},
                     {"level": "WARNING", "name": "dtq.plugin.chatter", "msg": "a.png looks odd"}], err


def test_ctx_logger_lines_in_json_name_the_plugin(real_worker):
    worker = real_worker({"chatter": _Chatter(), "echo": _Echo()}, log_format="json")
    worker.run(("echo", {}), ("chatter", {"file": "b.png"}))
    code, err = worker.finish()
    assert code == 0
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert [(r["level"], r["logger"], r["msg"]) for r in records] == [
        ("info", "dtq.plugin.chatter", "converting b.png"),
        ("warning", "dtq.plugin.chatter", "b.png looks odd")], err


def test_ctx_logger_is_the_plugins_own_logger(real_worker):
    """What the worker hands a plugin is logging.getLogger('dtq.plugin.<name>'): handlers
    or levels an operator sets on that name apply to it."""

    class _Whose(Plugin):
        name = "whose"

        def process(self, data, ctx):
            return [ctx.logger.name, ctx.logger is logging.getLogger("dtq.plugin.whose")]

    worker = real_worker({"whose": _Whose()})
    (outcome,) = worker.run(("whose", {}))
    assert json.loads(outcome["r"]) == ["dtq.plugin.whose", True]
    assert worker.finish()[0] == 0


class _Nap(Plugin):
    """Sleeps data['seconds'], then returns or (data['fail']) raises."""

    name = "nap"

    def process(self, data, ctx):
        time.sleep(data["seconds"])
        if data.get("fail"):
            raise RuntimeError("woke up cross")
        return "rested"


@pytest.mark.parametrize("fail", [False, True], ids=["done", "failed"])
def test_an_attempt_longer_than_5_ms_reports_plausible_figures(real_worker, fail: bool):
    worker = real_worker({"nap": _Nap()})
    before = time.time()
    (outcome,) = worker.run(("nap", {"seconds": 0.05, "fail": fail}))
    after = time.time()
    assert outcome["t"] == ("err" if fail else "ok"), outcome
    wall, cpu, rss = float(outcome["wall"]), float(outcome["cpu"]), int(outcome["rss"])
    assert 0.05 <= wall < after - before + 0.01
    assert 0.0 <= cpu <= wall + 0.02  # os.times() counts in clock ticks: a tick or two of slack
    assert _MIB < rss < 10 * 2**30
    if not fail:
        started, finished = float(outcome["started"]), float(outcome["finished"])
        assert before - 0.01 <= started < finished <= after + 0.01
        assert abs((finished - started) - wall) < 0.02
    assert worker.finish()[0] == 0


class _Burst(Plugin):
    """Touches data['mib'] MiB, frees it, then naps: its peak is past by the time it returns."""

    name = "burst"

    def process(self, data, ctx):
        block = bytearray(data["mib"] * _MIB)
        for i in range(0, len(block), 4096):  # every page resident
            block[i] = 1
        del block
        time.sleep(0.02)
        return "done"


def test_the_reported_peak_is_each_jobs_own_high_water_mark(real_worker):
    """Memory a job took and gave back before returning counts in its peak, and the next
    job's peak starts afresh."""
    worker = real_worker({"burst": _Burst(), "nap": _Nap()})
    big, small = worker.run(("burst", {"mib": 200}), ("nap", {"seconds": 0.02}))
    assert int(big["rss"]) >= 200 * _MIB
    # the worker is a fork of this test process, whose own size is in both figures
    assert _MIB < int(small["rss"]) < int(big["rss"]) - 150 * _MIB
    assert worker.finish()[0] == 0


def test_where_the_peak_cannot_be_reset_the_resident_size_is_reported(monkeypatch):
    """A worker run as another user (--user) may not write its clear_refs: its high-water
    mark would then be its whole life's, so the resident size now is reported instead."""
    from dtq.supervisor import worker as worker_module

    real_open = open

    def refusing_open(path, *args, **kwargs):
        if path == worker_module._CLEAR_REFS:
            raise PermissionError(13, "Permission denied", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(worker_module, "open", refusing_open, raising=False)
    monkeypatch.setattr(worker_module, "_peak_resets", True)
    block = bytearray(150 * _MIB)
    for i in range(0, len(block), 4096):
        block[i] = 1
    del block
    now = worker_module._peak_rss()
    assert worker_module._peak_resets is False
    with real_open("/proc/self/status", "rb") as f:
        hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith(b"VmHWM:"))
    assert _MIB < now < hwm - 100 * _MIB  # what is resident now, not the high-water mark
