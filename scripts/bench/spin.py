"""The CPU work behind the Spin plugin and the multiprocessing.Pool baseline.

One function with a fixed iteration count, so dtq and the bare Pool do exactly
the same pure-Python work. Run ``python -m scripts.bench.spin`` to re-calibrate.
"""

from __future__ import annotations

import time

# Calibrated once on the 2-core AMD EPYC bench box (Python 3.11): ~0.25 s.
SPIN_ITERATIONS = 1_900_000


def spin(iterations: int = SPIN_ITERATIONS) -> int:
    """Burn CPU in the interpreter loop (no C call releases the GIL)."""
    x = 0
    for i in range(iterations):
        x = (x * 31 + i) % 1000003
    return x


def calibrate(target_s: float = 0.25) -> int:
    """Return the iteration count that takes about target_s on this machine."""
    start = time.perf_counter()
    spin(SPIN_ITERATIONS)
    elapsed = time.perf_counter() - start
    return int(SPIN_ITERATIONS * target_s / elapsed)


if __name__ == "__main__":
    print(f"SPIN_ITERATIONS for 0.25 s here: {calibrate()}")
