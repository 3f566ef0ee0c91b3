"""Bad entries pushed with plain Redis commands at a running supervisor: each one ends in
the dead-letter queue with a clear reason, the supervisor lives, good jobs around them run."""

from __future__ import annotations

import itertools
import json

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from waiting import wait_until

from dtq import keys
from dtq.job import MAX_ENVELOPE_BYTES, MAX_NESTING

pytestmark = pytest.mark.process

INBOX = keys.QueueKeys("default").inbox
WAKE = keys.QueueKeys("default").wake_channel

HOSTILE: list[tuple[bytes, str]] = [
    (b"{not json", "is not valid JSON"),
    (b"[1, 2, 3]", "must be a JSON object"),
    (b'"just a string"', "must be a JSON object"),
    (b'{"id": "x1"}', "job: is required"),
    (b'{"job": {"data": {}}}', "job.plugin: is required"),
    (b'{"job": {"plugin": 42, "data": {}}}', "job.plugin: must be a plugin name"),
    (b'{"job": {"plugin": "noop"}, "options": {"timeout": "soon"}}', "options.timeout"),
    (b'{"job": {"plugin": "noop"}, "options": {"colour": "red"}}', "options.colour: unknown"),
    (b'{"id": "a b", "job": {"plugin": "noop"}}', "id: must be"),
    (b"\xff\xfe\x00 not utf-8", "is not UTF-8"),
    (b'{"job": {"plugin": "noop", "data": ' + b"[" * (MAX_NESTING + 5) + b"]" * (MAX_NESTING + 5)
     + b"}}", "nested deeper"),
    (b'{"job": {"plugin": "noop", "data": "' + b"x" * (MAX_ENVELOPE_BYTES + 10) + b'"}}',
     "larger than"),
]


def push(client: redis.Redis, *entries: bytes) -> None:
    client.rpush(INBOX, *entries)
    client.publish(WAKE, "inbox")


def admitted(queue, job_id: str) -> None:
    """Entries pushed to the inbox become jobs once a supervisor admits them."""
    wait_until(lambda: queue.engine.status(job_id, "default") is not None, timeout=15,
               message=f"{job_id} admitted from the inbox")


def good(n: int) -> bytes:
    return json.dumps({"id": f"good-{n}", "job": {"plugin": "noop", "data": {"n": n}}}).encode()


def test_every_hostile_entry_is_dead_lettered_and_good_ones_run(start_supervisor, queue,
                                                                redis_server):
    sup = start_supervisor("--workers", "2")
    client = redis_server.client()
    entries = []
    for i, (raw, _) in enumerate(HOSTILE):
        entries += [good(i), raw]
    entries.append(b'{"id": "who", "job": {"plugin": "no_such_plugin", "data": {}}}')
    push(client, *entries)
    for i in range(len(HOSTILE)):
        admitted(queue, f"good-{i}")
        assert queue.result(f"good-{i}", timeout=15)["echo"] == {"n": i}
    wait_until(lambda: queue.stats()["dead"] == len(HOSTILE) + 1, timeout=15, message="dead letters")
    dead = {m.decode(): None for m in client.zrange(keys.QueueKeys("default").dead, 0, -1)}
    reasons = [queue.engine.status(job_id, "default").error for job_id in dead]
    for _, expected in HOSTILE:
        assert any(expected in r for r in reasons), (expected, reasons)
    assert any("unknown plugin 'no_such_plugin'" in r for r in reasons)
    assert sup.proc.poll() is None and client.llen(INBOX) == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
raw_entries = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"job": st.fixed_dictionaries({"plugin": st.text(max_size=10)}),
                           "options": st.dictionaries(st.sampled_from(
                               ["timeout", "priority", "delay", "queue", "memory_limit"]),
                               json_values, max_size=3)}).map(lambda v: json.dumps(v).encode()))


def test_fuzzed_entries_never_stop_the_supervisor(start_supervisor, queue, redis_server):
    sup = start_supervisor("--workers", "1")
    client = redis_server.client()
    serial = itertools.count()

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(batch=st.lists(raw_entries, min_size=1, max_size=8))
    def push_and_follow(batch: list[bytes]) -> None:
        marker = f"marker-{next(serial)}"  # after the batch in the inbox: admitted after it
        push(client, *batch, json.dumps({"id": marker, "job": {"plugin": "noop", "data": 1}}).encode())
        admitted(queue, marker)
        assert queue.result(marker, timeout=15)["echo"] == 1
        assert client.llen(INBOX) == 0 and sup.proc.poll() is None

    push_and_follow()
