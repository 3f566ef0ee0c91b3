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
                                       [--dtq-args="--memory-sample 10"] [--supervisors 2]

--supervisors K runs K supervisors side by side, each on its own queue, round r using
supervisor r mod K, and prints the ratios per supervisor and per worker: a slowdown
that stays with the processes shows as one supervisor slower than the other through
the whole run, one that comes and goes with the machine hits both alike.

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

from scripts.bench.pool import SPIN_JOBS, pool_batch  # noqa: E402
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
    parser.add_argument("--supervisors", type=int, default=1, metavar="K",
                        help="dtq mode: K supervisors, taking rounds in turn")
    args = parser.parse_args()

    iterations = calibrate(args.seconds)
    redis = PrivateRedis()
    os.environ["BENCH_REDIS_URL"] = redis.url
    os.environ["BENCH_DTQ_ARGS"] = "--plugin scripts.bench.dtq_plugins:TimedSpin " + args.dtq_args
    from scripts.bench import dtq_side

    queues, sups = [], []
    a_name = {"dtq": "dtq", "aa": "Pool(2) again", "pool-sleep": "Pool(2), 1.5 ms sleeps"}[args.mode]
    batches: dict[str, list] = {"A": [], "Pool": []}
    try:
        for k in range(args.supervisors if args.mode == "dtq" else 0):
            queues.append(dtq_side._queue(f"bench-{k}"))
            sups.append(dtq_side._supervisor(f"cpu-ab-{k}", burst=False, queue=f"bench-{k}"))
            dtq_side._warm_up(queues[k], sups[k])
        for rnd in range(args.rounds):
            for side in (("A", "Pool") if rnd % 2 == 0 else ("Pool", "A")):
                if side == "Pool":
                    batches[side].append(pool_batch(timed_spin, iterations))
                elif args.mode == "dtq":
                    batches[side].append(dtq_side.warm_batch(queues[rnd % len(queues)], iterations,
                                                             "timed_spin"))
                else:
                    func = sleepy_timed_spin if args.mode == "pool-sleep" else timed_spin
                    batches[side].append(pool_batch(func, iterations))
            a, p = batches["A"][-1], batches["Pool"][-1]
            print(f"round {rnd + 1:2}: {a_name} {a[0]:.3f} s, Pool(2) {p[0]:.3f} s, ratio "
                  f"{a[0] / p[0]:.3f}", file=sys.stderr, flush=True)
    finally:
        for sup in sups:
            sup.stop()
        redis.stop()

    ratios = {key: [sum(lp[key] for lp in a[1]) / max(1e-9, sum(lp[key] for lp in p[1]))
                    for a, p in zip(batches["A"], batches["Pool"], strict=True)]
              for key in ("wall", "user")}
    ratios["total"] = [a[0] / p[0] for a, p in zip(batches["A"], batches["Pool"], strict=True)]
    print(f"{args.rounds} rounds of {SPIN_JOBS} spins of {iterations:,} iterations; "
          f"{a_name} against Pool(2)")
    for name, batch in ((a_name, batches["A"]), ("Pool(2)", batches["Pool"])):
        s = summary(batch)
        print(f"  {name:24} total {s['total']:.3f} s  loops: wall {s['wall']:.3f} s, user "
              f"{s['user']:.3f} s, preempted {s['preempted']:.0f}x  between loops {s['between']:.3f} s")
    for key, label in (("total", "total time"), ("wall", "loop wall"), ("user", "loop user CPU")):
        values = sorted(ratios[key])
        print(f"  ratio of {label:14} median {statistics.median(values):.3f} "
              f"(range {values[0]:.3f}-{values[-1]:.3f})")
    if len(sups) > 1:
        print_per_supervisor(len(sups), batches, ratios)
    return 0


def print_per_supervisor(count: int, batches: dict[str, list], ratios: dict[str, list]) -> None:
    """Ratios per supervisor, and each worker's mean loop user CPU against the Pool
    children's in the same rounds: a gap that stays with a process shows here."""
    print("  per supervisor: median total ratio, median loop user ratio, each worker's mean loop "
          "user CPU / the Pool children's in the same rounds")
    for k in range(count):
        rounds = range(k, len(ratios["total"]), count)
        pool_user = statistics.mean(lp["user"] for r in rounds for lp in batches["Pool"][r][1])
        per_pid: dict[int, list[float]] = {}
        for r in rounds:
            for lp in batches["A"][r][1]:
                per_pid.setdefault(lp["pid"], []).append(lp["user"])
        workers = " ".join(f"{statistics.mean(v) / pool_user:.3f}" for v in per_pid.values())
        print(f"    supervisor {k}: {statistics.median(ratios['total'][r] for r in rounds):.3f}, "
              f"{statistics.median(ratios['user'][r] for r in rounds):.3f}; workers {workers}")


if __name__ == "__main__":
    sys.exit(main())
