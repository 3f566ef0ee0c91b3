"""The bare multiprocessing.Pool(2) baseline of the CPU-bound measurement.

Kept apart from dtq_side so that ``pool_once`` can run it in an interpreter that
imports nothing but this, the standard library and the spin loop, as a user's own
Pool script would.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

SPIN_JOBS = 40
POOL_SIZE = 2


def _timed_pool(run: Callable[[Any], list[Any]]) -> tuple[float, list[Any]]:
    """``run(pool)`` on a bare fork Pool(2): seconds, pool start-up and shutdown
    included, and its results.

    close() and join(), not the with-block's terminate(): terminate() once hung here
    for ten minutes, a worker stuck on the task queue's lock that another worker held
    when it was killed."""
    start = time.perf_counter()
    pool = multiprocessing.get_context("fork").Pool(POOL_SIZE)
    try:
        results = run(pool)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    return time.perf_counter() - start, results


def pool_batch(func: Callable[[int], Any], iterations: int) -> tuple[float, list[Any]]:
    """40 calls of ``func(iterations)``, all queued at once (map, chunksize 1)."""
    return _timed_pool(lambda pool: pool.map(func, [iterations] * SPIN_JOBS, chunksize=1))


def pool_fed_batch(func: Callable[[int], Any], iterations: int) -> tuple[float, list[Any]]:
    """The same 40 calls handed one task per free child, each after the last result, as
    dtq hands its workers jobs (the issue allows no prefetch beyond free slots); map()
    queues all 40 at once, so its children never wait between tasks. A like-for-like
    baseline beside the issue's: on the ninth session's VM waiting between tasks cost a
    Pool child ~2.5 % (scripts/worker_pair.py)."""
    return _timed_pool(lambda pool: _feed(pool, func, iterations))


def _feed(pool: Any, func: Callable[[int], Any], iterations: int) -> list[Any]:
    lock, finished, results, failures = threading.Lock(), threading.Event(), [], []
    sent = 0

    def hand_out() -> None:  # under lock
        nonlocal sent
        sent += 1
        pool.apply_async(func, (iterations,), callback=on_result, error_callback=on_error)

    def on_result(result: Any) -> None:
        with lock:
            results.append(result)
            if sent < SPIN_JOBS:
                hand_out()
            elif len(results) == SPIN_JOBS:
                finished.set()

    def on_error(exc: BaseException) -> None:
        failures.append(exc)
        finished.set()

    with lock:
        for _ in range(POOL_SIZE):
            hand_out()
    if not finished.wait(600):
        raise TimeoutError("the fed Pool did not finish its 40 tasks in 600 s")
    if failures:
        raise failures[0]
    return results
