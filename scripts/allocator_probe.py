"""Count, with callgrind, what one iteration of the benchmark's spin loop costs in a
dtq worker, in a multiprocessing Pool child and in a bare forked child.

Instruction counts do not depend on the machine's noise, so this tells a slower
code path from a slower machine (docs/benchmarks.md, "CPU-bound"). Each variant
runs 4 spins of N1 and of N2 iterations under valgrind; the difference of the
child's totals, divided by 4 x (N2 - N1), is the cost of one iteration. Needs
valgrind; takes about a minute.

    python3 scripts/allocator_probe.py [--n1 100000] [--n2 300000]
    python3 scripts/allocator_probe.py --native 6   # the same three, timed natively
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"

_PRELUDE = f"import os, sys\nsys.path.insert(0, {str(ROOT)!r})\nn = int(sys.argv[1])\n"
# A dtq Worker in a forked child, fed `count` spin jobs through a pipe, each after the last
# outcome, as a supervisor feeds jobs that are not short (with all of them queued in the
# pipe, the worker would hold outcomes and its timer's signal would land inside the next
# loop); returns the outcome frames. Both the callgrind and the native program use it.
_FEED_WORKER = """
from dtq.supervisor.messages import FrameReader, encode_job
from dtq.supervisor.worker import Worker

def feed_worker(plugins, data_json, count):
    r, w = os.pipe(); r2, w2 = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w); os.close(r2)
        Worker(r, w2, plugins).serve()
    os.close(r); os.close(w2)
    reader, got = FrameReader(), []
    for i in range(count):
        os.write(w, encode_job(f"j{i}", "q", 1, "spin", data_json, None, None))
        while len(got) <= i:
            chunk = os.read(r2, 65536)
            assert chunk, "the worker closed its pipe"
            got += reader.feed(chunk)
    os.close(w); os.waitpid(pid, 0); os.close(r2)
    return got
"""
VARIANTS = {
    # the worker's own path, no supervisor
    "dtq worker": _PRELUDE + _FEED_WORKER + """
from dtq.plugin_loader import load_plugins
plugins = load_plugins(["scripts.bench.dtq_plugins:Spin"], entry_point_group=None)
feed_worker(plugins, '{"iterations": %d}' % n, 4)
""",
    "Pool(1) child": _PRELUDE + """
import multiprocessing
from scripts.bench.spin import spin
with multiprocessing.get_context("fork").Pool(1) as pool:
    pool.map(spin, [n] * 4, chunksize=1)
    pool.close(); pool.join()
""",
    "forked child calling the plugin": _PRELUDE + """
from dtq.plugin_loader import load_plugins
plugins = load_plugins(["scripts.bench.dtq_plugins:Spin"], entry_point_group=None)
pid = os.fork()
if pid == 0:
    for _ in range(4):
        plugins["spin"].process({"iterations": n}, None)
    os._exit(0)
os.waitpid(pid, 0)
""",
}


def child_totals(script: str, n: int, out_dir: str) -> list[int]:
    """Ir, Bc, Bcm of the last process the script forked (the one that spun)."""
    subprocess.run(["valgrind", "--tool=callgrind", "--branch-sim=yes", "--trace-children=yes",
                    f"--callgrind-out-file={out_dir}/cg.%p", "-q", str(PYTHON), "-c", script, str(n)],
                   check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    newest = max(glob.glob(f"{out_dir}/cg.*"), key=lambda f: int(f.rsplit(".", 1)[1]))
    with open(newest) as f:
        events = summary = None
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            elif line.startswith("summary:"):
                summary = [int(x) for x in line.split()[1:]]
    assert events and summary, f"no totals in {newest}"
    by_name = dict(zip(events, summary, strict=True))
    return [by_name["Ir"], by_name["Bc"], by_name["Bcm"]]


NATIVE = _PRELUDE + _FEED_WORKER + """
import json, multiprocessing, random, statistics, time
from scripts.bench.spin import SPIN_ITERATIONS, spin

def timed_spin(_=None):
    start = time.process_time()
    spin(SPIN_ITERATIONS)
    return time.process_time() - start

class Timed:  # a plugin whose result is the loop's CPU time
    name = "spin"
    def process(self, data, ctx):
        return timed_spin()

def in_worker():
    return [float(m["r"]) for m in feed_worker({"spin": Timed()}, "{}", 4)]

def in_pool():
    with multiprocessing.get_context("fork").Pool(1) as pool:
        return pool.map(timed_spin, range(4), chunksize=1)

def in_child():
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(w, json.dumps([timed_spin() for _ in range(4)]).encode())
        os._exit(0)
    os.close(w); data = os.read(r, 65536); os.waitpid(pid, 0); os.close(r)
    return json.loads(data)

variants = {"dtq worker": in_worker, "Pool(1) child": in_pool, "forked child calling the loop": in_child}
times = {name: [] for name in variants}
for _ in range(n):
    for name in random.sample(list(variants), len(variants)):
        times[name] += variants[name]()
pool = statistics.median(times["Pool(1) child"])
for name, values in times.items():
    median = statistics.median(values)
    print(f"  {name:32s} loop CPU median {median:.4f} s  ({median / pool:.3f} of the Pool child's)")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n1", type=int, default=100_000)
    parser.add_argument("--n2", type=int, default=300_000)
    parser.add_argument("--native", type=int, metavar="ROUNDS",
                        help="instead: time the loop natively, ROUNDS shuffled rounds of 4 spins")
    args = parser.parse_args()
    if args.native:
        print(f"the spin loop's CPU time, one process at a time, {args.native} rounds:", flush=True)
        subprocess.run([str(PYTHON), "-c", NATIVE, str(args.native)], check=True, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
        return 0
    iterations = 4 * (args.n2 - args.n1)
    print(f"per iteration of the spin loop ({sys.version.split()[0]}):")
    for name, script in VARIANTS.items():
        with tempfile.TemporaryDirectory() as d1, tempfile.TemporaryDirectory() as d2:
            low, high = child_totals(script, args.n1, d1), child_totals(script, args.n2, d2)
        ir, bc, bcm = ((h - lo) / iterations for lo, h in zip(low, high, strict=True))
        print(f"  {name:32s} {ir:7.1f} instructions  {bc:6.1f} branches  {bcm:5.3f} simulated misses")
    return 0


if __name__ == "__main__":
    sys.exit(main())
