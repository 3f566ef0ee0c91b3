"""Where the CPU-bound gap to multiprocessing.Pool goes: alternate 40-spin batches of a
running dtq supervisor with Pool(2) batches, and time the loop inside every job.

For each batch: total wall time; the sum of the loops' own wall and user CPU time;
and "between": total minus half the summed loop walls, which is what the pool spent
outside the loops (handing out jobs, start, stop). Ratios are taken pair by pair
(the order alternates), medians printed at the end. Modes:

    dtq         dtq warm batches against Pool(2) batches (the benchmark's comparison)
    aa          Pool(2) against Pool(2): the noise floor of the same arithmetic
    pool-sleep  Pool(2) whose children sleep 1.5 ms before each job, against Pool(2)

    .venv/bin/python scripts/cpu_ab.py [--mode dtq] [--rounds 16] [--seconds 0.25]
                                       [--dtq-args="--memory-sample 10"]

Runs its own redis-server on a free port; takes ~10 s per round at 0.25 s jobs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench.spin import calibrate, timed_spin  # noqa: E402
from scripts.bench_supervisor import PrivateRedis  # noqa: E402


def sleepy_timed_spin(iterations: int) -> dict[str, float]:
    time.sleep(0.0015)
    return timed_spin(iterations)


def summary(batches: list[tuple[float, list[dict]]]) -> dict[str, float]:
    out = {"total": statistics.median(t for t, _ in batches)}
    for key in ("wall", "user", "preempted"):
        out[key] = statistics.median(sum(loop[key] for loop in loops) for _, loops in batches)
    out["between"] = statistics.median(t - sum(lp["wall"] for lp in loops) / 2 for t, loops in batches)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=["dtq", "aa", "pool-sleep"], default="dtq")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=0.25, help="one job's loop, calibrated")
    parser.add_argument("--dtq-args", default="", help="more options for `dtq supervise`")
    args = parser.parse_args()

    iterations = calibrate(args.seconds)
    redis = PrivateRedis()
    os.environ["BENCH_REDIS_URL"] = redis.url
    os.environ["BENCH_DTQ_ARGS"] = "--plugin scripts.bench.dtq_plugins:TimedSpin " + args.dtq_args
    from scripts.bench import dtq_side

    q, sup = dtq_side._queue(), None
    a_name = {"dtq": "dtq", "aa": "Pool(2) again", "pool-sleep": "Pool(2), 1.5 ms sleeps"}[args.mode]
    batches: dict[str, list] = {"A": [], "Pool": []}
    try:
        if args.mode == "dtq":
            sup = dtq_side._supervisor("cpu-ab", burst=False)
            dtq_side._warm_up(q, sup)
        for rnd in range(args.rounds):
            for side in (("A", "Pool") if rnd % 2 == 0 else ("Pool", "A")):
                if side == "Pool":
                    batches[side].append(dtq_side.pool_batch(timed_spin, iterations))
                elif args.mode == "dtq":
                    batches[side].append(dtq_side.warm_batch(q, iterations, "timed_spin"))
                else:
                    func = sleepy_timed_spin if args.mode == "pool-sleep" else timed_spin
                    batches[side].append(dtq_side.pool_batch(func, iterations))
            a, p = batches["A"][-1], batches["Pool"][-1]
            print(f"round {rnd + 1:2}: {a_name} {a[0]:.3f} s, Pool(2) {p[0]:.3f} s, ratio "
                  f"{a[0] / p[0]:.3f}", file=sys.stderr, flush=True)
    finally:
        if sup is not None:
            sup.stop()
        redis.stop()

    ratios = {key: [sum(lp[key] for lp in a[1]) / max(1e-9, sum(lp[key] for lp in p[1]))
                    for a, p in zip(batches["A"], batches["Pool"], strict=True)]
              for key in ("wall", "user")}
    ratios["total"] = [a[0] / p[0] for a, p in zip(batches["A"], batches["Pool"], strict=True)]
    print(f"{args.rounds} rounds of {dtq_side.SPIN_JOBS} spins of {iterations:,} iterations; "
          f"{a_name} against Pool(2)")
    for name, batch in ((a_name, batches["A"]), ("Pool(2)", batches["Pool"])):
        s = summary(batch)
        print(f"  {name:24} total {s['total']:.3f} s  loops: wall {s['wall']:.3f} s, user "
              f"{s['user']:.3f} s, preempted {s['preempted']:.0f}x  between loops {s['between']:.3f} s")
    for key, label in (("total", "total time"), ("wall", "loop wall"), ("user", "loop user CPU")):
        values = sorted(ratios[key])
        print(f"  ratio of {label:14} median {statistics.median(values):.3f} "
              f"(range {values[0]:.3f}-{values[-1]:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
