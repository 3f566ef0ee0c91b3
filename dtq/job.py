"""The job model: the JSON envelope producers send, its options, and validation.

The wire format is the Perl module's envelope, extended with optional options:

    {"id": "21876931", "job": {"plugin": "montage_image", "data": {...}},
     "options": {"queue": "default", "timeout": 30, "priority": 0, ...}}

Everything here is pure (no Redis, no OS) so producers, the engine and the
supervisor agree on one definition of a valid job.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from dtq.errors import InvalidJob

MAX_ENVELOPE_BYTES = 1024 * 1024  # documented limit on one encoded envelope
MAX_NESTING = 64  # documented limit on JSON depth inside an envelope
ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:@+=-]{1,128}$")
QUEUE_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PLUGIN_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
PRIORITY_RANGE = (-1000, 1000)
MAX_RUN_AT = 253402300799.0  # 9999-12-31T23:59:59Z: later run_at values are refused
MAX_SECONDS = 100 * 365 * 24 * 3600.0  # longest delay or result_ttl (stored in ms by Redis)
MAX_MEMORY_LIMIT = 2**50  # 1 PiB: larger sizes do not survive Lua's doubles
ENVELOPE_FIELDS = frozenset({"id", "job", "options"})
JOB_FIELDS = frozenset({"plugin", "data"})


class JobState(str, enum.Enum):
    """The states a job goes through (see docs/protocol.md)."""

    QUEUED = "queued"  # in the ready set, waiting for a worker
    SCHEDULED = "scheduled"  # waiting for its run-at time (delay or retry backoff)
    RUNNING = "running"  # claimed by a supervisor under a lease
    DONE = "done"  # finished; result kept for result_ttl
    DEAD = "dead"  # failed for good; in the dead-letter queue
    CANCELLED = "cancelled"  # removed by an operator

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.DEAD, JobState.CANCELLED)


FINISHED_STATES = frozenset(s.value for s in JobState if s.finished)  # as stored in Redis


_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(value: Any, field_name: str = "memory_limit") -> int:
    """Bytes from an int or a string like '512M', '1.5G', '2GiB'."""
    if isinstance(value, bool):
        raise InvalidJob(field_name, "must be a size such as 536870912 or '512M'")
    if isinstance(value, int) and 0 < value <= MAX_MEMORY_LIMIT:
        return value
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([KMGT]?)(?:I?B)?\s*", value.upper())
        if m and 0 < float(m.group(1)) * _SIZE_UNITS[m.group(2)] <= MAX_MEMORY_LIMIT:
            return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    raise InvalidJob(field_name, "must be a positive size (at most 1 PiB) such as 536870912 or '512M', "
                     f"got {repr(value)[:40]}")


def _positive_number(name: str, value: Any, *, allow_zero: bool = False,
                     maximum: float = math.inf) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value))):
        raise InvalidJob(f"options.{name}", f"must be a number, got {value!r}")
    if value > min(maximum, 1e300):  # a huge JSON integer does not even convert to float
        limit = f"at most {maximum:.0f}" if maximum < math.inf else "a smaller number"
        raise InvalidJob(f"options.{name}", f"must be {limit}, got {str(value)[:30]}")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidJob(f"options.{name}", f"must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


def _int_in(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidJob(f"options.{name}", f"must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidJob(f"options.{name}", f"must be between {low} and {high}, got {value}")
    return value


@dataclass(frozen=True)
class JobOptions:
    """Per-job options; None means 'use the queue's or the supervisor's default'."""

    queue: str = "default"
    timeout: float | None = None  # seconds
    memory_limit: int | None = None  # bytes
    max_attempts: int | None = None
    backoff: float | None = None  # base seconds of the exponential retry backoff
    priority: int = 0  # strict: higher runs first
    run_at: float | None = None  # epoch seconds; absent means now
    result_ttl: float | None = None  # seconds the result is kept

    def to_wire(self) -> dict[str, Any]:
        """The options a job carries in Redis (only those that are set)."""
        out: dict[str, Any] = {"queue": self.queue, "priority": self.priority}
        for name in ("timeout", "memory_limit", "max_attempts", "backoff", "run_at", "result_ttl"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


def _unknown_names(obj: dict[Any, Any], known: frozenset[str]) -> list[str]:
    """The keys of ``obj`` not in ``known``, sorted, as printable UTF-8-safe text.

    Keys may be lone surrogates (the JSON escape "\\ud800") or, from Python callers,
    not strings at all; either must still give an InvalidJob whose message Redis can store.
    """
    if obj.keys() <= known:  # the usual case, without building anything
        return []
    return sorted(str(k).encode("utf-8", "backslashreplace").decode("utf-8")
                  for k in obj if k not in known)


OPTION_NAMES = frozenset(
    {"queue", "timeout", "memory_limit", "max_attempts", "backoff", "priority",
     "run_at", "delay", "result_ttl"}
)


def parse_options(raw: Any, *, now: float | None = None, default_queue: str = "default") -> JobOptions:
    """Validate the ``options`` object of an envelope (``delay`` becomes ``run_at``)."""
    if not raw and (raw is None or isinstance(raw, dict)):
        return _default_options(default_queue)
    if not isinstance(raw, dict):
        raise InvalidJob("options", f"must be an object, got {type(raw).__name__}")
    unknown = _unknown_names(raw, OPTION_NAMES)
    if unknown:
        known = ", ".join(sorted(OPTION_NAMES))
        raise InvalidJob(f"options.{unknown[0]}", f"unknown option (known: {known})")
    queue = _check_queue(raw.get("queue", default_queue))
    if "delay" in raw and "run_at" in raw:
        raise InvalidJob("options.delay", "give either delay or run_at, not both")
    run_at = None
    if "run_at" in raw:
        run_at = _positive_number("run_at", raw["run_at"], maximum=MAX_RUN_AT)
    elif "delay" in raw:
        delay = _positive_number("delay", raw["delay"], allow_zero=True, maximum=MAX_SECONDS)
        run_at = (time.time() if now is None else now) + delay if delay else None
    return JobOptions(
        queue=queue,
        timeout=_positive_number("timeout", raw["timeout"]) if "timeout" in raw else None,
        memory_limit=parse_size(raw["memory_limit"], "options.memory_limit")
        if "memory_limit" in raw else None,
        max_attempts=_int_in("max_attempts", raw["max_attempts"], 1, 1000)
        if "max_attempts" in raw else None,
        backoff=_positive_number("backoff", raw["backoff"], allow_zero=True)
        if "backoff" in raw else None,
        priority=_int_in("priority", raw.get("priority", 0), *PRIORITY_RANGE),
        run_at=run_at,
        result_ttl=_positive_number("result_ttl", raw["result_ttl"], maximum=MAX_SECONDS)
        if "result_ttl" in raw else None,
    )


@functools.lru_cache(maxsize=256)
def _default_options(queue: str) -> JobOptions:
    """Options of a job that carries none (validated once per queue name)."""
    return JobOptions(queue=_check_queue(queue))


def _check_queue(queue: Any) -> str:
    # fullmatch: the patterns end in $, which also matches before a final newline
    if not isinstance(queue, str) or not QUEUE_PATTERN.fullmatch(queue):
        raise InvalidJob("options.queue", f"must match {QUEUE_PATTERN.pattern}, got {queue!r}")
    return queue


class Job(NamedTuple):
    """A validated job, ready to be stored by an engine.

    A NamedTuple rather than a frozen dataclass: as immutable, and built in a quarter
    of the time, which counts when enqueue_many validates 100,000 jobs.
    """

    id: str
    plugin: str
    data: Any
    options: JobOptions = JobOptions()
    data_json: str = ""  # the data, encoded once

    def to_envelope(self) -> dict[str, Any]:
        return {"id": self.id, "job": {"plugin": self.plugin, "data": self.data},
                "options": self.options.to_wire()}


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _fast_encode() -> Any:
    """_ENCODER.encode without building a C encoder per call (a third of its cost).

    Uses the json module's C accelerator when this Python has it, else the plain method.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    try:  # markers=None: no cycle check; a cycle ends in RecursionError (see build_job)
        encoder = make(None, _ENCODER.default, json.encoder.encode_basestring, None, ":", ",",
                       False, False, False)

        def encode(value: Any) -> str:
            if isinstance(value, str):
                return json.encoder.encode_basestring(value)
            return "".join(encoder(value, 0))

        sample = {"a": [1, 2.5, "\u00e9\n", None, True], "b": {}}
        if encode(sample) == _ENCODER.encode(sample):
            return encode
    except Exception:  # noqa: BLE001 - no accelerator, or another signature: the plain way
        pass
    return _ENCODER.encode


