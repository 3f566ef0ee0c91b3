"""Wake-ups for an idle supervisor over Redis Pub/Sub, as a file descriptor to wait on.

Producers publish to ``<queue prefix>wake`` when they enqueue; operators publish
to a supervisor's control channel. The supervisor puts this connection's socket
in its one ``select`` so a new job starts within a millisecond without polling.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from dtq import keys
from dtq.engine.redis_subscriber import pong_token, read_until_pong


class RedisListener:
    """A Pub/Sub subscription on its own connection; ``broken`` once the link failed."""

    def __init__(self, client: redis.Redis, queues: Sequence[str], name: str) -> None:
        self._wake = {keys.QueueKeys(q).wake_channel.encode(): q for q in queues}
        self._control = keys.control_channel(name).encode()
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(*self._wake, self._control)
        self.broken = False
        self._pong: bytes | None = None  # the token of the barrier's PING, until answered

    def fileno(self) -> int:
        conn = self._pubsub.connection
        sock = getattr(conn, "_sock", None) if conn is not None else None
        if sock is None:
            self.broken = True
            return -1
        return sock.fileno()

    def drain(self) -> list[tuple[str, str]]:
        """Every message already received: ('wake', queue) after an enqueue, ('inbox', queue)
        after a raw RPUSH whose producer published 'inbox', or ('control', payload)."""
        events: list[tuple[str, str]] = []
        try:
            while (msg := self._pubsub.get_message(timeout=0.0)) is not None:
                channel, payload = msg.get("channel"), msg.get("data")
                if channel == self._control and isinstance(payload, bytes):
                    events.append(("control", payload.decode("utf-8", "replace")))
                elif channel in self._wake:
                    kind = "inbox" if payload == b"inbox" else "wake"
                    events.append((kind, self._wake[channel]))
                elif msg.get("type") == "pong" and payload == self._pong:
                    self._pong = None
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.broken = True
        return events

    def barrier(self, timeout: float = 1.0) -> list[tuple[str, str]]:
        """Every event published before this call (see read_until_pong)."""
        self._pong = pong_token()
        try:
            self._pubsub.ping(self._pong)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.broken = True
            return []
        return read_until_pong(self.fileno, self.drain, lambda: self._pong is None, timeout)

    def close(self) -> None:
        try:
            self._pubsub.close()
        except (redis.RedisError, OSError):
            pass
