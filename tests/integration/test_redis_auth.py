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


def _supervisor_runs_a_job(url: str, data: dict) -> bool:
    """Enqueue a no-op job at ``url``, let a one-worker supervisor run it, stop it."""
    queue = Queue(url)
    job_id = queue.enqueue("noop", data)
    sup = SupervisorProcess(url, "--workers", "1", plugins=("Noop",))
    try:
        return queue.result(job_id, timeout=20)["echo"] == data
    finally:
        sup.cleanup()


def test_acl_user_runs_jobs_end_to_end(secured):
    url = f"redis://dtq:dtq-secret@127.0.0.1:{secured.port}/0"
    assert _supervisor_runs_a_job(url, {"acl": True})  # gone after: enqueues now only wake
    listener = RedisEngine(url).listen(["default"], "x")
    assert _wake_arrives(listener, RedisEngine(url))
    listener.close()


def test_acl_user_without_write_rights_gets_a_clear_error(secured):
    engine = RedisEngine(f"redis://reader:reader-secret@127.0.0.1:{secured.port}/0")
    with pytest.raises(EngineUnavailable, match="refused"):
        engine.enqueue(build_job("noop", {}))
    with pytest.raises(EngineUnavailable):
        RedisEngine(f"redis://default:x@127.0.0.1:{secured.port}/0").ping()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (CA = itself), made with openssl."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no TLS test")
    cert, key = directory / "redis.crt", directory / "redis.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    return cert, key


def test_tls_with_rediss_url(tmp_path):
    cert, key = _self_signed(tmp_path)
    from redis_server import free_port

    port = free_port()
    server = RedisServer("--tls-port", str(port), "--port", "0", "--tls-cert-file", str(cert),
                         "--tls-key-file", str(key), "--tls-ca-cert-file", str(cert),
                         "--tls-auth-clients", "no", "--requirepass", "tls-secret")
    server.port = port
    try:
        server.start_tls()
    except RuntimeError as exc:
        server.cleanup()
        pytest.skip(f"this redis-server has no TLS: {exc}")
    url = f"rediss://:tls-secret@127.0.0.1:{port}/0?ssl_ca_certs={cert}&ssl_cert_reqs=required"
    try:
        assert _supervisor_runs_a_job(url, {"tls": True})
        with pytest.raises(EngineUnavailable):  # plain text against a TLS port
            RedisEngine(f"redis://:tls-secret@127.0.0.1:{port}/0").ping()
    finally:
        server.cleanup()
