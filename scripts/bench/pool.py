"""The bare multiprocessing.Pool(2) baseline of the CPU-bound measurement.

Kept apart from dtq_side so that ``pool_once`` can run it in an interpreter that
imports nothing but this, the standard library and the spin loop, as a user's own
Pool script would.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any

SPIN_JOBS = 40


def pool_batch(func: Callable[[int], Any], iterations: int) -> tuple[float, list[Any]]:
    """40 calls of ``func(iterations)`` on a bare fork Pool(2): seconds, pool start-up and
    shutdown included, and the results.

    close() and join(), not the with-block's terminate(): terminate() once hung here
    for ten minutes, a worker stuck on the task queue's lock that another worker held
    when it was killed."""
    start = time.perf_counter()
    pool = multiprocessing.get_context("fork").Pool(2)
    try:
        results = pool.map(func, [iterations] * SPIN_JOBS, chunksize=1)
        pool.close()
        pool.join()
    finally:
        pool.terminate()
    return time.perf_counter() - start, results
