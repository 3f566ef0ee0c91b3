"""The job model: the envelope producers send, its options, and every way it can be wrong."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtq.engine.redis_engine import RedisEngine
from dtq.errors import InvalidJob
from dtq.job import (
    MAX_ENVELOPE_BYTES,
    MAX_NESTING,
    MAX_RUN_AT,
    MAX_SECONDS,
    OPTION_NAMES,
    Job,
    JobOptions,
    JobState,
    build_job,
    parse_envelope,
    parse_size,
)

PERL_ENVELOPE = {
    "id": "21876931",
    "job": {
        "plugin": "montage_image",
        "data": {"images": ["/srv/in/a.jpg", "/srv/in/b.jpg"], "output": "/srv/out/s.jpg",
                 "tile": "2x1", "geometry": "200x200+4+4", "label": "%f"},
    },
}


def envelope(**options: object) -> dict:
    return {"id": "j1", "job": {"plugin": "p", "data": {"x": 1}}, "options": options}


def invalid(env: object, **kw: object) -> InvalidJob:
    with pytest.raises(InvalidJob) as info:
        parse_envelope(env, **kw)
    return info.value


def nested(levels: int) -> object:
    """``levels`` lists inside each other, the innermost empty."""
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


# --- the Perl envelope -------------------------------------------------------------------


@pytest.mark.parametrize("form", ["dict", "text", "bytes"])
def test_perl_envelope_is_accepted_as_is(form: str) -> None:
    raw = {"dict": PERL_ENVELOPE, "text": json.dumps(PERL_ENVELOPE),
           "bytes": json.dumps(PERL_ENVELOPE).encode()}[form]
    job = parse_envelope(raw)
    assert job.id == "21876931"
    assert job.plugin == "montage_image"
    assert job.data == PERL_ENVELOPE["job"]["data"]
    assert json.loads(job.data_json) == PERL_ENVELOPE["job"]["data"]
    assert job.options == JobOptions()


def test_defaults_when_no_options() -> None:
    opts = parse_envelope(PERL_ENVELOPE).options
    assert opts.queue == "default"
    assert opts.priority == 0
    assert (opts.timeout, opts.memory_limit, opts.max_attempts, opts.backoff, opts.run_at,
            opts.result_ttl) == (None,) * 6
    assert opts.to_wire() == {"queue": "default", "priority": 0}


def test_default_queue_is_the_callers() -> None:
    assert parse_envelope(PERL_ENVELOPE, default_queue="images").options.queue == "images"
    assert parse_envelope(envelope(queue="other"), default_queue="images").options.queue == "other"


def test_data_may_be_absent_or_any_json_value() -> None:
    assert parse_envelope({"job": {"plugin": "p"}}).data is None
    for data in (0, "text", [1, 2], {"a": None}, True, 1.5):
        job = parse_envelope({"job": {"plugin": "p", "data": data}})
        assert job.data == data
        assert json.loads(job.data_json) == data


def test_data_json_is_compact_and_keeps_unicode() -> None:
    job = parse_envelope({"job": {"plugin": "p", "data": {"name": "Zoë", "n": [1, 2]}}})
    assert job.data_json == '{"name":"Zoë","n":[1,2]}'


def test_to_envelope_round_trips() -> None:
    job = parse_envelope(envelope(queue="q1", timeout=5, memory_limit="1G", max_attempts=2,
                                  backoff=0.5, priority=7, run_at=2e9, result_ttl=60))
    again = parse_envelope(json.dumps(job.to_envelope()))
    assert again == job


# --- options: valid --------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "attr", "expected"), [
    ("queue", "images", "queue", "images"),
    ("queue", "a.b-c_1", "queue", "a.b-c_1"),
    ("queue", "q" * 64, "queue", "q" * 64),
    ("timeout", 30, "timeout", 30.0),
    ("timeout", 0.25, "timeout", 0.25),
    ("memory_limit", 536870912, "memory_limit", 536870912),
    ("memory_limit", "512M", "memory_limit", 512 * 2**20),
    ("memory_limit", "512m", "memory_limit", 512 * 2**20),
    ("memory_limit", "1.5G", "memory_limit", int(1.5 * 2**30)),
    ("memory_limit", "2GiB", "memory_limit", 2 * 2**30),
    ("memory_limit", "64K", "memory_limit", 64 * 1024),
    ("memory_limit", "100", "memory_limit", 100),
    ("memory_limit", "1T", "memory_limit", 2**40),
    ("max_attempts", 1, "max_attempts", 1),
    ("max_attempts", 1000, "max_attempts", 1000),
    ("backoff", 0, "backoff", 0.0),
    ("backoff", 2.5, "backoff", 2.5),
    ("priority", 1000, "priority", 1000),
    ("priority", -1000, "priority", -1000),
    ("priority", 0, "priority", 0),
    ("run_at", 1_900_000_000, "run_at", 1_900_000_000.0),
    ("run_at", MAX_RUN_AT, "run_at", MAX_RUN_AT),
    ("result_ttl", 0.5, "result_ttl", 0.5),
    ("result_ttl", 86400, "result_ttl", 86400.0),
])
def test_valid_option(name: str, value: object, attr: str, expected: object) -> None:
    opts = parse_envelope(envelope(**{name: value})).options
    assert getattr(opts, attr) == expected
    assert opts.to_wire()[attr] == expected


def test_delay_becomes_run_at() -> None:
    assert parse_envelope(envelope(delay=30), now=1000.0).options.run_at == 1030.0
    assert parse_envelope(envelope(delay=0.5), now=1000.0).options.run_at == 1000.5


def test_zero_delay_means_now() -> None:
    assert parse_envelope(envelope(delay=0), now=1000.0).options.run_at is None


def test_delay_uses_the_clock_when_no_now_is_given() -> None:
    import time

    before = time.time()
    run_at = parse_envelope(envelope(delay=10)).options.run_at
    assert run_at is not None and before + 10 <= run_at <= time.time() + 10


# --- options: invalid, each message naming the field --------------------------------------


@pytest.mark.parametrize(("name", "value"), [
    ("queue", ""), ("queue", "has space"), ("queue", "a/b"), ("queue", "{x}"), ("queue", "q" * 65),
    ("queue", 5), ("queue", None),
    ("timeout", 0), ("timeout", -1), ("timeout", "30"), ("timeout", True), ("timeout", None),
    ("timeout", math.nan), ("timeout", math.inf), ("timeout", [30]), ("timeout", 10**400),
    ("memory_limit", 0), ("memory_limit", -5), ("memory_limit", "512X"), ("memory_limit", "M"),
    ("memory_limit", "-1G"), ("memory_limit", "0M"), ("memory_limit", True), ("memory_limit", None),
    ("memory_limit", "1" * 400), ("memory_limit", 10**400), ("memory_limit", "2000T"),
    ("max_attempts", 0), ("max_attempts", 1001), ("max_attempts", 2.5), ("max_attempts", "3"),
    ("max_attempts", True), ("max_attempts", -1),
    ("backoff", -0.1), ("backoff", "1"), ("backoff", math.nan), ("backoff", False),
    ("priority", 1001), ("priority", -1001), ("priority", 1.5), ("priority", "high"),
    ("priority", True), ("priority", None),
    ("run_at", 0), ("run_at", -1), ("run_at", "tomorrow"), ("run_at", math.inf), ("run_at", 1e306),
    ("run_at", MAX_RUN_AT + 1),
    ("delay", -1), ("delay", "5"), ("delay", math.nan), ("delay", 1e306), ("delay", MAX_SECONDS + 1),
    ("result_ttl", 0), ("result_ttl", -1), ("result_ttl", "1d"), ("result_ttl", 1e15),
    ("result_ttl", math.inf),
])
def test_invalid_option_names_the_field(name: str, value: object) -> None:
    err = invalid(envelope(**{name: value}))
    assert err.field == f"options.{name}"
    assert str(err).startswith(f"options.{name}: ")
    assert err.problem


def test_invalid_option_in_json_text_names_the_field() -> None:
    err = invalid('{"job": {"plugin": "p"}, "options": {"timeout": NaN}}')
    assert err.field == "options.timeout"


def test_delay_and_run_at_together_are_refused() -> None:
    assert invalid(envelope(delay=5, run_at=2e9)).field == "options.delay"


def test_unknown_option_is_named_and_known_ones_listed() -> None:
    err = invalid(envelope(timeuot=5))
    assert err.field == "options.timeuot"
    for name in OPTION_NAMES:
        assert name in err.problem


@pytest.mark.parametrize("options", [[], "fast", 5, True])
def test_options_must_be_an_object(options: object) -> None:
    assert invalid({"job": {"plugin": "p"}, "options": options}).field == "options"


def test_options_null_means_defaults() -> None:
    assert parse_envelope({"job": {"plugin": "p"}, "options": None}).options == JobOptions()


def test_parse_size_names_the_field_it_is_given() -> None:
    with pytest.raises(InvalidJob) as info:
        parse_size("lots", "--memory-limit")
    assert info.value.field == "--memory-limit"


# --- the envelope's structure ------------------------------------------------------------


def test_unknown_envelope_field_is_named() -> None:
    err = invalid({**PERL_ENVELOPE, "priority": 5})
    assert err.field == "priority"
    assert "unknown field" in err.problem


def test_unknown_job_field_is_named() -> None:
    err = invalid({"job": {"plugin": "p", "data": 1, "args": []}})
    assert err.field == "job.args"


@pytest.mark.parametrize("env", [{}, {"id": "x"}, {"job": None}, {"job": "montage_image"},
                                 {"job": ["montage_image", {}]}])
def test_job_object_is_required(env: dict) -> None:
    assert invalid(env).field == "job"


def test_plugin_is_required() -> None:
    err = invalid({"job": {"data": {}}})
    assert (err.field, err.problem) == ("job.plugin", "is required")


@pytest.mark.parametrize("plugin", ["", "9lives", "has space", "a/b", None, 5, "p" * 65, ["p"]])
def test_bad_plugin_name(plugin: object) -> None:
    assert invalid({"job": {"plugin": plugin}}).field == "job.plugin"


@pytest.mark.parametrize("raw", ["[]", '"text"', "5", "null", "true"])
def test_envelope_must_be_an_object(raw: str) -> None:
    err = invalid(raw)
    assert err.field == "envelope"
    assert "JSON object" in err.problem


@pytest.mark.parametrize("raw", ["", "{", '{"job": }', "{'job': {}}", b"\x00"])
def test_invalid_json_text(raw: str | bytes) -> None:
    err = invalid(raw)
    assert err.field == "envelope"
    assert "not valid JSON" in err.problem


# --- ids --------------------------------------------------------------------------------------


def test_id_is_generated_when_absent() -> None:
    a = parse_envelope({"job": {"plugin": "p"}})
    b = parse_envelope({"job": {"plugin": "p"}})
    assert a.id != b.id
    assert len(a.id) == 32 and int(a.id, 16) >= 0


def test_null_id_is_generated_too() -> None:
    assert len(parse_envelope({"id": None, "job": {"plugin": "p"}}).id) == 32


def test_integer_id_as_perl_sends_it() -> None:
    assert parse_envelope('{"id": 21876931, "job": {"plugin": "p"}}').id == "21876931"


@pytest.mark.parametrize("job_id", ["a", "x" * 128, "img-42_v1.2:user@host+x=y", "0"])
def test_good_ids(job_id: str) -> None:
    assert parse_envelope({"id": job_id, "job": {"plugin": "p"}}).id == job_id


@pytest.mark.parametrize("job_id", ["", "a b", "a/b", "a{b}", "x" * 129, "é", "a\nb", "*",
                                    True, 1.5, [1], {"id": 1}])
def test_bad_ids_are_rejected(job_id: object) -> None:
    assert invalid({"id": job_id, "job": {"plugin": "p"}}).field == "id"


# --- size, nesting, encoding -------------------------------------------------------------------


def test_data_up_to_the_size_limit_is_accepted() -> None:
    data = "x" * (MAX_ENVELOPE_BYTES - 2)  # plus the two quotes: exactly the limit
    assert len(parse_envelope({"job": {"plugin": "p", "data": data}}).data_json) == MAX_ENVELOPE_BYTES


def test_data_over_the_size_limit_is_rejected() -> None:
    err = invalid({"job": {"plugin": "p", "data": "x" * (MAX_ENVELOPE_BYTES - 1)}})
    assert err.field == "job.data"
    assert str(MAX_ENVELOPE_BYTES) in err.problem


def test_multibyte_data_counts_bytes_not_characters() -> None:
    data = "é" * (MAX_ENVELOPE_BYTES // 2)  # half as many characters as bytes
    assert invalid({"job": {"plugin": "p", "data": data}}).field == "job.data"


@pytest.mark.parametrize("form", ["text", "bytes"])
def test_encoded_envelope_over_the_limit_is_rejected(form: str) -> None:
    text = json.dumps({"job": {"plugin": "p", "data": "x" * MAX_ENVELOPE_BYTES}})
    err = invalid(text if form == "text" else text.encode())
    assert err.field == "envelope"
    assert "larger than" in err.problem


def test_nesting_up_to_the_limit_is_accepted() -> None:
    job = parse_envelope({"job": {"plugin": "p", "data": nested(MAX_NESTING)}})
    assert job.data == nested(MAX_NESTING)
    assert parse_envelope(json.dumps({"job": {"plugin": "p", "data": nested(MAX_NESTING)}}))


def test_nesting_over_the_limit_is_rejected() -> None:
    err = invalid({"job": {"plugin": "p", "data": nested(MAX_NESTING + 1)}})
    assert err.field == "job.data"
    assert f"deeper than {MAX_NESTING}" in err.problem
    deep_dicts: object = {}
    for _ in range(MAX_NESTING):
        deep_dicts = {"k": deep_dicts}
    assert invalid({"job": {"plugin": "p", "data": deep_dicts}}).field == "job.data"


@pytest.mark.parametrize(("envelope", "field"), [
    ({"id": "abc\n", "job": {"plugin": "p"}}, "id"),
    ({"job": {"plugin": "p\n"}}, "job.plugin"),
    ({"job": {"plugin": "p"}, "options": {"queue": "q\n"}}, "options.queue"),
])
def test_a_trailing_newline_is_not_part_of_a_valid_name(envelope: dict, field: str) -> None:
    # the patterns end in $, which re.match also lets match just before a final newline
    assert invalid(envelope).field == field


def test_a_default_queue_with_a_trailing_newline_is_refused() -> None:
    assert invalid({"job": {"plugin": "p"}}, default_queue="q\n").field == "options.queue"


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deep_python_data_is_refused_with_the_depth_error(depth: int) -> None:
    data: object = []
    for _ in range(depth):
        data = [data]
    err = invalid({"job": {"plugin": "p", "data": data}})
    assert (err.field, err.problem) == ("job.data", f"nested deeper than {MAX_NESTING} levels")


def test_cyclic_data_is_refused_not_a_crash() -> None:
    cycle: dict[str, object] = {}
    cycle["self"] = cycle
    looped: list[object] = [1]
    looped.append(looped)
    for data in (cycle, looped, {"a": [cycle]}):
        err = invalid({"job": {"plugin": "p", "data": data}})
        assert (err.field, err.problem) == ("job.data", f"nested deeper than {MAX_NESTING} levels")


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    data = {"text": "[{" * 500}
    assert parse_envelope({"job": {"plugin": "p", "data": data}}).data == data


def test_generated_ids_are_distinct_hex() -> None:
    ids = {parse_envelope({"job": {"plugin": "p"}}).id for _ in range(600)}  # > one urandom block
    assert len(ids) == 600
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_forked_child_never_reuses_the_parents_ids() -> None:
    import os
    parse_envelope({"job": {"plugin": "p"}})  # the parent now holds a block of unused ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next id and leave at once
        os.write(write, parse_envelope({"job": {"plugin": "p"}}).id.encode())
        os._exit(0)
    os.close(write)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child_id) == 32
    assert child_id != parse_envelope({"job": {"plugin": "p"}}).id


def test_absurd_nesting_in_text_is_invalid_not_a_recursion_error() -> None:
    depth = 200_000
    text = '{"job": {"plugin": "p", "data": ' + "[" * depth + "]" * depth + "}}"
    assert len(text) < MAX_ENVELOPE_BYTES
    assert invalid(text).field in ("envelope", "job.data")


def test_non_utf8_bytes_are_rejected() -> None:
    raw = b'{"job": {"plugin": "p", "data": "caf\xe9"}}'  # Latin-1, as an old Perl script sends
    err = invalid(raw)
    assert err.field == "envelope"
    assert "UTF-8" in err.problem
    offset = raw.index(b"\xe9")
    assert f"byte {offset}" in err.problem


def test_utf8_bytes_are_decoded() -> None:
    job = parse_envelope('{"job": {"plugin": "p", "data": "café"}}'.encode())
    assert job.data == "café"


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_data_are_rejected(value: str) -> None:
    err = invalid('{"job": {"plugin": "p", "data": {"x": [1, ' + value + "]}}}")
    assert err.field == "job.data"
    assert "JSON" in err.problem


def test_nan_in_a_python_dict_is_rejected() -> None:
    assert invalid({"job": {"plugin": "p", "data": math.nan}}).field == "job.data"


def test_data_that_is_not_json_serialisable() -> None:
    assert invalid({"job": {"plugin": "p", "data": {1, 2}}}).field == "job.data"
    assert invalid({"job": {"plugin": "p", "data": b"bytes"}}).field == "job.data"


@pytest.mark.parametrize("text", [r'{"job": {"plugin": "p", "data": "\ud800"}}',
                                  r'{"job": {"plugin": "p", "data": {"\udfff": 1}}}'])
def test_lone_surrogate_escape_in_data_is_rejected(text: str) -> None:
    err = invalid(text)
    assert err.field == "job.data"
    assert "Unicode" in err.problem


@pytest.mark.parametrize("env", [r'{"\ud800": 1, "job": {"plugin": "p"}}',
                                 r'{"job": {"plugin": "p", "\udc80": 1}}',
                                 r'{"job": {"plugin": "p"}, "options": {"\udc80": 1}}'])
def test_unknown_field_with_a_lone_surrogate_gives_a_storable_message(env: str) -> None:
    err = invalid(env)
    str(err).encode("utf-8")  # Redis stores this message as the dead letter's reason
    assert "unknown" in err.problem


def test_non_string_keys_from_python_callers() -> None:
    assert invalid({1: 2, "x": 3, "job": {"plugin": "p"}}).field == "1"
    assert invalid({"job": {"plugin": "p"}, "options": {2: 1, "b": 1}}).field == "options.2"


# --- build_job and JobState ---------------------------------------------------------------------


def test_build_job_validates_like_parse_envelope() -> None:
    job = build_job("p", {"a": 1}, 7, {"priority": 3})
    assert (job.id, job.plugin, job.options.priority) == ("7", "p", 3)
    with pytest.raises(InvalidJob, match=r"^options\.priority"):
        build_job("p", None, None, {"priority": 5000})


def test_job_states_and_which_are_finished() -> None:
    assert {s.value for s in JobState} == {"queued", "scheduled", "running", "done", "dead",
                                           "cancelled"}
    assert {s for s in JobState if s.finished} == {JobState.DONE, JobState.DEAD, JobState.CANCELLED}


# --- property: anything in, a Job or InvalidJob out -----------------------------------------------

_chars = st.characters() | st.characters(categories=["Cs"])  # include lone surrogates
_text = st.text(_chars, max_size=12)
_nasty = st.sampled_from([math.nan, math.inf, -math.inf, 10**400, -(10**400), 1e306, 1e15, 0, -1,
                          2**63, "512M", "1" * 400, "1e9", "", "\ud800", True, False, None, 1.5])
_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | _text | _nasty)
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(_text, inner, max_size=4), max_leaves=12)
_ids = st.from_regex(r"[A-Za-z0-9_.:@+=-]{1,8}", fullmatch=True) | st.integers() | json_values
_good_plugins = st.sampled_from(["montage_image", "p", "a.b-c"])
_plugins = st.one_of(_good_plugins, _good_plugins, _good_plugins, json_values)
_option_values = st.one_of(_nasty, st.integers(-2000, 2000), st.floats(-10, 1e20), json_values)
_options = st.dictionaries(st.sampled_from(sorted(OPTION_NAMES)), _option_values, max_size=4)
_shaped_job = st.fixed_dictionaries({"plugin": _plugins}, optional={"data": json_values})
_jobs = st.one_of(_shaped_job, _shaped_job, st.fixed_dictionaries(
    {}, optional={"plugin": _plugins, "data": json_values, "extra": json_values}), json_values)
# Mostly envelopes that get deep into validation, some of anything at all.
_shaped = st.fixed_dictionaries({"job": _jobs}, optional={
    "id": _ids, "options": st.one_of(_options, _options, _options, json_values)})
envelopes = st.one_of(_shaped, _shaped, _shaped, st.fixed_dictionaries({}, optional={
    "id": _ids, "job": _jobs, "options": json_values, "x": json_values}), json_values)

def _check(raw: object) -> None:
    try:
        job = parse_envelope(raw, now=1_700_000_000.0)
    except InvalidJob as exc:
        assert isinstance(exc.field, str) and exc.problem
        str(exc).encode("utf-8")  # storable as a dead letter's reason
        return
    assert isinstance(job, Job)
    json.loads(job.data_json)
    json.dumps(job.options.to_wire(), allow_nan=False)
    RedisEngine._job_args(job)  # an accepted job can be stored


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes)
def test_any_json_value_gives_a_job_or_invalid_job(value: object) -> None:
    _check(value)
    try:
        text = json.dumps(value)
    except (ValueError, TypeError):
        return
    _check(text)
    _check(text.encode("utf-8", "surrogatepass"))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200) | envelopes.map(
    lambda v: json.dumps(v).encode("utf-8", "surrogatepass")).map(lambda b: b[: len(b) // 2 + 1]))
def test_any_bytes_give_a_job_or_invalid_job(raw: bytes) -> None:
    _check(raw)
