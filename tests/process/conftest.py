"""Fixtures for process tests: start real supervisors and always clean them up."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from supervisor_proc import SupervisorProcess

from dtq import Queue


@pytest.fixture
def start_supervisor(redis_url: str) -> Iterator[Callable[..., SupervisorProcess]]:
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
