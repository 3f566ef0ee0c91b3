"""Framing of the supervisor <-> worker pipes: a 4-byte length, then one JSON object
(a successful outcome: a line of text fields, then the result's JSON).

JSON, never pickle: a worker that writes garbage is detected (FrameError) and
killed, and nothing a job sends can run code in the supervisor.
"""

from __future__ import annotations

import functools
import json
import re
import struct
from typing import Any

from dtq.job import ID_PATTERN

HEADER = struct.Struct("!I")
MAX_FRAME = 64 * 1024 * 1024  # a result larger than this is refused by the worker


class FrameError(Exception):
    """The byte stream from a worker is not a valid sequence of frames."""


def encode(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode()
    return HEADER.pack(len(body)) + body


def encode_job(job_id: str, queue: str, attempt: int, plugin: str, data_json: str,
               timeout: float | None, memory_limit: int | None, batched: bool = False) -> bytes:
    """A job message; the job's data is spliced in as the JSON text it already is.

    ``timeout`` (not a deadline): a batched job starts later than it is sent, so the
    worker sets the plugin's deadline when it starts the job. ``batched``: sent as a
    short job, with others around it (the worker hands back those behind it if it runs
    long).
    """
    tail = _job_tail(queue, plugin, timeout, memory_limit)
    kind = '"t":"job","b":1' if batched else '"t":"job"'
    if tail is not None and _plain(job_id):  # validated names: nothing to escape
        body = f'{{{kind},"id":"{job_id}","a":{int(attempt)},{tail}{data_json}}}'.encode()
    else:
        head = json.dumps({"t": "job", **({"b": 1} if batched else {}), "id": job_id, "q": queue,
                           "a": attempt, "p": plugin, "timeout": timeout, "mem": memory_limit},
                          separators=(",", ":"))
        body = (head[:-1] + ',"d":' + data_json + "}").encode()
    return HEADER.pack(len(body)) + body


@functools.lru_cache(maxsize=1024)
def _job_tail(queue: str, plugin: str, timeout: float | None, memory_limit: int | None) -> str | None:
    """The part of a job frame shared by the jobs of one queue, plugin and limits."""
    if not (_plain(queue) and _plain(plugin)):
        return None
    return (f'"q":"{queue}","p":"{plugin}","timeout":{_number(timeout)},'
            f'"mem":{_number(memory_limit)},"d":')


def _plain(text: str) -> bool:
    """A name as dtq validates it (the id pattern's characters include those of queues
    and plugins): it needs no JSON escaping."""
    return ID_PATTERN.fullmatch(text) is not None


def _number(value: float | int | None) -> str:
    return "null" if value is None else repr(float(value)) if isinstance(value, float) else str(int(value))


def encode_done(job_id: str, attempt: int, result_json: str, started: float, finished: float,
                wall: float, cpu: float, rss: int) -> bytes:
    """A successful outcome: its figures as text, a newline, then the result's JSON as is.

    The drain's hot path: the supervisor matches one pattern instead of decoding
    JSON, splices the figures into the attempt record as the text they are, and
    stores the result without decoding it. An id that is not plain (never one dtq
    validated) goes as JSON metadata.
    """
    started, finished, wall, cpu = (max(0.0, x) for x in (started, finished, wall, cpu))
    if _plain(job_id):
        meta = (f"ok\x1f{job_id}\x1f{int(attempt)}\x1f{started:.6f}\x1f{finished:.6f}"
                f"\x1f{wall:.6f}\x1f{cpu:.6f}\x1f{int(rss)}")
    else:
        meta = json.dumps({"t": "ok", "id": job_id, "a": attempt, "started": f"{started:.6f}",
                           "finished": f"{finished:.6f}", "wall": f"{wall:.6f}",
                           "cpu": f"{cpu:.6f}", "rss": rss}, separators=(",", ":"))
    body = (meta + "\n" + result_json).encode()
    return HEADER.pack(len(body)) + body


_DONE = re.compile("ok\x1f(" + ID_PATTERN.pattern.strip("^$") + ")\x1f(\\d+)"
                   + "\x1f(\\d+\\.\\d+)" * 4 + "\x1f(\\d+)")


def _decode_meta(text: str) -> dict[str, Any]:
    if text.startswith("ok\x1f"):
        match = _DONE.fullmatch(text)
        if match is None:
            raise FrameError(f"undecodable done frame: {text[:80]!r}")
        job_id, attempt, started, finished, wall, cpu, rss = match.groups()
        return {"t": "ok", "id": job_id, "a": int(attempt), "started": started,
                "finished": finished, "wall": wall, "cpu": cpu, "rss": rss}
    try:
        message = json.loads(text)
    except ValueError as exc:
        raise FrameError(f"undecodable frame: {exc}") from None
    if not isinstance(message, dict) or "t" not in message:
        raise FrameError("frame is not a message object")
    if message["t"] == "ok":
        for name in _FIGURES:
            if name in message:
                message[name] = _figure(message[name])
        if not _is_count(message.get("rss", 0)):
            raise FrameError(f"done frame with an rss that is not a number: {message['rss']!r}"[:200])
        if "r" in message:  # the result is the text after the newline, never a JSON field
            raise FrameError("done frame with its result inside the metadata")
    elif message["t"] == "err":
        _check_failure(message)
    return message


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_seconds(value: Any) -> bool:
    """A time or duration a worker sent as a JSON number."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e12


def _check_failure(message: dict[str, Any]) -> None:
    """A failure frame's figures are used as numbers and its reason as text: a job that
    writes its own frame (it knows its id and attempt) must not crash the supervisor."""
    for name in ("wall", "cpu"):
        if not _is_seconds(value := message.get(name, 0.0)):
            raise FrameError(f"failure frame with a {name} that is not a number: {value!r}"[:200])
    if not _is_count(message.get("rss", 0)):
        raise FrameError(f"failure frame with an rss that is not a number: {message['rss']!r}"[:200])
    if not isinstance(message.get("e", ""), str) or not isinstance(message.get("perm", False), bool):
        raise FrameError("failure frame whose reason is not text")


_FIGURES = ("started", "finished", "wall", "cpu")
_FIGURE = re.compile(r"\d+\.\d+")


def _figure(value: Any) -> str:
    """A done frame's time or duration as the JSON number text the supervisor splices
    into the attempt record: checked, so a worker cannot write into the record."""
    if isinstance(value, str) and _FIGURE.fullmatch(value):
        return value
    if _is_seconds(value):
        return f"{float(value):.6f}"
    raise FrameError(f"done frame with a figure that is not a number: {value!r}"[:200])


class FrameReader:
    """Accumulates bytes from a pipe and yields complete messages."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buf += data
        out = []
        while len(self._buf) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._buf)
            if size > MAX_FRAME:
                raise FrameError(f"frame of {size} bytes announced (limit {MAX_FRAME})")
            if len(self._buf) < HEADER.size + size:
                break
            body = self._buf[HEADER.size:HEADER.size + size].decode("utf-8", "replace")
            del self._buf[:HEADER.size + size]
            body, newline, raw = body.partition("\n")  # metadata never holds a raw newline
            message = _decode_meta(body)
            if newline:
                message["r"] = raw
            out.append(message)
        return out

    @property
    def pending(self) -> int:
        return len(self._buf)
