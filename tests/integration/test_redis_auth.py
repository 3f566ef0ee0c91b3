"""Redis with a password and with an ACL user: engine, wake-up subscriber and supervisor."""

from __future__ import annotations

import select
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "process"))

from redis_server import RedisServer  # noqa: E402
from supervisor_proc import SupervisorProcess  # noqa: E402

from dtq import EngineUnavailable, Queue  # noqa: E402
from dtq.engine.redis_engine import RedisEngine  # noqa: E402
from dtq.engine.redis_subscriber import RawSubscriber  # noqa: E402
from dtq.job import build_job  # noqa: E402

pytestmark = pytest.mark.redis

ACL = """user default off
user dtq on >dtq-secret ~dtq:* &dtq:* +@all -@dangerous -flushall -flushdb
user reader on >reader-secret ~dtq:* &dtq:* +@read +ping +hello
"""


@pytest.fixture
def secured(tmp_path):
    acl = tmp_path / "users.acl"
    acl.write_text(ACL)
    server = RedisServer("--aclfile", str(acl))
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(f"could not start redis-server with an ACL file: {exc}")
    yield server
    server.cleanup()


@pytest.fixture
def with_password():
    server = RedisServer("--requirepass", "p@ss word")
    server.start()
    yield server
    server.cleanup()


def _wake_arrives(listener, engine) -> bool:
    engine.enqueue(build_job("noop", {}))
    readable, _, _ = select.select([listener.fileno()], [], [], 5)
    return bool(readable) and ("wake", "default") in listener.drain()


def test_password_in_the_url(with_password):
    url = f"redis://:p%40ss%20word@127.0.0.1:{with_password.port}/0"
    engine = RedisEngine(url)
    listener = engine.listen(["default"], "sup")
    assert isinstance(listener, RawSubscriber)
    assert _wake_arrives(listener, engine)
    listener.close()
    with pytest.raises(EngineUnavailable, match="refused"):
        RedisEngine(f"redis://:wrong@127.0.0.1:{with_password.port}/0").ping()
    with pytest.raises(EngineUnavailable, match="WRONGPASS"):
        RedisEngine(f"redis://:wrong@127.0.0.1:{with_password.port}/0").listen(["default"], "s")


def test_acl_user_runs_jobs_end_to_end(secured):
    url = f"redis://dtq:dtq-secret@127.0.0.1:{secured.port}/0"
    queue = Queue(url)
    job_id = queue.enqueue("noop", {"acl": True})
    sup = SupervisorProcess(url, "--workers", "1", plugins=("Noop",))
    try:
        assert queue.result(job_id, timeout=20)["echo"] == {"acl": True}
        listener = RedisEngine(url).listen(["default"], "x")
        assert _wake_arrives(listener, RedisEngine(url))
        listener.close()
    finally:
        sup.cleanup()


def test_acl_user_without_write_rights_gets_a_clear_error(secured):
    engine = RedisEngine(f"redis://reader:reader-secret@127.0.0.1:{secured.port}/0")
    with pytest.raises(EngineUnavailable, match="refused"):
        engine.enqueue(build_job("noop", {}))
    with pytest.raises(EngineUnavailable):
        RedisEngine(f"redis://default:x@127.0.0.1:{secured.port}/0").ping()
