"""Shared fixtures: a private redis-server per session, fakeredis, and the supervisor runner."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parent / "support"
sys.path.insert(0, str(SUPPORT))

from redis_server import RedisServer, running_server  # noqa: E402
from supervisor_proc import SupervisorProcess  # noqa: E402

from dtq import Queue  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    yield from running_server()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the private server for each test."""
    client = redis_server.client()
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def fake_redis():
    fakeredis = pytest.importorskip("fakeredis")
    return fakeredis.FakeRedis()


@pytest.fixture
def start_supervisor(redis_url: str) -> Iterator[Callable[..., SupervisorProcess]]:
    """Start real `dtq supervise` processes; every one is cleaned up after the test."""
    started: list[SupervisorProcess] = []

    def start(*args: str, plugins: tuple[str, ...] = ("Noop",), url: str | None = None,
              fast: bool = True) -> SupervisorProcess:
        sup = SupervisorProcess(url or redis_url, *args, plugins=plugins, fast=fast)
        started.append(sup)
        return sup

    yield start
    for sup in started:
        output = sup.output()
        sup.cleanup()
        if sup.proc.returncode not in (0, -9, -15, None):
            print(f"supervisor exited {sup.proc.returncode}:\n{output[-3000:]}")


@pytest.fixture
def queue(redis_url: str) -> Queue:
    return Queue(redis_url)
