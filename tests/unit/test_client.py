"""dtq.Queue, the producer's API, on a RedisEngine backed by fakeredis."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dtq import Queue as PublicQueue
from dtq.client import Queue
from dtq.engine.base import ClaimedJob, Outcome
from dtq.engine.redis_engine import RedisEngine
from dtq.errors import InvalidJob, JobFailed, JobNotFound, ResultTimeout
from dtq.job import build_job

PERL = {"id": "21876931", "job": {"plugin": "montage_image", "data": {"images": ["a.jpg"]}}}


@pytest.fixture
def engine(fake_redis: Any) -> RedisEngine:
    return RedisEngine(client=fake_redis)


@pytest.fixture
def queue(engine: RedisEngine) -> Queue:
    return Queue(engine=engine)


def run(engine: RedisEngine, queue: str = "default", count: int = 10) -> list[ClaimedJob]:
    return engine.claim(queue, "sup-a", count, 30).jobs


def test_queue_is_exported_from_the_package() -> None:
    assert PublicQueue is Queue


def test_append_takes_the_perl_envelope(queue: Queue, engine: RedisEngine) -> None:
    assert queue.append(PERL) == "21876931"
    assert queue.append(json.dumps(PERL)) == "21876931"  # idempotent: same id back
    assert queue.append(json.dumps(PERL).encode()) == "21876931"
    (claimed,) = run(engine)
    assert (claimed.id, claimed.plugin) == ("21876931", "montage_image")
    assert json.loads(claimed.data_json) == {"images": ["a.jpg"]}


def test_append_generates_an_id(queue: Queue) -> None:
    job_id = queue.append({"job": {"plugin": "p", "data": 1}})
    assert len(job_id) == 32
    assert queue.status(job_id).data == 1


def test_append_accepts_a_built_job(queue: Queue) -> None:
    assert queue.append(build_job("p", [1], "built")) == "built"


def test_append_rejects_a_bad_envelope(queue: Queue, engine: RedisEngine) -> None:
    with pytest.raises(InvalidJob, match=r"^options\.priority: "):
        queue.append({"job": {"plugin": "p"}, "options": {"priority": "high"}})
    assert engine.stats("default")["enqueued"] == 0


def test_enqueue_with_options(queue: Queue, engine: RedisEngine) -> None:
    job_id = queue.enqueue("montage_image", {"images": ["b.jpg"]}, id="s2", timeout=60,
                           memory_limit="512M", priority=4, max_attempts=2, backoff=0.5,
                           result_ttl=3600)
    assert job_id == "s2"
    status = queue.status("s2")
    assert status.options == {"timeout": 60, "memory_limit": 512 * 2**20, "priority": 4,
                              "max_attempts": 2, "backoff": 0.5, "result_ttl": 3600}
    (claimed,) = run(engine)
    assert (claimed.timeout, claimed.memory_limit) == (60.0, 512 * 2**20)


def test_enqueue_with_a_delay_is_scheduled(queue: Queue) -> None:
    job_id = queue.enqueue("p", delay=30)
    assert queue.status(job_id).state == "scheduled"


def test_enqueue_rejects_unknown_options(queue: Queue) -> None:
    with pytest.raises(InvalidJob, match=r"^options\.retries: unknown option"):
        queue.enqueue("p", retries=3)


def test_queue_default_and_per_job_queue(engine: RedisEngine) -> None:
    images = Queue(engine=engine, queue="images")
    images.enqueue("p", id="i1")
    images.enqueue("p", id="m1", queue="mail")
    assert [c.id for c in run(engine, "images")] == ["i1"]
    assert [c.id for c in run(engine, "mail")] == ["m1"]


def test_bad_default_queue_name(engine: RedisEngine) -> None:
    with pytest.raises(InvalidJob, match=r"^options\.queue"):
        Queue(engine=engine, queue="no spaces")


def test_enqueue_many_stores_all(queue: Queue, engine: RedisEngine) -> None:
    ids = queue.enqueue_many([PERL, {"id": "b", "job": {"plugin": "p"}},
                              json.dumps({"id": "c", "job": {"plugin": "p"}})])
    assert ids == ["21876931", "b", "c"]
    assert engine.stats("default")["ready"] == 3


def test_enqueue_many_validates_everything_first(queue: Queue, engine: RedisEngine) -> None:
    envelopes = [{"id": f"ok{i}", "job": {"plugin": "p"}} for i in range(5)]
    envelopes.insert(3, {"id": "bad", "job": {"plugin": "p"}, "options": {"timeout": -1}})
    with pytest.raises(InvalidJob) as info:
        queue.enqueue_many(envelopes)
    assert info.value.field == "[3].options.timeout"
    assert str(info.value).startswith("[3].options.timeout: ")
    assert engine.stats("default")["enqueued"] == 0
    assert run(engine) == []


def test_enqueue_many_from_a_generator(queue: Queue) -> None:
    ids = queue.enqueue_many({"job": {"plugin": "p", "data": i}} for i in range(3))
    assert len(set(ids)) == 3


def test_submit_many_reports_existing(queue: Queue) -> None:
    queue.append(PERL)
    results = queue.submit_many([PERL, {"id": "new", "job": {"plugin": "p"}}])
    assert [(r.id, r.created) for r in results] == [("21876931", False), ("new", True)]


def test_plugin_list_rejects_unknown_plugins(engine: RedisEngine) -> None:
    class Plugin:
        name = "montage_image"

    queue = Queue(engine=engine, plugin_list=[Plugin(), "thumbnail"])
    assert queue.append(PERL) == "21876931"
    assert queue.enqueue("thumbnail") is not None
    with pytest.raises(InvalidJob) as info:
        queue.enqueue("montage_imag")
    assert info.value.field == "job.plugin"
    assert "montage_imag" in info.value.problem
    assert "montage_image, thumbnail" in info.value.problem
    with pytest.raises(InvalidJob, match=r"^\[1\]\.job\.plugin"):
        queue.enqueue_many([PERL, {"job": {"plugin": "nope"}}])
    assert engine.stats("default")["enqueued"] == 2


def test_empty_plugin_list_accepts_nothing(engine: RedisEngine) -> None:
    with pytest.raises(InvalidJob, match="accepts: none"):
        Queue(engine=engine, plugin_list=[]).append(PERL)


def test_no_plugin_list_accepts_any_plugin(queue: Queue) -> None:
    assert queue.enqueue("anything_at_all", id="x") == "x"


def _finish(engine: RedisEngine, outcome_kind: str, result: str = "null", reason: str = "") -> None:
    (claimed,) = run(engine, count=1)
    engine.finish("sup-a", [Outcome(claimed, outcome_kind, result, reason=reason,
                                    record={"attempt": claimed.attempt, "reason": reason})])


def test_result_of_a_done_job(queue: Queue, engine: RedisEngine) -> None:
    job_id = queue.enqueue("p")
    _finish(engine, "done", '{"sheet": "/out/s.jpg"}')
    assert queue.result(job_id, timeout=1) == {"sheet": "/out/s.jpg"}
    assert queue.wait(job_id).state == "done"


def test_result_of_a_dead_job_raises_job_failed(queue: Queue, engine: RedisEngine) -> None:
    job_id = queue.enqueue("p", id="d1")
    _finish(engine, "permanent", reason="not an image")
    with pytest.raises(JobFailed) as info:
        queue.result(job_id, timeout=1)
    assert (info.value.job_id, info.value.state, info.value.reason) == ("d1", "dead", "not an image")
    assert str(info.value) == "job d1 ended dead: not an image"


def test_result_of_a_cancelled_job_raises_job_failed(queue: Queue) -> None:
    job_id = queue.enqueue("p")
    assert queue.cancel(job_id) == "cancelled"
    with pytest.raises(JobFailed, match="ended cancelled"):
        queue.result(job_id, timeout=1)


def test_result_of_an_unfinished_job_times_out(queue: Queue) -> None:
    job_id = queue.enqueue("p", id="slow")
    with pytest.raises(ResultTimeout, match="job slow is still queued after 0.1 s"):
        queue.result(job_id, timeout=0.1)
    assert isinstance(ResultTimeout("x"), TimeoutError)


def test_result_of_an_unknown_job(queue: Queue) -> None:
    with pytest.raises(JobNotFound):
        queue.result("ghost", timeout=0.1)


def test_status_of_an_unknown_id_raises(queue: Queue) -> None:
    with pytest.raises(JobNotFound) as info:
        queue.status("ghost")
    assert str(info.value) == "no job 'ghost' (never enqueued, or its result expired)"
    assert isinstance(info.value, KeyError)


def test_status_finds_a_job_in_another_queue(engine: RedisEngine) -> None:
    Queue(engine=engine, queue="images").enqueue("p", id="elsewhere", data=[1])
    default = Queue(engine=engine)
    status = default.status("elsewhere")
    assert (status.queue, status.data) == ("images", [1])
    assert default.cancel("elsewhere") == "cancelled"
    assert default.wait("elsewhere", timeout=1).state == "cancelled"


def test_status_prefers_its_own_queue(engine: RedisEngine) -> None:
    Queue(engine=engine, queue="images").enqueue("p", id="same", data="images")
    Queue(engine=engine, queue="mail").enqueue("p", id="same", data="mail")
    assert Queue(engine=engine, queue="mail").status("same").data == "mail"
    assert Queue(engine=engine, queue="images").status("same").data == "images"


def test_status_by_the_producers_id_finds_a_malformed_entry(queue: Queue, engine: RedisEngine) -> None:
    engine.client.rpush("dtq:{default}:inbox", b'{"id": "order-9", "job": {"plugin": 5}}')
    engine.admit_inbox("default")
    status = queue.status("order-9")
    assert (status.id, status.state) == ("bad-order-9", "dead")
    assert "job.plugin" in status.error


def test_cancel_and_stats(queue: Queue, engine: RedisEngine) -> None:
    queue.enqueue("p", id="a")
    queue.enqueue("p", id="b")
    (claimed,) = run(engine, count=1)
    assert queue.cancel(claimed.id) == "requested"
    assert queue.cancel("b") == "cancelled"
    assert queue.cancel("b") == "finished:cancelled"
    with pytest.raises(JobNotFound):
        queue.cancel("ghost")
    stats = queue.stats()
    assert (stats["running"], stats["ready"], stats["cancelled"], stats["enqueued"]) == (1, 0, 1, 2)


def test_get_jobs(queue: Queue) -> None:
    queue.enqueue("p", id="a")
    got = queue.get_jobs(["a", "ghost"])
    assert got[0] is not None and got[0].id == "a"
    assert got[1] is None
