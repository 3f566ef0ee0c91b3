"""Measurements of dtq, run in dtq's own venv (.venv) against the private Redis.

The supervisor is started as ``python -m dtq ... supervise`` in its own
process group with the benchmark plugins, exactly as an operator would.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil
import redis

from scripts.bench.common import (
    ROOT,
    drain_timeout,
    log_path,
    percentile,
    time_completions,
    wait_for_count,
)
from scripts.bench.pool import SPIN_JOBS
from scripts.bench.procs import Group
from scripts.bench.spin import calibrate

WARMUP_JOBS = 10
SPIN_SECONDS = 0.25  # one job's CPU, as the issue sets it; calibrated on the machine at hand
PLUGINS = ("scripts.bench.dtq_plugins:Noop", "scripts.bench.dtq_plugins:Spin")


def _url() -> str:
    return os.environ["BENCH_REDIS_URL"]


def _queue(name: str = "bench"):
    from dtq import Queue  # imported late so an unfinished dtq fails only its own rows

    return Queue(_url(), queue=name)


def _flush() -> None:
    redis.Redis.from_url(_url()).flushall()


def _supervisor(what: str, burst: bool, queue: str = "bench") -> Group:
    # Warning level, like every peer's worker: per-job INFO lines would cost dtq alone.
    argv = [sys.executable, "-m", "dtq", "--log-level", "warning", "--redis-url", _url(),
            "supervise", "--workers", "2", "--queues", queue]
    for plugin in PLUGINS:
        argv += ["--plugin", plugin]
    if burst:
        argv.append("--burst")
    argv += shlex.split(os.environ.get("BENCH_DTQ_ARGS", ""))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return Group(argv, log_path("dtq", what), cwd=ROOT, env=env)


def _alive_check(sup: Group, burst: bool):
    def alive() -> None:
        code = sup.proc.poll()
        if code is not None and (code != 0 or not burst):
            raise RuntimeError(f"supervisor exited {code}: {sup.log_tail()}")
    return alive


def _noop_jobs(n: int) -> list[dict]:
    return [{"job": {"plugin": "noop", "data": {"i": i}}} for i in range(n)]


def drain(jobs: int) -> dict:
    """Enqueue n no-op jobs, then time a --burst supervisor draining them."""
    q = _queue()
    _flush()
    q.enqueue_many(_noop_jobs(jobs))
    sup = _supervisor("drain", burst=True)
    try:
        def count() -> int:
            return int(q.stats()["done"])
        result = time_completions(count, jobs, _alive_check(sup, True), 60.0, drain_timeout(jobs))
        sup.proc.wait(30)
        if sup.proc.returncode != 0:
            raise RuntimeError(f"--burst supervisor exited {sup.proc.returncode}")
    finally:
        sup.stop()
    _flush()
    return result


def _warm_up(q, sup: Group) -> None:
    """Wait for the pool to serve jobs, so later timings exclude start-up.

    The first result is awaited in 1 s slices so that a supervisor that dies
    at start-up is reported at once instead of after the whole timeout.
    """
    from dtq.errors import ResultTimeout

    alive, job_id = _alive_check(sup, burst=False), q.enqueue("noop", {"i": -1})
    deadline = time.monotonic() + 60.0
    while True:
        alive()
        try:
            q.result(job_id, timeout=1.0)
            break
        except ResultTimeout:
            if time.monotonic() > deadline:
                raise
    for i in range(WARMUP_JOBS):
        q.result(q.enqueue("noop", {"i": i}), timeout=10.0)


def latency(samples: int) -> dict:
    """Enqueue-to-start latency of single jobs on an idle, warmed-up pool."""
    q = _queue()
    _flush()
    sup = _supervisor("latency", burst=False)
    try:
        _warm_up(q, sup)
        values = []
        for i in range(samples):
            time.sleep(random.uniform(0.005, 0.02))
            t0 = time.time()
            job_id = q.enqueue("noop", {"i": i})
            values.append(q.result(job_id, timeout=10.0)["started"] - t0)
    finally:
        sup.stop()
    _flush()
    return {"p50_ms": percentile(values, 50) * 1e3, "p99_ms": percentile(values, 99) * 1e3}


def bulk(jobs: int) -> dict:
    """Rate of Queue.enqueue_many for n jobs, no supervisor running."""
    q = _queue()
    _flush()
    payload = _noop_jobs(jobs)
    start = time.perf_counter()
    q.enqueue_many(payload)
    elapsed = time.perf_counter() - start
    _flush()
    return {"jobs_per_s": jobs / elapsed, "jobs": jobs, "api": "Queue.enqueue_many"}


def _spin_jobs(iterations: int, plugin: str = "spin") -> list[dict]:
    return [{"job": {"plugin": plugin, "data": {"iterations": iterations}}} for _ in range(SPIN_JOBS)]


def _pool_seconds(iterations: int, fed: bool = False) -> float:
    """The same 40 spins on a bare Pool(2), in a fresh interpreter (see pool_once); with
    ``fed``, handed one task per free child as dtq hands out jobs."""
    argv = [sys.executable, "-m", "scripts.bench.pool_once", str(iterations)] + (["--fed"] if fed else [])
    out = subprocess.run(argv, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                         text=True, timeout=300, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"pool_once exited {out.returncode}: {out.stderr.strip()[-400:]}")
    return float(json.loads(out.stdout)["seconds"])


def _burst_seconds(q, iterations: int) -> float:
    """From starting a --burst supervisor on 40 queued spins to its exit."""
    _flush()
    q.enqueue_many(_spin_jobs(iterations))
    start = time.perf_counter()
    sup = _supervisor("cpu-burst", burst=True)
    try:
        code = sup.proc.wait(120)
        elapsed = time.perf_counter() - start
    finally:
        sup.stop()
    done = int(q.stats()["done"])
    if code != 0 or done != SPIN_JOBS:
        raise RuntimeError(f"--burst exited {code} with {done}/{SPIN_JOBS} done: {sup.log_tail()}")
    return elapsed


WARM_ROUNDS = 4  # warm timings per run, each between two Pool timings


def warm_batch(q, iterations: int, plugin: str = "spin") -> tuple[float, list[Any]]:
    """From enqueueing 40 spins on an idle, running supervisor to the last result:
    seconds, and the results."""
    start = time.perf_counter()
    ids = q.enqueue_many(_spin_jobs(iterations, plugin))
    results = [q.result(job_id, timeout=120.0) for job_id in ids]
    return time.perf_counter() - start, results


def _warm_batch_seconds(q, iterations: int) -> float:
    """One warm batch on a supervisor started for it (a new draw, see pool_once),
    warmed up with no-op jobs first so that only the batch is timed."""
    sup = _supervisor("cpu-warm", burst=False)
    try:
        _warm_up(q, sup)
        return warm_batch(q, iterations)[0]
    finally:
        sup.stop()


def _against_neighbours(values: list[float], baseline: list[float]) -> list[float]:
    """Each value divided by the mean of the baseline timings taken just before and after it."""
    return [v / ((baseline[i] + baseline[i + 1]) / 2) for i, v in enumerate(values)]


def cpu(jobs: int) -> dict:
    """CPU-bound scaling: dtq warm and cold (--burst) against multiprocessing.Pool(2).

    Each dtq timing is divided by the mean of the Pool(2) timings just before and
    just after it: this VM's speed drifts by 10-30 % within a minute, which a single
    Pool timing taken 10 s earlier would count as dtq's overhead. A run times
    WARM_ROUNDS warm batches, alternating with the Pool, and reports the median of
    those ratios (single ratios spread by +-10 % here). Every Pool batch runs in a
    fresh interpreter and every warm batch on a fresh supervisor: a process's speed
    at this loop depends on where its memory landed (see pool_once), and fresh
    processes on both sides compare dtq with the Pool, not one draw with another.

    Beside the issue's baseline, a like-for-like one: a Pool(2) handed one task per
    free child (pool_fed_batch), timed after each Pool(2) batch; dtq may not queue
    jobs ahead in a worker the way map() does, and waiting between tasks costs a
    Pool child too. warm/fed divides each warm timing by the fed timings around it.
    """
    iterations = calibrate(SPIN_SECONDS)
    q = _queue()
    _flush()
    pools, feds = [_pool_seconds(iterations)], [_pool_seconds(iterations, fed=True)]
    warms = []
    for _ in range(WARM_ROUNDS):
        warms.append(_warm_batch_seconds(q, iterations))
        pools.append(_pool_seconds(iterations))
        feds.append(_pool_seconds(iterations, fed=True))
    burst_s = _burst_seconds(q, iterations)
    pool_after = _pool_seconds(iterations)
    _flush()
    warm_ratios = _against_neighbours(warms, pools)
    warm_fed_ratios = _against_neighbours(warms, feds)
    # A/A control: each inner Pool timing against the Pool timings before and after it
    # (a fed and a warm timing lie between, so they are further apart than a warm
    # timing's neighbours). It should be ~1.0; how far it strays shows the noise any
    # warm/Pool figure of this run sits on.
    control_ratios = [pools[i] / ((pools[i - 1] + pools[i + 1]) / 2) for i in range(1, len(pools) - 1)]
    return {"spin_iterations": iterations, "pool_s": statistics.median(pools), "burst_s": burst_s,
            "warm_s": statistics.median(warms), "pool_runs_s": pools + [pool_after],
            "warm_runs_s": warms, "warm_ratios": warm_ratios, "control_ratios": control_ratios,
            "burst_vs_pool": burst_s / ((pools[-1] + pool_after) / 2),
            "warm_vs_pool": statistics.median(warm_ratios), "pool_fed_s": statistics.median(feds),
            "pool_fed_runs_s": feds, "warm_fed_ratios": warm_fed_ratios,
            "warm_vs_pool_fed": statistics.median(warm_fed_ratios)}


def _cpu_seconds(proc: psutil.Process) -> float:
    """CPU time of one process: from /proc/PID/schedstat (nanoseconds) where Linux has
    it, as psutil's user + system counts 10 ms ticks (1-2 ticks in 10 idle seconds)."""
    try:
        with open(f"/proc/{proc.pid}/schedstat", "rb") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        times = proc.cpu_times()
        return times.user + times.system


