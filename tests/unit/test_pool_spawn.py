"""Pool.spawn: the job limit with jitter, and a refused pipe or fork that leaks nothing."""

from __future__ import annotations

import errno
import os
import random

import pytest
from fakes import FakeOS

from dtq.supervisor.pool import Pool, SpawnFailed, recycle_after


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError as exc:
        assert exc.errno == errno.EBADF
        return False
    return True


@pytest.fixture
def fake_os():
    fake = FakeOS()
    yield fake
    fake.close_all()


def forget_all(pool: Pool) -> None:
    for worker in list(pool.workers.values()):
        pool.forget(worker)


def test_one_job_per_worker_is_always_exactly_one(fake_os: FakeOS) -> None:
    pool = Pool(fake_os, {}, max_jobs_per_worker=1)
    limits = {pool.spawn().max_jobs for _ in range(200)}
    forget_all(pool)
    assert limits == {1}


@pytest.mark.parametrize("n", range(1, 41))
def test_the_limit_stays_within_ten_percent_and_never_below_one(n: int) -> None:
    rng = random.Random(n)
    jitter = (n + 5) // 10
    seen = {recycle_after(n, rng) for _ in range(300)}
    assert seen == set(range(n - jitter, n + jitter + 1))  # every value reached, none outside
    assert min(seen) >= 1


def test_small_limits_are_exact_and_large_ones_spread() -> None:
    rng = random.Random(7)
    for n in (1, 2, 3, 4):
        assert {recycle_after(n, rng) for _ in range(100)} == {n}
    spread = {recycle_after(100, rng) for _ in range(500)}
    assert min(spread) == 90 and max(spread) == 110


def test_no_limit_stays_no_limit(fake_os: FakeOS) -> None:
    assert recycle_after(None, random.Random()) is None
    assert recycle_after(0, random.Random()) is None
    pool = Pool(fake_os, {})
    assert pool.spawn().max_jobs is None
    forget_all(pool)


class RefusingOS(FakeOS):
    """Refuses the n-th pipe, or the fork, with the given errno; records every pipe it made."""

    def __init__(self, *, fail_pipe: int | None = None, fail_fork: int | None = None) -> None:
        super().__init__()
        self.fail_pipe, self.fail_fork = fail_pipe, fail_fork
        self.pipes_made: list[int] = []

    def pipe(self) -> tuple[int, int]:
        if self.fail_pipe is not None and len(self.pipes_made) == 2 * (self.fail_pipe - 1):
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))
        pair = super().pipe()
        self.pipes_made += pair
        return pair

    def fork(self) -> int:
        if self.fail_fork is not None:
            raise OSError(self.fail_fork, os.strerror(self.fail_fork))
        return super().fork()


@pytest.mark.parametrize(("refusing", "code", "opened"), [
    (lambda: RefusingOS(fail_fork=errno.EAGAIN), errno.EAGAIN, 4),
    (lambda: RefusingOS(fail_fork=errno.ENOMEM), errno.ENOMEM, 4),
    (lambda: RefusingOS(fail_pipe=2), errno.EMFILE, 2),
    (lambda: RefusingOS(fail_pipe=1), errno.EMFILE, 0),
])
def test_a_refused_pipe_or_fork_closes_what_was_opened_and_says_why(refusing, code: int,
                                                                    opened: int) -> None:
    fake = refusing()
    pool = Pool(fake, {}, max_jobs_per_worker=5)
    with pytest.raises(SpawnFailed) as caught:
        pool.spawn()
    assert caught.value.error.errno == code
    assert isinstance(caught.value.__cause__, OSError)
    assert os.strerror(code) in str(caught.value) and "could not start a worker" in str(caught.value)
    assert len(fake.pipes_made) == opened
    assert not any(is_open(fd) for fd in fake.pipes_made)
    assert pool.workers == {}


def test_the_pool_forks_again_once_the_system_allows() -> None:
    fake = RefusingOS(fail_fork=errno.EAGAIN)
    pool = Pool(fake, {})
    with pytest.raises(SpawnFailed):
        pool.spawn()
    fake.fail_fork = None
    fake._pending_pipes.clear()
    worker = pool.spawn()
    assert list(pool.workers) == [worker.pid]
    assert is_open(worker.to_worker) and is_open(worker.from_worker)
    forget_all(pool)
    fake.close_all()
