"""A tiny HTTP server driven by the supervisor's select loop: /metrics and /healthz.

Non-blocking sockets, at most a few connections, requests of at most 8 KiB:
enough for a Prometheus scraper and a health probe, and no thread in the
process that forks. A stuck loop answers nothing, which a probe's timeout
reports as unhealthy.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

MAX_REQUEST = 8192
MAX_CONNECTIONS = 16


class MetricsServer:
    """Serves ``metrics()`` at /metrics and ``health()`` ((ok, text)) at /healthz."""

    def __init__(self, host: str, port: int, metrics: Callable[[], bytes],
                 health: Callable[[], tuple[bool, str]]) -> None:
        self.metrics = metrics
        self.health = health
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.conns: dict[int, tuple[socket.socket, bytearray]] = {}

    def fds(self) -> list[int]:
        return [self.sock.fileno(), *self.conns]

    def handle(self, readable: list[int]) -> None:
        if self.sock.fileno() in readable:
            self._accept()
        for fd in [fd for fd in readable if fd in self.conns]:
            self._read(fd)

    def _accept(self) -> None:
        while len(self.conns) < MAX_CONNECTIONS:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            self.conns[conn.fileno()] = (conn, bytearray())

    def _read(self, fd: int) -> None:
        conn, buf = self.conns[fd]
        try:
            chunk = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        buf += chunk
        if chunk and b"\r\n\r\n" not in buf and len(buf) < MAX_REQUEST:
            return
        del self.conns[fd]
        try:
            if chunk:
                conn.settimeout(1.0)
                conn.sendall(self._respond(bytes(buf)))
        except OSError:
            pass
        finally:
            conn.close()

    def _respond(self, request: bytes) -> bytes:
        parts = request.split(b" ", 2)
        path = parts[1].split(b"?")[0] if len(parts) > 1 else b""
        if parts[0] != b"GET":
            return _reply(405, b"GET only\n")
        if path == b"/metrics":
            return _reply(200, self.metrics(), b"text/plain; version=0.0.4; charset=utf-8")
        if path in (b"/healthz", b"/health"):
            ok, text = self.health()
            return _reply(200 if ok else 503, text.encode() + b"\n")
        return _reply(404, b"try /metrics or /healthz\n")

    def close(self) -> None:
        for conn, _ in self.conns.values():
            conn.close()
        self.sock.close()


def _reply(status: int, body: bytes, ctype: bytes = b"text/plain; charset=utf-8") -> bytes:
    reason = {200: b"OK", 404: b"Not Found", 405: b"Method Not Allowed",
              503: b"Service Unavailable"}[status]
    return (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
            % (status, reason, ctype, len(body))) + body
