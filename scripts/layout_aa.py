"""A/A test of the address-layout draw: do two identical Python processes run the same
pure-Python loop at the same speed?

Two parent interpreters, started the same way, each fork a child per round that runs
the spin loop; the two children run at the same time (so the machine's drift hits both)
and the ratio of their loop user CPU is taken. The parents live through all rounds, so
each parent's children share its layout. With --no-aslr the parents start under
``setarch -R`` (no address-space randomisation) and get the same layout.

On the eighth session's AMD EPYC VM the per-pair medians ranged 0.80-1.24 with
randomisation and 0.97-1.04 without: a process's speed at this loop is a draw made at
exec, kept for its life and by its forked children. That is why the benchmark's CPU
measurement starts fresh processes on both sides (scripts/bench/pool_once.py).

    .venv/bin/python scripts/layout_aa.py [--pairs 6] [--rounds 12] [--seconds 0.12] [--no-aslr]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench.spin import calibrate, timed_spin  # noqa: E402


def parent(iterations: int) -> None:
    """For each byte on stdin, fork a child that spins; print its loop user CPU."""
    while sys.stdin.buffer.read(1):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(write_end, json.dumps(timed_spin(iterations)).encode())
            os._exit(0)
        os.close(write_end)
        data = os.read(read_end, 4096)
        os.waitpid(pid, 0)
        os.close(read_end)
        print(json.loads(data)["user"], flush=True)


def one_pair(iterations: int, rounds: int, no_aslr: bool) -> float:
    """Median ratio of two parents' children's loop user CPU over the rounds."""
    prefix = ["setarch", os.uname().machine, "-R"] if no_aslr else []
    argv = prefix + [sys.executable, __file__, "--parent", str(iterations)]
    a, b = (subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(2))
    ratios = []
    try:
        for i in range(rounds):
            for p in ((a, b) if i % 2 else (b, a)):
                p.stdin.write(b"x")
                p.stdin.flush()
            ratios.append(float(a.stdout.readline()) / float(b.stdout.readline()))
    finally:
        for p in (a, b):
            p.stdin.close()
            p.wait(60)
    return statistics.median(ratios)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--pairs", type=int, default=6, help="parent pairs, each a new draw")
    parser.add_argument("--rounds", type=int, default=12, help="concurrent child pairs per parent pair")
    parser.add_argument("--seconds", type=float, default=0.12, help="one loop, calibrated")
    parser.add_argument("--no-aslr", action="store_true", help="start the parents under setarch -R")
    args = parser.parse_args()
    if args.parent is not None:
        parent(args.parent)
        return 0
    iterations = calibrate(args.seconds)
    medians = [one_pair(iterations, args.rounds, args.no_aslr) for _ in range(args.pairs)]
    for k, m in enumerate(medians, 1):
        print(f"pair {k}: median loop user CPU ratio {m:.3f}")
    print(f"{args.pairs} pairs of identical parents ({'no ' if args.no_aslr else ''}address "
          f"randomisation), {args.rounds} rounds of {iterations:,} iterations: per-pair medians "
          f"{min(medians):.3f}-{max(medians):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
