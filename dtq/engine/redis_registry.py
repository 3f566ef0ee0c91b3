"""The Redis engine's side for supervisors as such: the heartbeat registry, control
messages, and the Pub/Sub wake-up listener. Mixed into `RedisEngine`, whose
client, clock and error mapping it uses.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from typing import Any

import redis

from dtq import keys
from dtq.engine.base import SupervisorInfo
from dtq.engine.records import text as _s
from dtq.engine.redis_listener import RedisListener
from dtq.engine.redis_subscriber import ProtocolError as SubscribeError
from dtq.engine.redis_subscriber import RawSubscriber
from dtq.errors import EngineUnavailable


class RedisRegistry:
    """heartbeat, unregister, supervisors, forget_supervisors, queues, listen, send_control."""

    def heartbeat(self, info: SupervisorInfo, ttl: float) -> dict[str, str]:
        key = keys.supervisor_info(info.name)
        fields = {"host": info.host or socket.gethostname(), "pid": info.pid,
                  "workers": info.workers, "busy": info.busy, "queues": ",".join(info.queues),
                  "started_at": info.started_at, "extra": json.dumps(info.extra)}
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.zadd(keys.SUPERVISORS, {info.name: self._now_ms()})
            pipe.hset(key, mapping=fields)
            pipe.pexpire(key, int(ttl * 1000))
            pipe.hgetall(key + ":control")
            pipe.delete(key + ":control")  # applied once: a later SIGTTIN/SIGTTOU must stand
            control = pipe.execute()[-2]
        return {_s(k): _s(v) for k, v in control.items()}

    def unregister(self, name: str) -> None:
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.zrem(keys.SUPERVISORS, name)
            pipe.delete(keys.supervisor_info(name), keys.supervisor_info(name) + ":control")
            pipe.execute()

    def withdraw(self, queues: Sequence[str], holder: str) -> None:
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            for queue in queues:
                pipe.hdel(keys.QueueKeys(queue).standby, holder)
            pipe.execute()

    def supervisors(self) -> list[SupervisorInfo]:
        now = self._clock()
        with self._errors():
            beats = self.client.zrange(keys.SUPERVISORS, 0, -1, withscores=True)
            pipe = self.client.pipeline(transaction=False)
            for name, _ in beats:
                pipe.hgetall(keys.supervisor_info(_s(name)))
            infos = pipe.execute()
        out = []
        for (name, beat), raw in zip(beats, infos, strict=True):
            h = {_s(k): _s(v) for k, v in raw.items()}
            out.append(SupervisorInfo(
                name=_s(name), host=h.get("host", ""), pid=int(h.get("pid") or 0),
                workers=int(h.get("workers") or 0), busy=int(h.get("busy") or 0),
                queues=[q for q in h.get("queues", "").split(",") if q],
                heartbeat_age=max(0.0, now - beat / 1000.0),
                started_at=float(h.get("started_at") or 0),
                extra=json.loads(h["extra"]) if h.get("extra") else {}))
        return out

    def forget_supervisors(self, older_than: float) -> list[str]:
        """Drop registry entries whose heartbeat is older than ``older_than`` seconds."""
        cutoff = self._now_ms() - int(older_than * 1000)
        with self._errors():
            names = [_s(n) for n in self.client.zrangebyscore(keys.SUPERVISORS, "-inf", cutoff)]
            if names:
                self.client.zrem(keys.SUPERVISORS, *names)
        return names

    def queues(self) -> list[str]:
        with self._errors():
            return sorted(_s(q) for q in self.client.smembers(keys.QUEUES))

    def listen(self, queues: Sequence[str], name: str) -> RedisListener | RawSubscriber:
        pool = self.client.connection_pool
        kw = pool.connection_kwargs
        plain_tcp = pool.connection_class is redis.Connection and "host" in kw
        with self._errors():
            if plain_tcp:
                try:
                    return RawSubscriber(kw["host"], int(kw.get("port", 6379)), queues, name,
                                         username=kw.get("username"), password=kw.get("password"))
                except SubscribeError as exc:
                    raise EngineUnavailable(f"Redis at {self._where()} refused the subscription: "
                                            f"{exc}") from None
            return RedisListener(self.client, queues, name)

    def send_control(self, name: str, command: dict[str, Any]) -> bool:
        with self._errors():
            if self.client.zscore(keys.SUPERVISORS, name) is None:
                return False
            if "workers" in command:
                self.client.hset(keys.supervisor_info(name) + ":control",
                                 "workers", int(command["workers"]))
            self.client.publish(keys.control_channel(name), json.dumps(command))
        return True
