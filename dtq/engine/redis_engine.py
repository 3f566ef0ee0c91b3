"""The Redis engine: jobs in hashes, ready/delayed/running sorted sets, Lua for every change.

Every state change of a job is one Lua script (atomic, keys of one queue only);
bulk paths send one script call per chunk of jobs. See docs/protocol.md for the
keys and docs/reliability.md for the guarantees.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import select
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import redis

from dtq import keys
from dtq.engine.base import (
    ClaimedJob,
    ClaimResult,
    Defaults,
    Engine,
    EnqueueResult,
    JobStatus,
    Outcome,
    RenewResult,
)
from dtq.engine.records import status_from_hash
from dtq.engine.records import text as _s
from dtq.engine.redis_inflight import CallsInFlight
from dtq.engine.redis_registry import RedisRegistry
from dtq.engine.scripts import SCRIPT_NAMES, script_source
from dtq.errors import EngineUnavailable, InvalidJob
from dtq.job import FINISHED_STATES, Job, parse_envelope, parse_id

DEFAULT_URL = "redis://localhost:6379/0"
CHUNK = 500  # jobs per script call: bounded ARGV, no long stall of the server
_SEND_AT = 16 * 1024  # bytes of packed calls that go out at once while more are built
_RECOVER_JITTER = 0.5


def _closed_by_peer(conn: Any) -> bool:
    """Whether an idle connection has something to read: only an end of stream (or
    bytes nobody asked for) can be there. One write carries a whole enqueue, so a
    dead socket would be found only when its reply fails to come, too late to resend."""
    sock = getattr(conn, "_sock", None)
    if sock is None:
        return False
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def default_url() -> str:
    return os.environ.get("DTQ_REDIS_URL") or DEFAULT_URL


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def _record_json(record: dict[str, Any] | str) -> str:
    return record if isinstance(record, str) else _COMPACT.encode(record)


PUSH_PREFIX = "push\x1e"  # a control message carrying jobs claimed for the supervisor


def _claimed_jobs(queue: str, flat: Sequence[Any]) -> list[ClaimedJob]:
    """Claim replies: per job a metadata string (fields joined by \\x1f) and the data."""
    jobs = []
    for i in range(0, len(flat), 2):
        job_id, attempt, plugin, timeout, memory, failures, score = _s(flat[i]).split("\x1f")
        jobs.append(ClaimedJob(job_id, queue, int(attempt), plugin, _s(flat[i + 1]),
                               float(timeout) if timeout else None,
                               int(float(memory)) if memory else None, int(failures or 0), score))
    return jobs


try:  # redis[hiredis] is a dependency; its C packer, called directly, skips redis-py's
    from hiredis import pack_command as _pack  # wrapper (half the cost of a small call)
except ImportError:  # pragma: no cover - a hand-made install without hiredis
    def _pack(args: tuple[Any, ...]) -> bytes:
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        return b"".join(parts)


# Error codes of a server that refuses commands for a while; it will take them again.
REFUSALS = frozenset({"OOM", "READONLY", "MISCONF", "BUSY", "LOADING", "TRYAGAIN", "CLUSTERDOWN",
                      "MASTERDOWN", "NOREPLICAS"})
_MAPPED = ((redis.exceptions.OutOfMemoryError, "OOM"), (redis.exceptions.ReadOnlyError, "READONLY"),
           (redis.exceptions.BusyLoadingError, "LOADING"), (redis.exceptions.TryAgainError, "TRYAGAIN"),
           (redis.exceptions.MasterDownError, "MASTERDOWN"),
           (redis.exceptions.ClusterDownError, "CLUSTERDOWN"))


def _error_reply(exc: redis.RedisError) -> tuple[str, str]:
    """The code word and the text of an error reply. redis-py strips the code from the
    errors it maps (recent versions keep it as ``status_code``) and puts the failed
    command before an error in a pipeline."""
    text = str(exc).split(" of pipeline caused error: ", 1)[-1]
    code = getattr(exc, "status_code", None) or next(
        (mapped for cls, mapped in _MAPPED if isinstance(exc, cls)), None)
    if code is None:
        return text.split(" ", 1)[0], text
    return code, text if text.startswith(code) else f"{code} {text}"


class _SendFailed(Exception):
    """A write of _run_streamed failed: the connection was dead before we used it."""


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class RedisEngine(RedisRegistry, Engine):
    """The default engine. ``url`` may carry a password, an ACL user and ``rediss://``."""

    def __init__(self, url: str | None = None, *, client: redis.Redis | None = None,
                 defaults: Defaults | None = None, clock: Callable[[], float] = time.time,
                 socket_timeout: float = 10.0) -> None:
        self.url = url or default_url()
        self.defaults = defaults or Defaults()
        self._clock = clock
        try:
            self.client = client or redis.Redis.from_url(
                self.url, socket_timeout=socket_timeout, socket_connect_timeout=2.0,
                health_check_interval=30)
        except ValueError as exc:
            raise EngineUnavailable(f"bad Redis URL {self.url!r}: {exc}") from None
        self._shas = {n: hashlib.sha1(script_source(n).encode()).hexdigest() for n in SCRIPT_NAMES}
        self._loaded = False
        self._own: Any = None  # see _connection
        self._own_pid = os.getpid()
        self._own_lock = threading.Lock()
        self._in_flight = CallsInFlight(self)

    # --- plumbing ----------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (redis.AuthenticationError, redis.exceptions.NoPermissionError) as exc:  # first
            raise EngineUnavailable(f"Redis at {self._where()} refused us: {exc}") from None
        except redis.exceptions.BusyLoadingError as exc:  # a ConnectionError, but it answers
            raise self.refusal(exc) or self.unavailable(exc) from None
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise self.unavailable(exc) from None
        except redis.ResponseError as exc:
            if "NOAUTH" in str(exc) or "NOPERM" in str(exc) or "WRONGPASS" in str(exc):
                raise EngineUnavailable(f"Redis at {self._where()} refused us: {exc}") from None
            # Any other error reply is a data error (a key of ours overwritten with the wrong
            # type, say): the supervisor must survive it too, holding what it has and
            # trying again, while the message tells the operator what to repair.
            raise self.refusal(exc) or self.error_reply(exc) from None

    def unavailable(self, exc: Exception) -> EngineUnavailable:
        """The error for a connection failure, naming the server (one wording everywhere)."""
        return EngineUnavailable(f"Redis at {self._where()} is unreachable: {exc}")

    def refusal(self, exc: redis.RedisError) -> EngineUnavailable | None:
        """The error for a server that refuses commands for a while (memory full, a replica
        after a failover, a failed save, a long script...): like an unreachable one, it is
        waited for and nothing is lost. None for any other error reply (a data error)."""
        code, text = _error_reply(exc)
        if code not in REFUSALS:
            return None
        return EngineUnavailable(f"Redis at {self._where()} refuses commands: {text}")

    def error_reply(self, exc: redis.RedisError) -> EngineUnavailable:
        """The error for any other error reply: a data error, not a server state."""
        return EngineUnavailable(f"Redis at {self._where()} answered with an error: {exc}")

    def _where(self) -> str:
        kw = self.client.connection_pool.connection_kwargs
        return f"{kw.get('host', kw.get('path', '?'))}:{kw.get('port', '')}"

    def _load_scripts(self) -> None:
        """(Re)load every script: after a Redis restart its script cache is empty."""
        pipe = self.client.pipeline(transaction=False)
        for name in SCRIPT_NAMES:
            pipe.script_load(script_source(name))
        for name, sha in zip(SCRIPT_NAMES, pipe.execute(), strict=True):
            self._shas[name] = _s(sha)
        self._loaded = True

    def _run(self, name: str, key: str, args: Sequence[Any]) -> Any:
        """One script call by SHA, loading the scripts when Redis does not know them."""
        if not self._loaded:
            self._load_scripts()
        try:
            return self.client.evalsha(self._shas[name], 1, key, *args)
        except redis.exceptions.NoScriptError:
            self._load_scripts()
            return self.client.evalsha(self._shas[name], 1, key, *args)

    def _run_many(self, calls: Sequence[tuple[str, str, Sequence[Any]]],
                  extra: Callable[[Any], None] | None = None) -> list[Any]:
        """Several script calls in one round trip (plus ``extra`` commands queued first).

        A call refused with NOSCRIPT did nothing, so only those are sent again.
        """
        if not self._loaded:
            self._load_scripts()
        pipe = self.client.pipeline(transaction=False)
        if extra is not None:
            extra(pipe)
        skip = len(pipe)
        self._queue_calls(pipe, calls)
        replies = pipe.execute(raise_on_error=False)[skip:]
        return self.rerun_unknown_scripts(calls, replies)

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A connection for direct sends: our own one, kept across calls, unless another
        thread holds it (then one from the pool). Checking one out of redis-py's pool
        costs ~0.1 ms when the caches are cold, a tenth of an idle enqueue-to-start.
        """
        pool = self.client.connection_pool
        if self._own_pid != os.getpid():  # forked: the parent's connection is not ours
            self._own, self._own_pid, self._own_lock = None, os.getpid(), threading.Lock()
        if not self._own_lock.acquire(blocking=False):
            conn = pool.get_connection()
            try:
                yield conn
            finally:
                pool.release(conn)
            return
        try:
            if self._own is None:
                self._own = pool.get_connection()  # never released: it stays ours
            elif _closed_by_peer(self._own):  # Redis restarted or dropped us while we were idle
                self._own.disconnect()  # the next send connects afresh
            yield self._own
        finally:
            self._own_lock.release()

    def _run_streamed(self, calls: Iterable[tuple[str, str, Sequence[Any]]],
                      first: Sequence[Any] | None = None) -> list[Any]:
        """Enqueue script calls sent as ``calls`` builds them, replies read at the end.

        Redis runs call k while Python builds call k+1 (a pipeline would build them
        all first): bulk enqueue is bounded by the slower side, not by their sum.
        Small calls share one write (one wake-up of Redis for a single enqueue).
        ``first`` is one plain command sent before the scripts; its reply is dropped.
        A connection found dead while sending (Redis restarted since our last call)
        is replaced once and everything sent again: enqueue is idempotent by job id.
        """
        if not self._loaded:
            self._load_scripts()
        calls = iter(calls)
        sent: list[tuple[str, str, Sequence[Any]]] = []
        try:
            replies = self._send_and_read(calls, first, sent, retry_allowed=True)
        except _SendFailed:
            replies = self._send_and_read(itertools.chain(list(sent), calls), first, sent := [],
                                          retry_allowed=False)
        return self.rerun_unknown_scripts(sent, replies)

    def rerun_unknown_scripts(self, calls: Sequence[tuple[str, str, Sequence[Any]]],
                              replies: list[Any]) -> list[Any]:
        """``replies`` with the calls Redis refused with NOSCRIPT (it restarted since we
        loaded the scripts: they did nothing) run again; raises the first other error,
        as EngineUnavailable when the server refuses commands for now (see `refusal`)."""
        missing = [i for i, r in enumerate(replies) if isinstance(r, redis.exceptions.NoScriptError)]
        with self._errors():
            if missing:  # once: a second NOSCRIPT is raised like any other error
                self._load_scripts()
                pipe = self.client.pipeline(transaction=False)
                self._queue_calls(pipe, [calls[i] for i in missing])
                for i, reply in zip(missing, pipe.execute(raise_on_error=False), strict=True):
                    replies[i] = reply
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return replies

    def _queue_calls(self, pipe: Any, calls: Sequence[tuple[str, str, Sequence[Any]]]) -> None:
        """Script calls by SHA, added to a pipeline."""
        for name, key, args in calls:
            pipe.evalsha(self._shas[name], 1, key, *args)

    def pack_calls(self, calls: Sequence[tuple[str, str, Sequence[Any]]]) -> bytes:
        """Script calls by SHA as the bytes of one write."""
        return b"".join(_pack(("EVALSHA", self._shas[name], 1, key, *args)) for name, key, args in calls)

    def _send_and_read(self, calls: Iterator[tuple[str, str, Sequence[Any]]],
                       first: Sequence[Any] | None,
                       sent: list[tuple[str, str, Sequence[Any]]], *, retry_allowed: bool) -> list[Any]:
        """One attempt of _run_streamed; with ``retry_allowed``, a failed write raises
        _SendFailed (no reply was read yet) instead of the connection error."""
        replies: list[Any] = []
        with self._connection() as conn:
            try:
                out: list[bytes] = [_pack(first)] if first is not None else []
                size = sum(map(len, out))
                for call in calls:
                    name, key, args = call
                    packed = _pack(("EVALSHA", self._shas[name], 1, key, *args))
                    out.append(packed)
                    size += len(packed)
                    sent.append(call)
                    if size >= _SEND_AT:
                        self._send(conn, out, retry_allowed)
                        out, size = [], 0
                if out:
                    self._send(conn, out, retry_allowed)
                if first is not None:
                    conn.read_response()
                for _ in sent:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:
                        replies.append(exc)
            except BaseException:
                conn.disconnect()  # replies may be left unread: start afresh next time
                raise
        return replies

    @staticmethod
    def _send(conn: Any, out: list[bytes], retry_allowed: bool) -> None:
        """One write for all of ``out``: redis-py sends each item of a list with its own
        sendall, and each segment wakes Redis on its own."""
        try:
            conn.send_packed_command([b"".join(out)], check_health=False)
        except (redis.ConnectionError, OSError) as exc:
            if retry_allowed:
                raise _SendFailed from exc
            raise

    def ping(self) -> None:
        with self._errors():
            self.client.ping()

    # --- producers -----------------------------------------------------------
    @staticmethod
    def _job_args(job: Job) -> list[Any]:
        """The 5 script arguments of one job; options only when any differs from the default."""
        o = job.options
        if (o.priority == 0 and o.run_at is None and o.timeout is None and o.memory_limit is None
                and o.max_attempts is None and o.backoff is None and o.result_ttl is None):
            return [job.id, job.plugin, job.data_json, "", ""]
        opts = o.to_wire()
        run_at = opts.pop("run_at", None)
        opts.pop("queue")  # the key says which queue
        if not opts.get("priority"):
            opts.pop("priority")
        return [job.id, job.plugin, job.data_json, json.dumps(opts) if opts else "",
                "" if run_at is None else int(run_at * 1000)]

    def enqueue_many(self, jobs: Sequence[Job]) -> list[EnqueueResult]:
        by_queue: dict[str, list[int]] = defaultdict(list)
        for index, job in enumerate(jobs):
            by_queue[job.options.queue].append(index)
        now = self._now_ms()
        spans = [(queue, chunk) for queue, indexes in by_queue.items() for chunk in _chunks(indexes)]
        calls = (self._enqueue_call(queue, now, [jobs[i] for i in chunk]) for queue, chunk in spans)
        with self._errors():
            replies = self._run_streamed(calls, first=("SADD", keys.QUEUES, *by_queue)) if spans else []
        results: list[EnqueueResult | None] = [None] * len(jobs)
        for (queue, chunk), existed in zip(spans, replies, strict=True):
            for pos in range(0, len(existed), 2):
                i = chunk[int(existed[pos]) - 1]
                results[i] = EnqueueResult(jobs[i].id, queue, False, _s(existed[pos + 1]))
            for i in chunk:
                if results[i] is None:
                    results[i] = self._created(jobs[i], now)
        return results  # type: ignore[return-value]  # every slot is filled above

    def enqueue(self, job: Job) -> EnqueueResult:
        """One job: enqueue_many's script without its batching (the idle-latency path)."""
        queue = job.options.queue
        now = self._now_ms()
        with self._errors():
            existed = self._run_streamed([self._enqueue_call(queue, now, [job])],
                                         first=("SADD", keys.QUEUES, queue))[0]
        if existed:
            return EnqueueResult(job.id, queue, False, _s(existed[1]))
        return self._created(job, now)

    def _enqueue_call(self, queue: str, now_ms: int, jobs: Sequence[Job]) -> tuple[str, str, list[Any]]:
        """One call of the enqueue script for jobs of one queue (at most CHUNK of them)."""
        qk = keys.QueueKeys(queue)
        args: list[Any] = [qk.prefix, now_ms, queue]
        for job in jobs:
            args += self._job_args(job)
        return ("enqueue", qk.ready, args)

    @staticmethod
    def _created(job: Job, now_ms: int) -> EnqueueResult:
        """The result of a job the enqueue script stored (it says only which existed)."""
        run_at = job.options.run_at
        scheduled = run_at is not None and int(run_at * 1000) > now_ms
        return EnqueueResult(job.id, job.options.queue, True, "scheduled" if scheduled else "queued")

    # --- supervisors ---------------------------------------------------------
    def claim(self, queue: str, holder: str, count: int, lease: float,
              standby: float = 0.0) -> ClaimResult:
        with self._errors():
            reply = self._run(*self._claim_call(queue, holder, count, lease, standby))
        return self._claim_result(queue, reply)

    def _claim_call(self, queue: str, holder: str, count: int, lease: float,
                    standby: float) -> tuple[str, str, list[Any]]:
        qk = keys.QueueKeys(queue)
        return ("claim", qk.ready, [qk.prefix, self._now_ms(), count, holder, int(lease * 1000),
                                    int(standby * 1000)])

    @staticmethod
    def _claim_result(queue: str, reply: list[Any]) -> ClaimResult:
        next_due = float(reply[0]) / 1000.0 if int(reply[0]) >= 0 else None
        return ClaimResult(_claimed_jobs(queue, reply[1:]), next_due)

    def finish_soon(self, holder: str, outcomes: Sequence[Outcome],
                    on_reply: Callable[[list[str]], None],
                    on_lost: Callable[[EngineUnavailable], None]) -> None:
        calls, order = self._finish_calls(holder, outcomes)
        self._in_flight.send(
            calls, lambda replies: on_reply(self._finish_states(outcomes, order, replies)), on_lost)

    def claim_soon(self, queue: str, holder: str, count: int, lease: float, standby: float,
                   on_reply: Callable[[ClaimResult], None],
                   on_lost: Callable[[EngineUnavailable], None]) -> None:
        self._in_flight.send([self._claim_call(queue, holder, count, lease, standby)],
                             lambda replies: on_reply(self._claim_result(queue, replies[0])), on_lost)

    def replies_fileno(self) -> int:
        return self._in_flight.fileno()

    def read_replies(self, wait: bool = False) -> None:
        self._in_flight.read(wait)

    def pushed_jobs(self, message: str) -> list[ClaimedJob] | None:
        """The jobs an enqueue claimed for this supervisor while it stood by (see claim and
        lib.lua push_to_standby): "push", queue, then metadata and data per job, by \\x1e."""
        if not message.startswith(PUSH_PREFIX):
            return None
        queue, *flat = message[len(PUSH_PREFIX):].split("\x1e")
        if not flat or len(flat) % 2:
            return []
        try:
            return _claimed_jobs(queue, flat)
        except ValueError:  # not written by enqueue.lua: someone else published it
            return []

    def admit_inbox(self, queue: str, limit: int = 100) -> int:
        qk = keys.QueueKeys(queue)
        with self._errors():
            for _ in range(5):  # another supervisor may admit the same head first
                raw_entries = self.client.lrange(qk.inbox, 0, limit - 1)
                if not raw_entries:
                    return 0
                args: list[Any] = [qk.prefix, self._now_ms(), len(raw_entries)]
                for raw in raw_entries:
                    args.extend(self._admission(queue, raw))
                admitted = int(self._run("admit", qk.inbox, args))
                if admitted >= 0:
                    self.client.sadd(keys.QUEUES, queue)
                    return admitted
        return 0

    def _admission(self, queue: str, raw: bytes) -> list[Any]:
        """The 7 script arguments for one inbox entry: a valid job, or a dead letter."""
        try:
            job = parse_envelope(raw)
            if job.options.queue != queue:
                raise InvalidJob("options.queue", f"says {job.options.queue!r} but the entry "
                                 f"was pushed to the inbox of {queue!r}")
            return [raw, "1", *self._job_args(job)]
        except InvalidJob as exc:
            return [raw, "0", self._dead_letter_id(raw), str(exc), "", "", ""]

    @staticmethod
    def _dead_letter_id(raw: bytes) -> str:
        """The producer's id when one can be read (so it can look the job up), else a new one."""
        try:
            return "bad-" + parse_id(json.loads(raw)["id"])[:100]
        except Exception:  # noqa: BLE001 - any unreadable entry gets a fresh id
            return f"bad-{int(time.time() * 1000)}-{random.getrandbits(40):010x}"

    def renew(self, holder: str, jobs: Sequence[ClaimedJob], lease: float) -> RenewResult:
        lost: list[str] = []
        cancel: list[str] = []
        now = self._now_ms()
        with self._errors():
            for queue, held in self._by_queue(jobs).items():
                qk = keys.QueueKeys(queue)
                args: list[Any] = [qk.prefix, now, holder, int(lease * 1000)]
                for job in held:
                    args += [job.id, job.attempt]
                reply = [_s(x) for x in self._run("renew", qk.running, args)]
                split = reply.index("|")
                lost += reply[:split]
                cancel += reply[split + 1:]
        return RenewResult(lost, cancel)

    @staticmethod
    def _by_queue(jobs: Sequence[ClaimedJob]) -> dict[str, list[ClaimedJob]]:
        grouped: dict[str, list[ClaimedJob]] = defaultdict(list)
        for job in jobs:
            grouped[job.queue].append(job)
        return grouped

    def finish(self, holder: str, outcomes: Sequence[Outcome]) -> list[str]:
        calls, order = self._finish_calls(holder, outcomes)
        with self._errors():
            replies = self._run_many(calls)
        return self._finish_states(outcomes, order, replies)

    def _finish_calls(self, holder: str, outcomes: Sequence[Outcome]
                      ) -> tuple[list[tuple[str, str, list[Any]]], list[tuple[str, list[int]]]]:
        """The complete/fail script calls for ``outcomes``, and which outcomes each covers."""
        now = self._now_ms()
        ttl = int(self.defaults.result_ttl * 1000)
        order: list[tuple[str, list[int]]] = []
        calls: list[tuple[str, str, list[Any]]] = []
        grouped: dict[tuple[str, bool], list[int]] = defaultdict(list)
        for i, out in enumerate(outcomes):
            grouped[(out.job.queue, out.kind == "done")].append(i)
        for (queue, done), indexes in grouped.items():
            qk = keys.QueueKeys(queue)
            for chunk in _chunks(indexes):
                calls.append(self._finish_call(qk, done, [outcomes[i] for i in chunk], now, holder, ttl))
                order.append(("done" if done else "fail", list(chunk)))
        return calls, order

    @staticmethod
    def _finish_states(outcomes: Sequence[Outcome], order: list[tuple[str, list[int]]],
                       replies: Sequence[Any]) -> list[str]:
        states = ["stale"] * len(outcomes)
        for (kind, chunk), reply in zip(order, replies, strict=True):
            for i, value in zip(chunk, reply, strict=True):
                states[i] = ("done" if int(value) else "stale") if kind == "done" else _s(value)
        return states

    def _finish_call(self, qk: keys.QueueKeys, done: bool, outs: list[Outcome], now: int,
                     holder: str, ttl: int) -> tuple[str, str, list[Any]]:
        if done:
            args: list[Any] = [qk.prefix, now, holder, ttl]
            for out in outs:
                args += [out.job.id, out.job.attempt, out.result_json, _record_json(out.record)]
            return ("complete", qk.running, args)
        d = self.defaults
        args = [qk.prefix, now, holder, ttl, d.max_attempts, d.backoff]
        for out in outs:
            args += [out.job.id, out.job.attempt, out.reason, _record_json(out.record), out.kind,
                     random.random()]
        return ("fail", qk.running, args)

    def set_progress(self, progress: dict[tuple[str, str], dict[str, Any]]) -> None:
        calls = [("progress", keys.QueueKeys(queue).job(job_id), [json.dumps(value)])
                 for (queue, job_id), value in progress.items()]
        with self._errors():
            self._run_many(calls)

    def give_back(self, holder: str, jobs: Sequence[ClaimedJob]) -> int:
        given = 0
        with self._errors():
            for queue, held in self._by_queue(jobs).items():
                qk = keys.QueueKeys(queue)
                args: list[Any] = [qk.prefix, self._now_ms(), holder]
                for job in held:
                    args += [job.id, job.attempt, job.score]
                given += sum(int(x) for x in self._run("give_back", qk.running, args))
        return given

    def give_back_unknown(self, queue: str, holder: str, known: Sequence[str],
                          lease_before: float) -> list[str]:
        qk = keys.QueueKeys(queue)
        with self._errors():
            reply = self._run("give_back_unknown", qk.running,
                              [qk.prefix, self._now_ms(), holder, int(lease_before * 1000), *known])
        return [_s(x) for x in reply]

    def recover(self, queue: str, holder: str | None = None,
                limit: int = 1000) -> list[tuple[str, str]]:
        qk = keys.QueueKeys(queue)
        d = self.defaults
        with self._errors():
            reply = self._run("recover", qk.running, [
                qk.prefix, self._now_ms(), int(d.result_ttl * 1000), d.max_attempts, d.backoff,
                limit, holder or "", random.random() * _RECOVER_JITTER * 2])
        return [(_s(reply[i]), _s(reply[i + 1])) for i in range(0, len(reply), 2)]

    # --- clients and operators -------------------------------------------------
    def status(self, job_id: str, queue: str) -> JobStatus | None:
        with self._errors():
            raw = self.client.hgetall(keys.QueueKeys(queue).job(job_id))
        return status_from_hash(queue, raw) if raw else None

    def wait(self, job_id: str, queue: str, timeout: float | None) -> JobStatus | None:
        qk = keys.QueueKeys(queue)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._errors():
            state = _s(self._run("watch", qk.job(job_id), []))
            while state not in FINISHED_STATES and state != "missing":
                left = 5.0 if deadline is None else min(5.0, deadline - time.monotonic())
                if left <= 0:
                    if self.client.hincrby(qk.job(job_id), "waiters", -1) < 0:
                        self.client.hdel(qk.job(job_id), "waiters")
                    break
                # BLPOP blocks server-side; the 5 s slices only keep the socket timeout happy.
                self.client.blpop([qk.notify(job_id)], timeout=max(left, 0.01))
                state = _s(self.client.hget(qk.job(job_id), "state") or b"missing")
        return self.status(job_id, queue)

    def cancel(self, job_id: str, queue: str) -> str:
        qk = keys.QueueKeys(queue)
        with self._errors():
            outcome, holder = (_s(x) for x in self._run(
                "cancel", qk.ready, [qk.prefix, self._now_ms(), job_id,
                                     int(self.defaults.result_ttl * 1000)]))
            if outcome == "requested" and holder:
                self.client.publish(keys.control_channel(holder),
                                    json.dumps({"cancel": job_id, "queue": queue}))
        return outcome

    def stats(self, queue: str) -> dict[str, int]:
        qk = keys.QueueKeys(queue)
        with self._errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.zcard(qk.ready)
            pipe.zcard(qk.delayed)
            pipe.zcard(qk.running)
            pipe.zcard(qk.dead)
            pipe.llen(qk.inbox)
            pipe.hgetall(qk.stats)
            pipe.exists(qk.paused)
            ready, scheduled, running, dead, inbox, counters, paused = pipe.execute()
        out = {"ready": ready, "scheduled": scheduled, "running": running, "dead": dead,
               "inbox": inbox, "paused": int(paused)}
        for name in ("enqueued", "done", "failed", "retried", "cancelled", "malformed"):
            out[name] = int(counters.get(name.encode(), 0))
        out["dead_total"] = int(counters.get(b"dead", 0))
        return out
