"""One Pool(2) batch of spins in a fresh interpreter; prints its seconds as JSON.

Why a fresh process for every batch: on the AMD EPYC VM of the eighth session, two
identical Python processes ran the same spin loop up to 25 % apart, each for its whole
life and in every child it forked, and the gap shrank to 1-3 % with address-space
randomisation turned off (``setarch -R``; scripts/layout_aa.py shows both). Where a
process's memory lands is a draw made at exec. Pool batches forked from one long-lived
driver all share that driver's draw, so the comparison with dtq measured the driver's
luck. A new interpreter per batch (and a new supervisor per dtq batch, see
``dtq_side.cpu``) draws anew each time on both sides. The interpreter's start is not
timed; the Pool's start is.

    python -m scripts.bench.pool_once ITERATIONS [--fed]

With --fed the Pool is handed one task per free child (pool_fed_batch).
"""

from __future__ import annotations

import json
import sys

from scripts.bench.pool import pool_batch, pool_fed_batch
from scripts.bench.spin import spin


def main() -> int:
    batch = pool_fed_batch if "--fed" in sys.argv[2:] else pool_batch
    seconds, _ = batch(spin, int(sys.argv[1]))
    print(json.dumps({"seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
