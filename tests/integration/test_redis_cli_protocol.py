"""A producer with nothing but redis-cli, exactly as docs/protocol.md tells it to enqueue."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from redis_server import RedisServer

from dtq import keys
from dtq.engine.redis_engine import RedisEngine

pytestmark = [pytest.mark.redis,
              pytest.mark.skipif(shutil.which("redis-cli") is None, reason="no redis-cli")]

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "docs" / "protocol.md"
INBOX = "dtq:{default}:inbox"  # spelled out, as a shell producer writes it
WAKE = "dtq:{default}:wake"


def redis_cli(server: RedisServer, *args: str) -> str:
    done = subprocess.run(["redis-cli", "-p", str(server.port), *args], capture_output=True,
                          text=True, timeout=10, check=True)
    return done.stdout.strip()


def dtq(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dtq", "--redis-url", url, *args],
                          capture_output=True, text=True, timeout=20, cwd=REPO)


@pytest.fixture
def engine(redis_url: str) -> RedisEngine:
    return RedisEngine(redis_url)


def test_the_documented_key_names_are_the_engines() -> None:
    qk = keys.QueueKeys("default")
    assert (qk.inbox, qk.wake_channel) == (INBOX, WAKE)
    text = PROTOCOL.read_text()
    assert INBOX in text and WAKE in text


def test_enqueue_with_redis_cli_alone(redis_server: RedisServer, redis_url: str,
                                      engine: RedisEngine) -> None:
    envelope = {"id": "21876931", "job": {"plugin": "montage_image",
                                          "data": {"images": ["/in/a.jpg"], "tile": "1x1"}}}
    assert redis_cli(redis_server, "RPUSH", INBOX, json.dumps(envelope)) == "1"
    assert redis_cli(redis_server, "PUBLISH", WAKE, "1") == "0"  # no supervisor listening: fine
    assert engine.admit_inbox("default") == 1
    (claimed,) = engine.claim("default", "sup-a", 5, 30).jobs
    assert (claimed.id, claimed.plugin) == ("21876931", "montage_image")
    assert json.loads(claimed.data_json) == {"images": ["/in/a.jpg"], "tile": "1x1"}


def test_options_and_integer_ids_from_redis_cli(redis_server: RedisServer, redis_url: str,
                                               engine: RedisEngine) -> None:
    redis_cli(redis_server, "RPUSH", INBOX,
              '{"id": 7, "job": {"plugin": "p", "data": null}}',
              '{"id": "urgent", "job": {"plugin": "p", "data": [1]}, '
              '"options": {"priority": 10, "timeout": 30, "memory_limit": "512M"}}')
    assert engine.admit_inbox("default") == 2
    first, second = engine.claim("default", "sup-a", 5, 30).jobs
    assert (first.id, first.timeout, first.memory_limit) == ("urgent", 30.0, 512 * 2**20)
    assert second.id == "7"


def test_malformed_entry_from_redis_cli_is_dead_lettered_and_explained(
        redis_server: RedisServer, redis_url: str, engine: RedisEngine) -> None:
    bad = '{"id": "order-9", "job": {"plugin": "montage_image"}, "options": {"timeout": "soon"}}'
    redis_cli(redis_server, "RPUSH", INBOX, bad, '{"id": "fine", "job": {"plugin": "p"}}')
    assert engine.admit_inbox("default") == 2
    assert [c.id for c in engine.claim("default", "sup-a", 5, 30).jobs] == ["fine"]
    assert redis_cli(redis_server, "ZRANGE", "dtq:{default}:dead", "0", "-1") == "bad-order-9"

    for asked in ("bad-order-9", "order-9"):  # the dead letter's id, or the producer's own
        shown = dtq(redis_url, "status", asked)
        assert shown.returncode == 0, shown.stderr
        assert "job bad-order-9" in shown.stdout
        assert "state: dead (malformed job: options.timeout: must be a number, got 'soon')" \
            in shown.stdout
        assert "raw entry: " + bad in shown.stdout

    as_json = json.loads(dtq(redis_url, "status", "order-9", "--json").stdout)
    assert (as_json["state"], as_json["raw"]) == ("dead", bad)
    assert "options.timeout" in as_json["error"]


def test_entry_that_is_not_json_at_all(redis_server: RedisServer, redis_url: str,
                                       engine: RedisEngine) -> None:
    redis_cli(redis_server, "RPUSH", INBOX, "montage_image /in/a.jpg")
    assert engine.admit_inbox("default") == 1
    (dead_id,) = redis_cli(redis_server, "ZRANGE", "dtq:{default}:dead", "0", "-1").split()
    shown = dtq(redis_url, "status", dead_id)
    assert "malformed job: envelope: is not valid JSON" in shown.stdout
    assert "raw entry: montage_image /in/a.jpg" in shown.stdout


def test_the_redis_cli_example_in_the_protocol_doc_works(redis_server: RedisServer, redis_url: str,
                                                        engine: RedisEngine) -> None:
    """Run the doc's own redis-cli lines (with this server's port) and check the job arrives."""
    lines = [line.strip() for line in PROTOCOL.read_text().splitlines()
             if line.strip().startswith("redis-cli ")]
    assert any(" RPUSH " in line for line in lines), "docs/protocol.md lost its redis-cli example"
    for line in lines:
        command = line.replace("redis-cli ", f"redis-cli -p {redis_server.port} ", 1)
        subprocess.run(["sh", "-c", command], check=True, timeout=10, capture_output=True)
    assert engine.admit_inbox("default") >= 1
    jobs = engine.claim("default", "sup-a", 10, 30).jobs
    assert jobs and all(j.plugin for j in jobs)
    assert engine.stats("default")["dead"] == 0
