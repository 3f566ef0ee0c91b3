"""Whether Redis is reachable, with backoff and a log line every few seconds, not per tick."""

from __future__ import annotations

import logging
from collections.abc import Callable

LOG_EVERY = 5.0


class RedisHealth:
    """Tracks the engine's reachability; steps that need Redis ask ``ok()`` first."""

    def __init__(self, clock: Callable[[], float], log: logging.Logger,
                 max_delay: float = 5.0) -> None:
        self._clock = clock
        self._log = log
        self.down_since: float | None = None
        self.retry_at: float | None = None
        self._delay = 0.0
        self._max_delay = max_delay
        self._last_log = -LOG_EVERY

    def ok(self) -> bool:
        return self.retry_at is None or self._clock() >= self.retry_at

    def down(self, exc: Exception) -> None:
        now = self._clock()
        if self.down_since is None:
            self.down_since = now
        self._delay = min(self._max_delay, max(0.1, self._delay * 2))
        self.retry_at = now + self._delay
        if now - self._last_log >= LOG_EVERY:
            self._last_log = now
            self._log.error("%s; retrying (down for %.0f s; running jobs go on, outcomes are held)",
                            exc, now - self.down_since)

    def up(self) -> None:
        if self.down_since is not None:
            self._log.warning("Redis is reachable again after %.1f s", self._clock() - self.down_since)
        self.down_since = None
        self.retry_at = None
        self._delay = 0.0
