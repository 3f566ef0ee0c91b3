"""Pipe framing and exit decoding: what the supervisor reads from its workers."""

from __future__ import annotations

import json
import os
import signal
import time
from contextlib import contextmanager

import pytest
from forked_worker import ForkedWorker
from waiting import wait_until

from dtq.plugin import Plugin
from dtq.supervisor.exits import describe_exit, format_bytes
from dtq.supervisor.messages import HEADER, FrameError, FrameReader, encode, encode_done, encode_job
from dtq.supervisor.worker import Worker


def test_frames_split_anywhere_are_reassembled():
    data = encode({"t": "ok", "id": "a"}) + encode({"t": "err", "id": "b", "e": "x"})
    reader = FrameReader()
    got = []
    for i in range(len(data)):
        got += reader.feed(data[i:i + 1])
    assert [m["id"] for m in got] == ["a", "b"] and reader.pending == 0


def test_job_frames_splice_the_data_json_verbatim():
    frame = encode_job("j1", "q", 3, "noop", '{"k":[1,2,{"x":null}]}', 5.0, None)
    (msg,) = FrameReader().feed(frame)
    assert msg == {"t": "job", "id": "j1", "q": "q", "a": 3, "p": "noop", "timeout": 5.0,
                   "mem": None, "d": {"k": [1, 2, {"x": None}]}}


@pytest.mark.parametrize("garbage", [
    HEADER.pack(5) + b"nope!",                # not JSON
    HEADER.pack(4) + b"[1 ]",                 # JSON, not a message
    HEADER.pack(2**31) + b"x",                # absurd length
])
def test_garbage_from_a_worker_is_a_frame_error(garbage):
    with pytest.raises(FrameError):
        FrameReader().feed(garbage)


def test_nothing_but_json_crosses_the_pipe():
    with pytest.raises(TypeError):
        encode({"t": "ok", "r": object()})
    assert json.loads(encode({"t": "ok"})[HEADER.size:]) == {"t": "ok"}


@pytest.mark.parametrize("status, text", [
    (3 << 8, "exit code 3"),
    (signal.SIGSEGV, "killed by SIGSEGV"),
    (signal.SIGKILL, "killed by SIGKILL, not by dtq: out of memory?"),
    (signal.SIGABRT, "killed by SIGABRT"),
])
def test_exit_statuses_are_decoded(status, text):
    assert describe_exit(status) == text


def test_sizes_read_like_an_operator_expects():
    assert format_bytes(512) == "512 B"
    assert format_bytes(150 * 2**20) == "150.0 MiB"
    assert format_bytes(2.5 * 2**30) == "2.5 GiB"


def test_a_done_frame_carries_the_result_text_untouched():
    result = '{"text":"line one\\nline two","n":[1,2]}'
    (msg,) = FrameReader().feed(encode_done("j-1", 2, result, 1700000000.25, 1700000000.5, 0.25,
                                            0.125, 4096))
    assert msg == {"t": "ok", "id": "j-1", "a": 2, "started": "1700000000.250000",
                   "finished": "1700000000.500000", "wall": "0.250000", "cpu": "0.125000",
                   "rss": "4096", "r": result}
    (odd,) = FrameReader().feed(encode_done('we"ird', 1, "null", 1.0, 2.0, 0.0, 0.0, 0))
    assert odd["id"] == 'we"ird' and odd["r"] == "null" and odd["wall"] == "0.000000"


@pytest.mark.parametrize("meta", [
    "ok\x1fj-1\x1f2\x1f1.0\x1f2.0\x1f0.5,\"x\":1\x1f0.1\x1f10",  # JSON smuggled into a figure
    "ok\x1fj-1\x1f2\x1f1.0\x1f2.0\x1f0.5",  # figures missing
    "ok\x1fj 1\x1f2\x1f1.0\x1f2.0\x1f0.5\x1f0.1\x1f10",  # not an id dtq makes
    '{"t":"ok","id":"j-1","a":2,"wall":"0.5}","cpu":0.1}',
    '{"t":"ok","id":"j-1","a":2,"wall":NaN,"cpu":0.1}',
    '{"t":"ok","id":"j-1","a":2,"wall":0.5,"cpu":0.1,"rss":"lots"}',
])
def test_a_done_frame_with_figures_that_are_not_numbers_is_garbage(meta):
    body = (meta + "\nnull").encode()
    with pytest.raises(FrameError):
        FrameReader().feed(HEADER.pack(len(body)) + body)


class _Noop(Plugin):
    name = "noop"

    def process(self, data, ctx):
        return data


class _Recorder(Worker):
    """A worker whose writes only record the outcomes and whether each was held back."""

    def __init__(self, fd_in: int, plugins: dict[str, Plugin] | None = None) -> None:
        super().__init__(fd_in, -1, plugins or {"noop": _Noop()})
        self.holds: list[bool] = []
        self.outcomes: list[dict] = []

    def _write(self, frame: bytes, hold: bool = False) -> None:
        self.holds.append(hold)
        self.outcomes += FrameReader().feed(frame)