def _fork_servers(proc: psutil.Process) -> list[psutil.Process]:
    """The supervisor's fork server (dtq/supervisor/forkserver.py), by its title."""
    return [p for p in proc.children() if " ".join(p.cmdline()).startswith("dtq fork server")]


def _supervisor_cpu(proc: psutil.Process, servers: list[psutil.Process]) -> float:
    """The supervisor's CPU time, its fork server's included: both are dtq's overhead."""
    return sum(_cpu_seconds(p) for p in [proc, *servers])


def _pss_mib(proc: psutil.Process) -> tuple[float, int]:
    """Sum of PSS of the supervisor and all its descendants (the workers and the fork
    server), and the worker count."""
    family = [proc, *proc.children(recursive=True)]
    workers = len(family) - 1 - len(_fork_servers(proc))
    return sum(p.memory_full_info().pss for p in family) / 2**20, workers


def _drain_cpu(q, proc: psutil.Process, servers: list[psutil.Process], jobs: int) -> float:
    """Supervisor CPU seconds spent while a running pool drains n no-op jobs."""
    target = int(q.stats()["done"]) + jobs
    before = _supervisor_cpu(proc, servers)
    q.enqueue_many(_noop_jobs(jobs))
    wait_for_count(lambda: int(q.stats()["done"]), target, lambda: None, drain_timeout(jobs))
    return _supervisor_cpu(proc, servers) - before


def overhead(jobs: int, idle_seconds: float) -> dict:
    """Supervisor idle CPU%, CPU s per 10k no-op jobs, and PSS with 2 idle workers."""
    q = _queue()
    _flush()
    sup = _supervisor("overhead", burst=False)
    try:
        _warm_up(q, sup)
        time.sleep(1.0)
        proc = psutil.Process(sup.pid)
        pss_mib, workers = _pss_mib(proc)
        servers = _fork_servers(proc)
        before, start = _supervisor_cpu(proc, servers), time.perf_counter()
        time.sleep(idle_seconds)
        idle_pct = 100 * (_supervisor_cpu(proc, servers) - before) / (time.perf_counter() - start)
        per_10k = _drain_cpu(q, proc, servers, jobs) * 10_000 / jobs
    finally:
        sup.stop()
    _flush()
    return {"idle_cpu_pct": idle_pct, "cpu_s_per_10k": per_10k,
            "pss_mib": pss_mib, "workers": workers}


MEASURES = {"drain": drain, "latency": latency, "bulk": bulk, "cpu": cpu, "overhead": overhead}
