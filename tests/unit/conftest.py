"""Fixtures of the supervisor's unit tests: a supervisor driven through a fake OS layer and
an injected clock, on fakeredis or on the tests' own redis-server."""

from __future__ import annotations

import pytest
from fakes import FakeOS

from dtq.engine.base import Defaults
from dtq.engine.redis_engine import RedisEngine
from dtq.supervisor.settings import SupervisorSettings
from dtq.supervisor.supervisor import Supervisor


@pytest.fixture
def world(fake_redis):
    """(fake OS, engine on fakeredis, make(**settings) -> Supervisor)."""
    yield from _world(RedisEngine(client=fake_redis, clock=(fake_os := FakeOS()).time,
                                  defaults=Defaults(max_attempts=1, backoff=0.0)), fake_os)


@pytest.fixture
def real_world(redis_url):
    """The same on a real server (the tests' own redis-server)."""
    fake_os = FakeOS()
    engine = RedisEngine(redis_url, clock=fake_os.time, defaults=Defaults(max_attempts=1, backoff=0.0))
    yield from _world(engine, fake_os)
    engine.client.close()


@pytest.fixture(params=["fakeredis", "redis"])
def any_world(request):
    return request.getfixturevalue("world" if request.param == "fakeredis" else "real_world")


def _world(engine, fake_os):
    def make(**overrides) -> Supervisor:
        """A supervisor (one worker unless ``workers`` says otherwise) on the fake OS."""
        settings = SupervisorSettings(name="test-sup", workers=overrides.pop("workers", 1),
                                      poll=0.5, kill_grace=2.0, **overrides)
        return Supervisor(settings, engine, plugins={}, os_layer=fake_os)

    yield fake_os, engine, make
    fake_os.close_all()