def test_a_batch_reports_its_outcomes_at_its_half_and_at_its_end():
    """At the half the supervisor learns there is room and sends the next batch while
    this one still runs; holding to the end made the worker wait for it."""
    r, w = os.pipe()
    try:
        os.write(w, b"".join(encode_job(f"j{i}", "q", 1, "noop", "{}", None, None) for i in range(8)))
        worker = _Recorder(r)
        for _ in range(8):
            worker._run(worker._next_message())
        assert worker.holds == [True, True, True, False, True, True, True, False]
        os.write(w, encode_job("single", "q", 1, "noop", "{}", None, None))
        worker._run(worker._next_message())
        assert worker.holds[-1] is False  # a lone job's outcome goes at once
    finally:
        os.close(r)
        os.close(w)


class _Burn(Plugin):
    name = "burn"

    def process(self, data, ctx):
        end = time.process_time() + data["cpu"]
        while time.process_time() < end:
            pass
        return None


def test_each_job_of_a_batch_is_charged_its_own_cpu():
    """The next job of a batch starts its CPU count where the last one ended (one clock
    read per job), so the burn of job 1 shows in job 1 alone; after a wait the clock is
    read afresh."""
    r, w = os.pipe()
    try:
        worker = _Recorder(r, {"burn": _Burn()})
        burns = [0.0, 0.2, 0.0]
        os.write(w, b"".join(encode_job(f"j{i}", "q", 1, "burn", json.dumps({"cpu": c}), None, None)
                             for i, c in enumerate(burns)))
        for _ in burns:
            worker._run(worker._next_message())
        time.sleep(0.05)
        os.write(w, encode_job("after-wait", "q", 1, "burn", json.dumps({"cpu": 0.0}), None, None))
        worker._run(worker._next_message())
        cpu = [float(o["cpu"]) for o in worker.outcomes]
        # os.times() counts in clock ticks (10 ms here): bounds leave room for a tick or two
        assert cpu[1] >= 0.15 and max(cpu[0], cpu[2], cpu[3]) < 0.05, cpu
    finally:
        os.close(r)
        os.close(w)


class _Gate(Plugin):
    """Blocks in a read until the test writes to its pipe: a job that runs long."""

    name = "gate"

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def process(self, data, ctx):
        return os.read(self.fd, 1).decode()


@contextmanager
def _gated_worker(gate_class: type | None = None):
    """A forked worker with a 'noop' and a 'gate' plugin (a job that runs until the test
    writes to the gate), cleaned up after."""
    gate_r, gate_w = os.pipe()
    worker = ForkedWorker({"noop": _Noop(), "gate": (gate_class or _Gate)(gate_r)}, keep_fds=(gate_r,))
    try:
        yield worker, gate_w
    finally:
        worker.close()
        os.close(gate_r)
        os.close(gate_w)


def test_a_batched_job_that_runs_long_lets_go_of_the_outcomes_and_jobs_around_it():
    """Batched outcomes wait for their neighbours at most a moment: a long job after them
    must not keep them (nor take them along if it crashes), and once it has run
    BACKLOG_SECONDS the jobs queued behind it go back unstarted, for other workers. The
    worker's shared count says which job runs meanwhile, and skips those handed back."""
    with _gated_worker() as (worker, gate_w):
        worker.send_jobs(["noop", "gate", "noop", "noop", "noop", "noop"])  # j0's outcome is held
        first = worker.outcomes(1)  # while j1 is blocked on the gate
        assert [m["id"] for m in first] == ["j0"] and worker.counter.value == 2
        worker.send_jobs(["noop", "noop"], first=6)  # the next batch, already in the pipe
        (back,) = worker.outcomes(1)
        assert back == {"t": "back", "jobs": [[f"j{i}", 1] for i in range(2, 8)]}
        assert worker.counter.value == 2  # j1 still runs: nothing behind it started
        os.write(gate_w, b"x")
        (gated,) = worker.outcomes(1)
        assert (gated["id"], gated["r"]) == ("j1", '"x"')
        worker.send_jobs(["noop"], first=8)  # what the supervisor sends next runs as usual
        (after,) = worker.outcomes(1)
        assert after["id"] == "j8" and worker.counter.value == 3
        assert worker.finish()[0] == 0


def test_jobs_sent_after_a_batch_whose_last_job_runs_long_go_back_too():
    """The supervisor sends the next batch while a batch runs; if the batch's last job then
    runs long, what came in the pipe behind it is handed back, unread until then."""
    with _gated_worker() as (worker, gate_w):
        worker.send_jobs(["noop", "gate"])
        assert [m["id"] for m in worker.outcomes(1)] == ["j0"]
        worker.send_jobs(["noop", "noop"], first=2)
        (back,) = worker.outcomes(1)
        assert back == {"t": "back", "jobs": [["j2", 1], ["j3", 1]]} and worker.counter.value == 2
        os.write(gate_w, b"x")
        assert [m["id"] for m in worker.outcomes(1)] == ["j1"]
        assert worker.finish()[0] == 0


class _ReportThenGate(_Gate):
    """Reports progress (a write of its own to the pipe), then waits at the gate."""

    def process(self, data, ctx):
        ctx.report(0.5, "half way")
        return super().process(data, ctx)