_encode = _fast_encode()


class _IdSource:
    """Random 128-bit hex ids, read from os.urandom 256 at a time (one system call,
    not one per job). Emptied in a forked child, which must never reuse its parent's.
    """

    def __init__(self) -> None:
        self._ids: list[str] = []
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._ids = []

    def next(self) -> str:
        while True:
            try:
                return self._ids.pop()  # atomic: threads may share the source
            except IndexError:
                block = os.urandom(16 * 256).hex()
                self._ids = [block[i:i + 32] for i in range(0, len(block), 32)]


_ids = _IdSource()


def new_job_id() -> str:
    """A random, URL-safe id for jobs whose producer gave none."""
    return _ids.next()


def _check_depth(value: Any, limit: int = MAX_NESTING) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise InvalidJob("job.data", f"nested deeper than {limit} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def parse_id(raw: Any) -> str:
    """A job id: a string (or integer, as Perl producers send) of safe characters."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        raise InvalidJob("id", f"must be a string, got {type(raw).__name__}")
    job_id = str(raw)
    if not ID_PATTERN.fullmatch(job_id):
        raise InvalidJob("id", f"must be 1-128 characters of [A-Za-z0-9_.:@+=-], got {job_id[:40]!r}")
    return job_id


_valid_plugins: set[str] = set()  # names seen valid (bounded): most batches use one or two


def _valid_plugin(plugin: str) -> bool:
    if not PLUGIN_PATTERN.fullmatch(plugin):
        return False
    if len(_valid_plugins) < 1024:
        _valid_plugins.add(plugin)
    return True


def build_job(plugin: Any, data: Any, job_id: Any = None, options: Any = None,
              *, now: float | None = None, default_queue: str = "default") -> Job:
    """Validate the parts of a job and return it, with an id generated when none is given."""
    if not isinstance(plugin, str) or (plugin not in _valid_plugins and not _valid_plugin(plugin)):
        raise InvalidJob("job.plugin", f"must be a plugin name like 'montage_image', got {plugin!r}")
    try:  # encode first: fewer brackets than levels allowed proves the depth (no walk)
        data_json = _encode(data)
    except RecursionError:  # a cycle, or far too deep
        _check_depth(data)
        raise InvalidJob("job.data", "is not JSON-serialisable: nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise InvalidJob("job.data", f"is not JSON-serialisable: {exc}") from None
    if data_json.count("[") + data_json.count("{") >= MAX_NESTING:
        _check_depth(data)
    try:
        size = len(data_json) if data_json.isascii() else len(data_json.encode())
    except UnicodeEncodeError as exc:  # a lone surrogate, e.g. from the JSON escape "\ud800"
        raise InvalidJob("job.data", f"is not valid Unicode ({exc.reason})") from None
    if size > MAX_ENVELOPE_BYTES:
        raise InvalidJob("job.data", f"is larger than {MAX_ENVELOPE_BYTES} bytes")
    options = parse_options(options, now=now, default_queue=default_queue)
    if job_id is None:
        return Job(new_job_id(), plugin, data, options, data_json)
    return Job(parse_id(job_id), plugin, data, options, data_json)


def parse_envelope(envelope: Any, *, now: float | None = None, default_queue: str = "default") -> Job:
    """Validate an envelope (a dict, or its JSON text/bytes); raise InvalidJob naming the field."""
    if isinstance(envelope, (bytes, bytearray)):
        if len(envelope) > MAX_ENVELOPE_BYTES:
            raise InvalidJob("envelope", f"is larger than {MAX_ENVELOPE_BYTES} bytes")
        try:
            envelope = envelope.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidJob("envelope", f"is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if isinstance(envelope, str):
        envelope = decode_json(envelope)
    if not isinstance(envelope, dict):
        raise InvalidJob("envelope", f"must be a JSON object, got {type(envelope).__name__}")
    unknown = _unknown_names(envelope, ENVELOPE_FIELDS)
    if unknown:
        raise InvalidJob(unknown[0], "unknown field (an envelope has id, job and options)")
    job = envelope.get("job")
    if not isinstance(job, dict):
        raise InvalidJob("job", "is required and must be an object with plugin and data")
    unknown = _unknown_names(job, JOB_FIELDS)
    if unknown:
        raise InvalidJob(f"job.{unknown[0]}", "unknown field (a job has plugin and data)")
    if "plugin" not in job:
        raise InvalidJob("job.plugin", "is required")
    return build_job(job["plugin"], job.get("data"), envelope.get("id"),
                     envelope.get("options"), now=now, default_queue=default_queue)


def decode_json(text: str) -> Any:
    """json.loads with size and depth limits turned into InvalidJob."""
    if len(text) > MAX_ENVELOPE_BYTES:
        raise InvalidJob("envelope", f"is larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        return json.loads(text)
    except RecursionError:
        raise InvalidJob("envelope", f"nested deeper than {MAX_NESTING} levels") from None
    except ValueError as exc:
        raise InvalidJob("envelope", f"is not valid JSON ({exc})") from None
