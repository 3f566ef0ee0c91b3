"""The CPU work behind the Spin plugin and the multiprocessing.Pool baseline.

One function with an iteration count, so dtq and the bare Pool do exactly the same
pure-Python work. The benchmark calibrates the count on the machine it runs on (the
issue asks for jobs of about 0.25 s; the default below gave 0.1-0.17 s on later VMs).
"""

from __future__ import annotations

import os
import resource
import statistics
import time

# The count calibrate() times and scales; ~0.25 s on the first bench box, 0.1-0.17 s on later VMs.
SPIN_ITERATIONS = 1_900_000


def spin(iterations: int = SPIN_ITERATIONS) -> int:
    """Burn CPU in the interpreter loop (no C call releases the GIL)."""
    x = 0
    for i in range(iterations):
        x = (x * 31 + i) % 1000003
    return x


def timed_spin(iterations: int = SPIN_ITERATIONS) -> dict[str, float]:
    """spin(), with what the loop itself cost: wall and user CPU seconds, how often the
    process was preempted meanwhile, and which process ran it (scripts/cpu_ab.py compares
    these)."""
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    spin(iterations)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    return {"wall": wall, "user": r1.ru_utime - r0.ru_utime, "preempted": r1.ru_nivcsw - r0.ru_nivcsw,
            "pid": os.getpid()}


def calibrate(target_s: float = 0.25, rounds: int = 5) -> int:
    """Return the iteration count that takes about target_s on this machine (median
    of several timings: one timing moves by tens of percent on a noisy VM)."""
    timings = []
    for _ in range(rounds):
        start = time.perf_counter()
        spin(SPIN_ITERATIONS)
        timings.append(time.perf_counter() - start)
    return int(SPIN_ITERATIONS * target_s / statistics.median(timings))


if __name__ == "__main__":
    print(f"SPIN_ITERATIONS for 0.25 s here: {calibrate()}")