def test_a_progress_report_does_not_stop_the_hand_back():
    with _gated_worker(_ReportThenGate) as (worker, gate_w):
        worker.send_jobs(["noop", "gate", "noop", "noop"])
        got = worker.outcomes(3)
        assert [m.get("id", m["t"]) for m in got] == ["j0", "j1", "back"]  # j1's progress
        assert got[2]["jobs"] == [["j2", 1], ["j3", 1]] and worker.counter.value == 2
        os.write(gate_w, b"x")
        assert [m["id"] for m in worker.outcomes(1)] == ["j1"]
        assert worker.finish()[0] == 0


def test_a_job_not_sent_as_short_gets_no_signal():
    """Jobs sent as not short (one at a time) are never interrupted by the timer."""
    with _gated_worker(_CountSignals) as (worker, gate_w):
        worker.send_jobs(["gate"], batched=False)
        time.sleep(0.1)
        os.write(gate_w, b"x")
        (done,) = worker.outcomes(1)
        assert json.loads(done["r"]) == 0  # the gate's read was never interrupted
        assert worker.finish()[0] == 0


class _CountSignals(Plugin):
    """Waits at a gate, counting the SIGALRMs that interrupt the wait (through a wrapped
    handler: the read itself is retried by Python)."""

    name = "gate"

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def process(self, data, ctx):
        seen = []
        handler = signal.getsignal(signal.SIGALRM)

        def counting(signum, frame):
            seen.append(signum)
            if callable(handler):
                handler(signum, frame)

        signal.signal(signal.SIGALRM, counting)
        try:
            os.read(self.fd, 1)
        finally:
            signal.signal(signal.SIGALRM, handler)
        return len(seen)


class _Alarm(Plugin):
    """Uses SIGALRM itself: its handler (set at import, before the fork) must fire."""

    name = "alarm"

    def process(self, data, ctx):
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        time.sleep(5)  # the alarm's handler raises out of it
        return "slept through"


class _AlarmFired(Exception):
    pass


def _raise_alarm_fired(signum, frame):
    raise _AlarmFired()


class _CatchAlarm(Plugin):
    """Catches its own alarm, then waits at a gate: outcomes before it must not wait too."""

    name = "catch_alarm"

    def __init__(self, gate_fd: int) -> None:
        self.gate_fd = gate_fd

    def process(self, data, ctx):
        try:
            return _Alarm().process(data, ctx)
        except _AlarmFired:
            os.read(self.gate_fd, 1)
            return "fired"


def test_a_plugin_that_uses_sigalrm_keeps_it_and_outcomes_are_then_not_held():
    gate_r, gate_w = os.pipe()

    worker = ForkedWorker({"noop": _Noop(), "catch_alarm": _CatchAlarm(gate_r)}, keep_fds=(gate_r,),
                          child_setup=lambda: signal.signal(signal.SIGALRM, _raise_alarm_fired))
    try:
        worker.send_jobs(["noop", "catch_alarm", "noop", "noop", "noop", "noop"])
        first = worker.outcomes(1)  # j1 will wait at its gate: nothing holds j0 back
        assert [(m["id"], m["r"]) for m in first] == [("j0", "{}")]
        # j0's outcome is written before j1 starts, so the count may still read 1 here
        wait_until(lambda: worker.counter.value == 2, timeout=5.0, message="j1 to start")
        os.write(gate_w, b"x")
        rest = worker.outcomes(5)
        assert [(m["id"], m["r"]) for m in rest] == [("j1", '"fired"')] + [(f"j{i}", "{}")
                                                                           for i in range(2, 6)]
        assert worker.finish()[0] == 0
    finally:
        worker.close()
        os.close(gate_r)
        os.close(gate_w)


@pytest.mark.parametrize("fields", [
    {"wall": "abc"}, {"wall": float("nan")}, {"cpu": [1]}, {"wall": True}, {"rss": -1},
    {"rss": "10"}, {"e": {"not": "text"}}, {"perm": "yes"},
])
def test_a_failure_frame_with_figures_that_are_not_numbers_is_garbage(fields):
    """A job knows its own id and attempt and could write a failure frame itself: what the
    supervisor uses as numbers and text must be numbers and text."""
    body = json.dumps({"t": "err", "id": "j-1", "a": 1, "e": "boom", "wall": 0.1, "cpu": 0.1,
                       "rss": 10, **fields}).encode()
    with pytest.raises(FrameError):
        FrameReader().feed(HEADER.pack(len(body)) + body)


def test_a_done_frame_cannot_carry_its_result_inside_the_metadata():
    body = json.dumps({"t": "ok", "id": "j-1", "a": 1, "r": "not json"}).encode()
    with pytest.raises(FrameError):
        FrameReader().feed(HEADER.pack(len(body)) + body)
    (ok,) = FrameReader().feed(encode({"t": "err", "id": "j-1", "a": 1, "e": "boom", "wall": 0.5,
                                       "cpu": 0, "rss": 0, "perm": True}))
    assert ok["e"] == "boom" and ok["perm"] is True
