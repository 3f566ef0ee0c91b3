"""Script calls whose replies are read later: the supervisor's finish and claim.

A drain used to be a relay: the supervisor sent a batch of outcomes, waited while
Redis ran the scripts, then did its own work while Redis idled. Calls made here
return at once and go out together, on a connection of their own, at the next
`read()`; the supervisor selects on `fileno()`, and `read()` hands each reply to
its callback in the order sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import redis

from dtq.errors import EngineUnavailable

if TYPE_CHECKING:
    from dtq.engine.redis_engine import RedisEngine

Call = tuple[str, str, Sequence[Any]]

# Calls in flight at most; one more waits for the oldest reply first (Redis is slow
# or gone: the supervisor should feel it, not pile up outcomes in socket buffers).
MAX_IN_FLIGHT = 8


class _Sent(NamedTuple):
    calls: list[Call]
    on_reply: Callable[[list[Any]], None]
    on_lost: Callable[[EngineUnavailable], None]


class CallsInFlight:
    """Script calls not yet answered, on one connection kept for them. Calls made in one
    turn of the supervisor's loop go out together at the next `read` (one write, one
    wake-up of Redis for an outcome batch and the claim after it)."""

    def __init__(self, engine: RedisEngine) -> None:
        self.engine = engine
        self.conn: Any = None
        self.sent: deque[_Sent] = deque()  # oldest first; the last `unwritten` are not out yet
        self.unwritten: list[bytes] = []

    def send(self, calls: list[Call], on_reply: Callable[[list[Any]], None],
             on_lost: Callable[[EngineUnavailable], None]) -> None:
        """Queue the calls for the next write; EngineUnavailable if the scripts cannot
        even be loaded (nothing was sent)."""
        if len(self.sent) >= MAX_IN_FLIGHT:
            self.read(wait=True)
        engine = self.engine
        if not engine._loaded:
            with engine._errors():
                engine._load_scripts()
        self.unwritten.append(engine.pack_calls(calls))
        self.sent.append(_Sent(calls, on_reply, on_lost))

    def fileno(self) -> int:
        """Readable when a reply is there; -1 when nothing is in flight."""
        sock = getattr(self.conn, "_sock", None) if len(self.sent) > len(self.unwritten) else None
        return sock.fileno() if sock is not None else -1

    def read(self, wait: bool = False) -> None:
        """Write what is queued, then hand the replies that arrived to their callbacks,
        oldest first; with ``wait``, all of them. A callback may make calls: they go
        out before the next reply is awaited. A group with any error reply goes to its
        ``on_lost`` (never raised: the supervisor's loop must go on and resend)."""
        while self.sent:
            self._write()
            if not self.sent:  # the write failed: every call was lost
                return
            try:
                if not wait and not self.conn.can_read(timeout=0):
                    return
                head = self.sent[0]
                replies = [self._reply() for _ in head.calls]
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                self._lose_all(self.engine.unavailable(exc))
                return
            self.sent.popleft()
            try:
                replies = self.engine.rerun_unknown_scripts(head.calls, replies)
            except EngineUnavailable as exc:
                head.on_lost(exc)
                continue
            except redis.RedisError as exc:  # not a reply error: must not end the loop either
                head.on_lost(self.engine.error_reply(exc))
                continue
            head.on_reply(replies)

    def _write(self) -> None:
        if not self.unwritten:
            return
        data = b"".join(self.unwritten)
        idle = len(self.sent) == len(self.unwritten)  # no reply owed on the connection
        self.unwritten = []
        try:
            self._connection(idle).send_packed_command([data], check_health=False)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            self._lose_all(self.engine.unavailable(exc))

    def _reply(self) -> Any:
        try:
            return self.conn.read_response()
        except redis.ResponseError as exc:  # one call's error; the replies after it still come
            return exc

    def _connection(self, idle: bool) -> Any:
        if self.conn is None:
            self.conn = self.engine.client.connection_pool.get_connection()
        elif idle:  # an idle connection can only have an end of stream to read
            try:
                closed = self.conn.can_read(timeout=0)
            except redis.ConnectionError:
                closed = True
            if closed:  # Redis restarted or dropped us: the send connects afresh
                self.conn.disconnect()
        return self.conn

    def _lose_all(self, exc: EngineUnavailable) -> None:
        if self.conn is not None:
            self.conn.disconnect()
        self.unwritten = []
        while self.sent:
            self.sent.popleft().on_lost(exc)
