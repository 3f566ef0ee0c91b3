"""Private redis-server processes for tests: a free loopback port, no persistence unless asked."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A redis-server we own: start, stop (as a crash or cleanly) and restart on the same port."""

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.extra = list(extra)
        self.dir = Path(tempfile.mkdtemp(prefix="dtq-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        self._spawn(["--port", str(self.port)])
        return self._wait_ready(lambda raw: raw, timeout)

    def start_tls(self, timeout: float = 10.0) -> RedisServer:
        """Start a server that listens only on a TLS port (its readiness is a TLS handshake)."""
        import ssl

        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        self._spawn([])
        return self._wait_ready(context.wrap_socket, timeout)

    def _spawn(self, port_args: list[str]) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on PATH")
        args = [binary, *port_args, "--bind", "127.0.0.1", "--dir", str(self.dir),
                "--save", "", "--appendonly", "no", *self.extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)

    def _wait_ready(self, wrap: Callable[[socket.socket], socket.socket],
                    timeout: float) -> RedisServer:
        """Until the server answers a PING (through ``wrap``, e.g. TLS) or dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw:
                    with wrap(raw) as conn:
                        conn.sendall(b"PING\r\n")
                        if conn.recv(64):
                            return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not answer in time")

    def stop(self, kill: bool = False) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill() if kill else self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def client(self, **kw) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kw)

    def cleanup(self) -> None:
        self.stop(kill=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_required() -> bool:
    """Under CI the Redis tests must run; locally they may skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def running_server(*extra: str, port: int | None = None) -> Iterator[RedisServer]:
    """For a fixture (``yield from``): a started private server, cleaned up after the
    test. When none can start the test skips, or fails under CI, where Redis tests must
    run."""
    server = RedisServer(*extra, port=port)
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        server.cleanup()
        if redis_required():
            pytest.fail(f"CI=true but no redis-server could be started: {exc}")
        pytest.skip(f"no redis-server available: {exc}")
    try:
        yield server
    finally:
        server.cleanup()
