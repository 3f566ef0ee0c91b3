"""Benchmark dtq side by side with Celery, RQ, Dramatiq and Huey in one run.

Every tool runs 2 worker processes against a private redis-server (own port,
no persistence, FLUSHALL before and after each measurement), started and
stopped by this script. Each measurement is run --runs times and the median is
reported, with the ratio to the best peer ("x best": value / best peer value).

1. drain: N no-op jobs (--jobs, default 10,000; RQ, which forks a process per
   job, gets N/20) are enqueued with no worker running; then the worker (dtq:
   ``supervise --burst``) starts. Rate = (N - c_1) / (t_N - t_1): the driver
   polls every 5 ms; t_1 is when it first sees c_1 >= 1 jobs done, t_N when
   it sees all N. A drain without progress for 30 s fails its row.
   Starting the clock at the first completion leaves start-up out for all
   tools alike. Peers count completions with one Redis INCR inside the task
   (an extra round trip dtq does not pay); dtq's count is stats()["done"].
2. latency: on an idle pool warmed up with 11 jobs, 200 single jobs, 5-20 ms
   apart: t0 = time.time() just before enqueue, the task records time.time()
   when it starts (dtq: in its result; peers: RPUSH to a list); p50 and p99
   of start - t0 (nearest rank).
3. bulk: N jobs enqueued with no worker, timed around the enqueue call(s):
   dtq enqueue_many, rq enqueue_many (one pipeline), Celery apply_async on one
   producer, Dramatiq send and Huey task() in a loop (they have no bulk API).
4. cpu (dtq only): 40 jobs of ~0.25 s of pure-Python CPU each on 2 workers (the loop's
   iteration count is calibrated on the machine at the start of each run); each dtq
   timing is divided by the mean of the Pool(2) timings taken just before and after it.
   Pool: a fork multiprocessing.Pool(2).map of the same function, pool start
   included, each batch in a fresh interpreter. Cold: enqueue 40, start
   ``supervise --burst``, time to its exit. Warm: on an idle supervisor started
   and warmed up for the batch, time from enqueue_many to the last result, 4
   times per run alternating with the Pool; a run reports the median of its 4
   ratios, and a last line gives the median of every ratio of every run. Fresh
   processes on both sides, because a process's speed at this loop depends on
   where its memory landed at exec (scripts/bench/pool_once.py). Ideal is
   40 x 0.25 / 2 = 5 s. Pool fed, warm/fed: a like-for-like baseline beside it, a
   Pool(2) handed one task per free child after each result, as dtq hands out jobs
   (no prefetch beyond free slots), timed after each Pool(2) batch.
5. overhead (dtq only): supervisor process CPU (/proc/PID/schedstat, else psutil) over
   --idle-seconds of idleness / wall; supervisor CPU seconds per 10k no-op
   jobs while draining N; PSS of the supervisor plus all its descendants with
   2 idle workers.

Each (tool, measurement) runs in a driver subprocess under the tool's own venv
(dtq: .venv; peers: .bench/peers-venv, created on demand), each worker in its
own process group, torn down with TERM, wait, KILL, even on Ctrl-C, SIGTERM or error.
A tool that fails shows its error in its row; the others still run.

Usage: python3 scripts/bench_supervisor.py [--only dtq,huey] [--runs 5]
       [--jobs 10000] [--measure drain,latency,bulk,cpu,overhead] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.bench.common import LOG_DIR, drain_timeout  # noqa: E402
from scripts.bench.procs import Group, sweep  # noqa: E402

PEERS = ("celery", "rq", "dramatiq", "huey")
TOOLS = ("dtq", *PEERS)
MEASURES = ("drain", "latency", "bulk", "cpu", "overhead")
DTQ_ONLY = ("cpu", "overhead")
PEER_VENV = ROOT / ".bench" / "peers-venv"
# packaging: kombu 5.7 imports it without declaring it.
PEER_PACKAGES = ("celery", "redis", "rq", "dramatiq", "huey", "psutil", "packaging")

# Per measurement: the columns (key, label, format) and whether lower is better.
COLUMNS = {
    "drain": ([("jobs_per_s", "jobs/s", "{:,.0f}"), ("jobs", "N", "{:,}")], False),
    "latency": ([("p50_ms", "p50 ms", "{:.2f}"), ("p99_ms", "p99 ms", "{:.2f}")], True),
    "bulk": ([("jobs_per_s", "jobs/s", "{:,.0f}"), ("api", "API", "{}")], False),
    "cpu": ([("spin_iterations", "spin iters", "{:,.0f}"), ("pool_s", "Pool(2) s", "{:.2f}"),
             ("burst_s", "cold s", "{:.2f}"),
             ("warm_s", "warm s", "{:.2f}"), ("burst_vs_pool", "cold/Pool", "{:.2f}x"),
             ("warm_vs_pool", "warm/Pool", "{:.2f}x"), ("pool_fed_s", "Pool fed s", "{:.2f}"),
             ("warm_vs_pool_fed", "warm/fed", "{:.2f}x")], True),
    "overhead": ([("idle_cpu_pct", "idle CPU %", "{:.2f}"),
                  ("cpu_s_per_10k", "CPU s/10k jobs", "{:.2f}"),
                  ("pss_mib", "PSS MiB", "{:.1f}"), ("workers", "workers", "{}")], True),
}
TITLES = {
    "drain": "1. drain throughput, no-op jobs (median)",
    "latency": "2. idle-pool latency enqueue -> start (median of runs)",
    "bulk": "3. bulk enqueue rate (median)",
    "cpu": "4. CPU-bound scaling, 40 x 0.25 s on 2 workers (median)",
    "overhead": "5. supervisor overhead (median)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default=",".join(TOOLS), help="comma list of tools")
    parser.add_argument("--measure", default=",".join(MEASURES), help="comma list")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=10_000, help="N for drain/bulk/overhead")
    parser.add_argument("--samples", type=int, default=200, help="latency samples per run")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--dtq-python", type=Path, default=ROOT / ".venv" / "bin" / "python")
    parser.add_argument("--dtq-args", default="",
                        help="extra arguments for `dtq supervise`, e.g. --dtq-args=--no-entry-points")
    args = parser.parse_args(argv)
    args.only = _pick(args.only, TOOLS, parser)
    args.measure = _pick(args.measure, MEASURES, parser)
    return args


def _pick(text: str, allowed: tuple[str, ...], parser: argparse.ArgumentParser) -> list[str]:
    chosen = [item.strip() for item in text.split(",") if item.strip()]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return [item for item in allowed if item in chosen]


def machine_info() -> dict:
    """What the figures depend on: cores, CPU model, interpreter, exact command."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(), "command": command}


