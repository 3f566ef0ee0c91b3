"""A minimal Pub/Sub subscriber on its own socket, for the supervisor's idle wake-ups.

redis-py's PubSub.get_message costs about 0.12 ms per message here, which is a
tenth of the whole enqueue-to-start budget; this reader parses the few RESP2
replies a subscription produces straight from a non-blocking socket. TLS and
unix-socket connections use `RedisListener` instead.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable, Sequence

from dtq import keys


class ProtocolError(Exception):
    """Redis answered something a subscription never produces."""


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def _parse(buf: bytearray, pos: int = 0) -> tuple[object, int] | None:
    """One RESP2 value from buf[pos:]: (value, next position), or None when incomplete."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        return None
    kind, line = buf[pos:pos + 1], bytes(buf[pos + 1:end])
    if kind in (b"+", b":"):
        return line, end + 2
    if kind == b"-":
        raise ProtocolError(line.decode("utf-8", "replace"))
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, end + 2
        if len(buf) < end + 2 + size + 2:
            return None
        return bytes(buf[end + 2:end + 2 + size]), end + 4 + size
    if kind == b"*":
        items = []
        cursor = end + 2
        for _ in range(int(line)):
            parsed = _parse(buf, cursor)
            if parsed is None:
                return None
            item, cursor = parsed
            items.append(item)
        return items, cursor
    raise ProtocolError(f"unexpected reply type {kind!r}")


def read_until_pong(fileno: Callable[[], int], drain: Callable[[], list[tuple[str, str]]],
                    ponged: Callable[[], bool], timeout: float) -> list[tuple[str, str]]:
    """The events a listener receives until its PING is answered. Redis answers on the
    subscription's connection in order, so everything published before the PING has
    then been read: a barrier, where a fixed wait could only guess."""
    events: list[tuple[str, str]] = []
    deadline = time.monotonic() + timeout
    while not ponged() and (fd := fileno()) >= 0:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        events += drain()
    return events


def pong_token() -> bytes:
    """A PING message no other barrier (or a stray PONG) can be taken for."""
    return b"dtq-barrier-" + os.urandom(6).hex().encode()


class RawSubscriber:
    """Subscribes to the queues' wake channels and the supervisor's control channel."""

    def __init__(self, host: str, port: int, queues: Sequence[str], name: str, *,
                 username: str | None = None, password: str | None = None,
                 timeout: float = 5.0) -> None:
        self._wake = {keys.QueueKeys(q).wake_channel.encode(): q for q in queues}
        self._control = keys.control_channel(name).encode()
        self._buf = bytearray()
        self.broken = False
        self._pong: bytes | None = None  # the token of the barrier's PING, until answered
        self._sock = socket.create_connection((host, port), timeout=timeout)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if password is not None:
            auth = (b"AUTH", username.encode(), password.encode()) if username else (
                b"AUTH", password.encode())
            self._sock.sendall(_command(*auth))
            self._read_reply()
        self._sock.sendall(_command(b"SUBSCRIBE", *self._wake, self._control))
        for _ in range(len(self._wake) + 1):
            self._read_reply()
        self._sock.setblocking(False)

    def _read_reply(self) -> object:
        while True:
            parsed = _parse(self._buf)
            if parsed is not None:
                value, used = parsed
                del self._buf[:used]
                return value
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("Redis closed the subscription")
            self._buf += chunk

    def fileno(self) -> int:
        return -1 if self.broken else self._sock.fileno()

    def drain(self) -> list[tuple[str, str]]:
        """('wake', queue), ('inbox', queue) or ('control', payload) for each message read."""
        try:  # called when select says readable: one recv, another only after a full one
            while True:
                chunk = self._sock.recv(65536)
                if not chunk:
                    self.broken = True
                    break
                self._buf += chunk
                if len(chunk) < 65536:
                    break  # (a second recv would only raise BlockingIOError: ~40 us cold)
        except BlockingIOError:
            pass
        except OSError:
            self.broken = True
        events: list[tuple[str, str]] = []
        try:
            while (parsed := _parse(self._buf)) is not None:
                value, used = parsed
                del self._buf[:used]
                events.extend(self._event(value))
        except (ProtocolError, ValueError):
            self.broken = True
        return events

    def barrier(self, timeout: float = 1.0) -> list[tuple[str, str]]:
        """Every event published before this call (see read_until_pong)."""
        self._pong = pong_token()
        try:
            self._sock.sendall(_command(b"PING", self._pong))
        except OSError:
            self.broken = True
            return []
        return read_until_pong(self.fileno, self.drain, lambda: self._pong is None, timeout)

    def _event(self, value: object) -> list[tuple[str, str]]:
        if isinstance(value, list) and value[:1] == [b"pong"] and value[1:] == [self._pong]:
            self._pong = None
            return []
        if not isinstance(value, list) or len(value) != 3 or value[0] != b"message":
            return []
        channel, payload = value[1], value[2]
        if channel == self._control and isinstance(payload, bytes):
            return [("control", payload.decode("utf-8", "replace"))]
        if channel in self._wake:
            return [("inbox" if payload == b"inbox" else "wake", self._wake[channel])]
        return []

    def close(self) -> None:
        try:
            self._sock.close()
        except OSError:
            pass
