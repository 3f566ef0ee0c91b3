"""What an operator sees of a running supervisor: metrics, health, JSON logs, process titles."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import psutil
import pytest
from redis_server import free_port
from waiting import wait_until

pytestmark = pytest.mark.process


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def test_metrics_and_health_endpoints(start_supervisor, queue):
    port = free_port()
    job_ids = [queue.enqueue("noop", {}) for _ in range(3)] + [
        queue.enqueue("raise", {"message": "x"}, max_attempts=1)]
    start_supervisor("--workers", "2", "--metrics-port", str(port), "--name", "obs",
                     plugins=("Noop", "Raise"))
    for job_id in job_ids:
        queue.wait(job_id, timeout=10)
    base = f"http://127.0.0.1:{port}"
    status, body = wait_until(lambda: (r := get(base + "/metrics"))[0] == 200 and
                              'dtq_jobs_finished_total{outcome="done",plugin="noop"} 3.0' in r[1]
                              and r, timeout=10, message="metrics")
    assert 'dtq_jobs_failed_total{plugin="raise",reason="error"} 1.0' in body
    assert "dtq_job_duration_seconds_bucket" in body
    assert 'dtq_pool_size 2.0' in body
    wait_until(lambda: 'dtq_queue_depth{queue="default",state="ready"}' in get(base + "/metrics")[1],
               timeout=10, message="queue depths")
    assert get(base + "/healthz")[0] == 200
    assert get(base + "/nothing")[0] == 404


def test_health_turns_unhealthy_when_redis_goes_away(start_supervisor):
    from redis_server import RedisServer

    server = RedisServer().start()
    port = free_port()
    try:
        start_supervisor("--workers", "1", "--metrics-port", str(port), url=server.url)
        wait_until(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200, timeout=10,
                   message="healthy")
        server.stop()
        code, text = wait_until(lambda: (r := get(f"http://127.0.0.1:{port}/healthz"))[0] == 503
                                and r, timeout=10, message="unhealthy")
        assert "redis unreachable" in text
    finally:
        server.cleanup()


def test_json_logs_carry_the_job_fields(redis_url, queue):
    job_id = queue.enqueue("raise", {"message": "nope"}, max_attempts=1)
    import subprocess
    import sys

    from supervisor_proc import FAST, REPO, dtq_env

    out = subprocess.run([sys.executable, "-m", "dtq", "--redis-url", redis_url, "--log-format",
                          "json", "supervise", "--no-entry-points", "--plugin", "testplugins:Raise",
                          "--workers", "1", "--burst", *FAST], capture_output=True, text=True,
                         env=dtq_env(), cwd=REPO, timeout=60)
    events = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    failed = [e for e in events if e.get("event") == "failed"]
    assert failed and failed[0]["job_id"] == job_id and failed[0]["plugin"] == "raise"
    assert failed[0]["attempt"] == 1 and failed[0]["reason"].startswith("RuntimeError: nope")
    assert isinstance(failed[0]["duration"], float)


def test_process_titles_name_the_supervisor_and_the_job(start_supervisor, queue):
    job_id = queue.enqueue("sleep", {"seconds": 5})
    sup = start_supervisor("--workers", "1", "--name", "titled", plugins=("Sleep",))
    wait_until(lambda: queue.status(job_id).state == "running", timeout=10, message="running")

    def titles() -> list[str]:
        procs = [psutil.Process(sup.pid), *psutil.Process(sup.pid).children()]
        return [" ".join(p.cmdline()).strip() for p in procs]
    wait_until(lambda: f"dtq worker: sleep {job_id}" in titles(), timeout=10, message="titles")
    assert titles()[0] == "dtq supervisor titled"
