"""The producer commands as a user runs them: dtq enqueue / status / result / cancel."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from redis_server import free_port

from dtq.cli.main import main
from dtq.engine.base import Outcome
from dtq.engine.redis_engine import RedisEngine

pytestmark = pytest.mark.redis

REPO = Path(__file__).resolve().parents[2]


def dtq_process(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in its own process (what a user runs)."""
    return subprocess.run([sys.executable, "-m", "dtq", "--redis-url", url, *args], input=stdin,
                          capture_output=True, text=True, timeout=20, cwd=REPO)


def dtq(url: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The same command in this process (ten times faster); an uncaught exception fails the test."""
    out, err = io.StringIO(), io.StringIO()
    fake_stdin = io.TextIOWrapper(io.BytesIO((stdin or "").encode()))
    old_stdin = sys.stdin
    sys.stdin = fake_stdin
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["--redis-url", url, *args])
    finally:
        sys.stdin = old_stdin
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


@pytest.fixture
def engine(redis_url: str) -> RedisEngine:
    return RedisEngine(redis_url)


def test_enqueue_prints_the_id_and_is_idempotent(redis_url: str, engine: RedisEngine) -> None:
    first = dtq_process(redis_url, "enqueue", "montage_image", "--data", '{"images": ["a.jpg"]}',
                "--id", "sheet-1", "--priority", "3", "--memory-limit", "512M")
    assert (first.returncode, first.stdout, first.stderr) == (0, "sheet-1\n", "")
    status = engine.status("sheet-1", "default")
    assert (status.plugin, status.data, status.state) == ("montage_image", {"images": ["a.jpg"]},
                                                          "queued")
    assert status.options["priority"] == 3 and status.options["memory_limit"] == 512 * 2**20

    second = dtq(redis_url, "enqueue", "montage_image", "--data", '{"images": ["a.jpg"]}',
                 "--id", "sheet-1")
    assert second.returncode == 0
    assert second.stdout == "sheet-1\n"
    assert "sheet-1 exists already (queued); not enqueued again" in second.stderr
    assert engine.stats("default")["enqueued"] == 1


def test_enqueue_without_id_prints_a_generated_one(redis_url: str, engine: RedisEngine) -> None:
    done = dtq(redis_url, "enqueue", "p", "--queue", "images", "--delay", "60")
    assert done.returncode == 0
    job_id = done.stdout.strip()
    assert len(job_id) == 32
    assert engine.status(job_id, "images").state == "scheduled"


def test_enqueue_from_a_jsonl_file(redis_url: str, engine: RedisEngine, tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "g1", "job": {"plugin": "p", "data": 1}}),
        '{"id": "b2", "job": {"plugin": "p"}, "options": {"timeout": -1}}',
        "",
        json.dumps({"id": 3, "job": {"plugin": "montage_image", "data": {"x": 1}}}),
        "this is not json",
        json.dumps({"id": "g5", "job": {"plugin": "p"}, "options": {"queue": "images"}}),
    ]
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = dtq_process(redis_url, "enqueue", "--from", str(path))
    assert done.returncode == 1
    assert done.stdout.strip() == "enqueued 3 jobs; 2 bad lines skipped"
    errors = done.stderr.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("dtq: line 2: options.timeout:")
    assert errors[1].startswith("dtq: line 5: envelope: is not valid JSON")
    assert engine.status("g1", "default").data == 1
    assert engine.status("3", "default").plugin == "montage_image"
    assert engine.status("g5", "images") is not None
    assert engine.status("b2", "default") is None

    again = dtq(redis_url, "enqueue", "--from", str(path))
    assert "enqueued 0 jobs (3 already existed); 2 bad lines skipped" in again.stdout


def test_enqueue_from_stdin_all_good(redis_url: str, engine: RedisEngine) -> None:
    stdin = "".join(json.dumps({"job": {"plugin": "p", "data": i}}) + "\n" for i in range(20))
    done = dtq(redis_url, "enqueue", "--from", "-", stdin=stdin)
    assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "enqueued 20 jobs", "")
    assert engine.stats("default")["ready"] == 20


def test_enqueue_needs_a_plugin_or_a_file(redis_url: str, tmp_path: Path) -> None:
    done = dtq(redis_url, "enqueue")
    assert done.returncode == 2 and "PLUGIN" in done.stderr
    both = dtq(redis_url, "enqueue", "p", "--from", str(tmp_path / "x.jsonl"))
    assert both.returncode == 2 and "--from" in both.stderr


def test_bad_data_json_names_data(redis_url: str, engine: RedisEngine) -> None:
    done = dtq_process(redis_url, "enqueue", "p", "--data", "{'single': 'quotes'}")
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("dtq: --data: is not valid JSON")
    assert len(done.stderr.strip().splitlines()) == 1
    assert engine.stats("default")["enqueued"] == 0


@pytest.mark.parametrize(("args", "field"), [
    (["--memory-limit", "lots"], "--memory-limit"),
    (["--priority", "5000"], "options.priority"),
    (["--timeout", "0"], "options.timeout"),
    (["--id", "has space"], "id"),
    (["--queue", "a/b"], "options.queue"),
])
def test_bad_options_are_one_clear_line(redis_url: str, args: list[str], field: str) -> None:
    done = dtq(redis_url, "enqueue", "p", *args)
    assert done.returncode == 2
    assert done.stderr.startswith(f"dtq: {field}: ")
    assert "Traceback" not in done.stderr


def test_status_text_and_json(redis_url: str, engine: RedisEngine) -> None:
    dtq(redis_url, "enqueue", "p", "--data", '{"k": "v"}', "--id", "s1")
    (claimed,) = engine.claim("default", "box:1", 1, 30).jobs
    engine.finish("box:1", [Outcome(claimed, "done", '{"out": "/x.jpg"}',
                                    record={"attempt": 1, "wall": 1.25, "cpu": 1.0,
                                            "peak_rss": 64 * 2**20})])
    text = dtq(redis_url, "status", "s1")
    assert text.returncode == 0
    assert "job s1  queue default  plugin p" in text.stdout
    assert "state: done" in text.stdout
    assert "attempts: 1 (failed 0)" in text.stdout
    assert "attempt 1: wall 1.250 s, cpu 1.000 s, peak 64.0 MiB - done" in text.stdout
    assert 'result: {"out": "/x.jpg"}' in text.stdout

    as_json = dtq(redis_url, "status", "s1", "--json")
    assert as_json.returncode == 0
    record = json.loads(as_json.stdout)
    assert (record["id"], record["state"], record["data"], record["result"]) == (
        "s1", "done", {"k": "v"}, {"out": "/x.jpg"})
    assert record["attempt"] == 1 and record["history"][0]["wall"] == 1.25


def test_status_finds_a_job_in_another_queue(redis_url: str) -> None:
    dtq(redis_url, "enqueue", "p", "--queue", "images", "--id", "elsewhere")
    shown = dtq(redis_url, "status", "elsewhere")
    assert shown.returncode == 0 and "queue images" in shown.stdout


def test_status_of_an_unknown_job(redis_url: str) -> None:
    done = dtq(redis_url, "status", "nope")
    assert done.returncode == 1
    assert done.stderr.strip() == "dtq: no job 'nope' (never enqueued, or its result expired)"


def test_result_of_an_unfinished_job_exits_3(redis_url: str) -> None:
    dtq(redis_url, "enqueue", "p", "--id", "pending")
    done = dtq_process(redis_url, "result", "pending", "--wait", "0.2")
    assert done.returncode == 3
    assert done.stdout == ""
    assert "job pending is still queued after 0.2 s" in done.stderr


def test_result_of_done_and_dead_jobs(redis_url: str, engine: RedisEngine) -> None:
    dtq(redis_url, "enqueue", "p", "--id", "ok")
    dtq(redis_url, "enqueue", "p", "--id", "broken")
    ok, broken = engine.claim("default", "box:1", 2, 30).jobs
    engine.finish("box:1", [Outcome(ok, "done", '[1, 2]'),
                            Outcome(broken, "permanent", reason="not an image")])
    done = dtq(redis_url, "result", "ok")
    assert (done.returncode, json.loads(done.stdout)) == (0, [1, 2])
    dead = dtq(redis_url, "result", "broken")
    assert dead.returncode == 1
    assert dead.stderr.strip() == "dtq: job broken ended dead: not an image"


def test_cancel(redis_url: str, engine: RedisEngine) -> None:
    dtq(redis_url, "enqueue", "p", "--id", "c1")
    done = dtq(redis_url, "cancel", "c1")
    assert (done.returncode, done.stdout.strip()) == (0, "job c1 cancelled")
    assert engine.status("c1", "default").state == "cancelled"
    again = dtq(redis_url, "cancel", "c1")
    assert (again.returncode, again.stdout.strip()) == (1, "job c1 has already finished (cancelled)")
    missing = dtq(redis_url, "cancel", "nope")
    assert missing.returncode == 1


UNREACHABLE_COMMANDS = [["enqueue", "p", "--data", "{}"], ["status", "x"], ["result", "x", "--wait", "1"],
                        ["cancel", "x"], ["enqueue", "--from", "-"]]


@pytest.mark.parametrize("command", UNREACHABLE_COMMANDS)
def test_unreachable_redis_is_one_clear_line(command: list[str]) -> None:
    port = free_port()
    done = dtq(f"redis://127.0.0.1:{port}/0", *command, stdin='{"job": {"plugin": "p"}}\n')
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"dtq: Redis at 127.0.0.1:{port} is unreachable")


def test_unreachable_redis_in_a_real_process_has_no_traceback() -> None:
    port = free_port()
    done = dtq_process(f"redis://127.0.0.1:{port}/0", "enqueue", "p")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"dtq: Redis at 127.0.0.1:{port} is unreachable")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