def ensure_peer_venv() -> Path:
    """Create .bench/peers-venv and install the peers into it when missing."""
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True, timeout=120)
    probe = [str(python), "-c", "import " + ", ".join(PEER_PACKAGES)]
    if subprocess.run(probe, capture_output=True, timeout=60).returncode != 0:
        print("installing peers into .bench/peers-venv ...", file=sys.stderr, flush=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", *PEER_PACKAGES],
                       check=True, timeout=900)
    return python


class PrivateRedis:
    """A throw-away redis-server on a free loopback port, never the shared one."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no"]
        self.group = Group(argv, LOG_DIR / "redis-server.log", cwd=ROOT)
        self._wait_ready(10.0)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start: {self.group.log_tail()}")

    def stop(self) -> None:
        self.group.stop(grace=5.0)


def time_budget(measure: str, args: argparse.Namespace) -> float:
    """An upper bound for one driver, so no run can hang the benchmark."""
    per_run = {
        "drain": 120 + drain_timeout(args.jobs) + args.jobs / 200,
        "latency": 90 + args.samples * 0.5,
        "bulk": 30 + args.jobs / 100,
        "cpu": 420,
        "overhead": 120 + args.idle_seconds + drain_timeout(args.jobs),
    }[measure]
    return 30 + per_run * args.runs


def run_driver(python: Path, tool: str, measure: str, args: argparse.Namespace) -> dict:
    """Run one driver subprocess, bounded in time; return its runs or its error."""
    argv = [str(python), "-m", "scripts.bench.driver", tool, measure, "--runs", str(args.runs),
            "--jobs", str(args.jobs), "--samples", str(args.samples),
            "--idle-seconds", str(args.idle_seconds)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    driver = Group(argv, LOG_DIR / f"driver-{tool}-{measure}.log", cwd=ROOT, env=env)
    budget = time_budget(measure, args)
    try:
        driver.proc.wait(budget)
    except subprocess.TimeoutExpired:
        return {"runs": [], "error": f"timed out after {budget:.0f} s"}
    finally:
        driver.stop(grace=20.0)
    return _driver_output(driver)


def _driver_output(driver: Group) -> dict:
    try:
        lines = driver.log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {"runs": [], "error": f"driver exited {driver.proc.returncode}: {driver.log_tail(4)}"}


def median_of(runs: list[dict]) -> dict:
    """Median of each numeric key over the runs; other values from the first run."""
    if not runs:
        return {}
    out = {}
    for key, value in runs[0].items():
        numbers = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
        out[key] = statistics.median(numbers) if isinstance(value, (int, float)) else value
    return out


def _best_peer(results: dict, key: str, lower_better: bool) -> float | None:
    values = [r["median"][key] for tool, r in results.items()
              if tool in PEERS and isinstance(r["median"].get(key), (int, float))]
    if not values:
        return None
    return min(values) if lower_better else max(values)


def _row(tool: str, result: dict, columns: list, best: float | None, ratio: bool,
         args: argparse.Namespace) -> list[str]:
    median = result["median"]
    cells = [tool]
    for key, _label, fmt in columns:
        cells.append(fmt.format(median[key]) if key in median else "-")
    value = median.get(columns[0][0])
    if ratio:
        ok = best and isinstance(value, (int, float))
        cells.append(f"{value / best:.2f}x" if ok else "-")
    notes = []
    if len(result["runs"]) < args.runs:
        notes.append(f"{len(result['runs'])}/{args.runs} runs")
    if result.get("error"):
        notes.append("error: " + result["error"][:160])
    cells.append("; ".join(notes))
    return cells


def format_table(measure: str, results: dict, args: argparse.Namespace) -> str:
    """One measurement as an aligned text table with the ratio to the best peer."""
    columns, lower_better = COLUMNS[measure]
    best = _best_peer(results, columns[0][0], lower_better)
    ratio = measure not in DTQ_ONLY
    header = ["tool", *(label for _key, label, _fmt in columns)]
    header += ["x best peer", "notes"] if ratio else ["notes"]
    rows = [header] + [_row(t, r, columns, best, ratio, args) for t, r in results.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [TITLES[measure]]
    for row in rows:
        padded = [cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in
                  enumerate(zip(row[:-1], widths, strict=True))]
        lines.append("  " + "  ".join(padded) + ("  " + row[-1] if row[-1] else ""))
    return "\n".join(lines)


def _pooled_warm_ratios(result: dict) -> str:
    """Every warm/Pool ratio of every run: a finer figure than the median of run medians,
    and beside it the same ratio for Pool timings against their own neighbours (an A/A
    control: how far this machine's noise alone moves such a median), and warm against
    the Pool handed one task per free child."""
    lines = ""
    for key, label in (("warm_ratios", "warm/Pool"), ("control_ratios", "A/A control, Pool/Pool"),
                       ("warm_fed_ratios", "warm/Pool fed one task per free child")):
        ratios = sorted(r for run in result.get("runs", []) for r in run.get(key, []))
        if ratios:
            lines += (f"  {label} over all {len(ratios)} alternations: median "
                      f"{statistics.median(ratios):.3f}x (range {ratios[0]:.3f}-{ratios[-1]:.3f})\n")
    return lines


def run_all(args: argparse.Namespace, redis_url: str) -> dict:
    """Every selected measurement for every selected tool, measurement by measurement."""
    pythons = {"dtq": args.dtq_python}
    if any(tool in PEERS for tool in args.only):
        peer_python = ensure_peer_venv()
        pythons.update({tool: peer_python for tool in PEERS})
    os.environ["BENCH_REDIS_URL"] = redis_url
    os.environ["BENCH_DTQ_ARGS"] = args.dtq_args
    results: dict = {}
    for measure in args.measure:
        tools = [t for t in args.only if t == "dtq" or measure not in DTQ_ONLY]
        for tool in tools:
            print(f"  {measure:8} {tool:9} ...", end="", file=sys.stderr, flush=True)
            start = time.monotonic()
            out = run_driver(pythons[tool], tool, measure, args)
            out["median"] = median_of(out["runs"])
            results.setdefault(measure, {})[tool] = out
            status = "error" if out.get("error") else "ok"
            print(f" {status} ({time.monotonic() - start:.0f} s)", file=sys.stderr, flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    print(f"machine: {info['nproc']} cores, {info['cpu']}, Python {info['python']}, "
          f"{info['platform']}")
    print(f"command: {info['command']}")
    print(f"runs: {args.runs}, jobs: {args.jobs:,}, workers: 2 per tool\n", flush=True)
    ledger = ROOT / ".bench" / "run" / f"groups-{os.getpid()}"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    os.environ["BENCH_PGID_FILE"] = str(ledger)
    redis = None
    try:
        redis = PrivateRedis()
        results = run_all(args, redis.url)
    finally:
        if redis is not None:
            redis.stop()
        leftovers = sweep(ledger)
        ledger.unlink(missing_ok=True)
        if leftovers:
            print(f"killed leftover process groups: {leftovers}", file=sys.stderr)
    for measure, per_tool in results.items():
        print(format_table(measure, per_tool, args))
        print(_pooled_warm_ratios(per_tool.get("dtq", {})) if measure == "cpu" else "")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2))
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    # `kill` tears down like Ctrl-C: killed outright, this process would leave its running
    # driver, workers and Pool children spinning beside whatever is measured next
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("\ninterrupted: workers and redis-server stopped", file=sys.stderr)
        sys.exit(130)
