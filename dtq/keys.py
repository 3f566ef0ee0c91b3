"""Every Redis key and channel dtq uses, in one place (documented in docs/protocol.md).

Keys of one queue share the hash tag ``{queue}`` so multi-key scripts stay
within one Redis Cluster slot. Only the supervisor registry, the queue list and
control channels are global.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "dtq"
QUEUES = f"{ROOT}:queues"  # SET of queue names ever enqueued to
SUPERVISORS = f"{ROOT}:supervisors"  # ZSET supervisor name -> last heartbeat (ms)


def supervisor_info(name: str) -> str:
    """HASH describing one live supervisor (host, pid, pool size, busy, ...)."""
    return f"{ROOT}:supervisor:{name}"


def control_channel(name: str) -> str:
    """Pub/Sub channel telling one supervisor to act now (scale, cancel, jobs claimed for it).

    lib.lua's push_to_standby spells the same name: keep them in step."""
    return f"{ROOT}:control:{name}"


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one queue; ``prefix`` is what the Lua scripts build job keys from."""

    queue: str

    @property
    def prefix(self) -> str:
        return f"{ROOT}:{{{self.queue}}}:"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def notify(self, job_id: str) -> str:
        return f"{self.prefix}notify:{job_id}"

    @property
    def ready(self) -> str:
        return f"{self.prefix}ready"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}delayed"

    @property
    def running(self) -> str:
        return f"{self.prefix}running"

    @property
    def dead(self) -> str:
        return f"{self.prefix}dead"

    @property
    def inbox(self) -> str:
        return f"{self.prefix}inbox"

    @property
    def stats(self) -> str:
        return f"{self.prefix}stats"

    @property
    def seq(self) -> str:
        return f"{self.prefix}seq"

    @property
    def paused(self) -> str:
        return f"{self.prefix}paused"

    @property
    def standby(self) -> str:
        """HASH supervisor name -> "free slots|lease ms|expires ms": jobs enqueued while
        it stands by are claimed for it and published on its control channel."""
        return f"{self.prefix}standby"

    @property
    def wake_channel(self) -> str:
        return f"{self.prefix}wake"
