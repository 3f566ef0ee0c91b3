"""Run one measurement of one tool N times and print the runs as one JSON line.

Started by scripts/bench_supervisor.py with the tool's own interpreter (dtq's
venv or the peers' venv), so no venv ever imports the other's packages.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import traceback


def _on_term(signum, frame):
    """Turn SIGTERM into an exception so every `finally` stops its workers."""
    raise SystemExit(128 + signum)


def _measure(tool: str, measure: str, args: argparse.Namespace):
    """Bind the measurement function of the tool to this run's settings."""
    if tool == "dtq":
        from scripts.bench import dtq_side as side

        kwargs = {"drain": {"jobs": args.jobs}, "bulk": {"jobs": args.jobs},
                  "latency": {"samples": args.samples}, "cpu": {"jobs": args.jobs},
                  "overhead": {"jobs": args.jobs, "idle_seconds": args.idle_seconds}}
        return lambda: side.MEASURES[measure](**kwargs[measure])
    from scripts.bench import peers

    count = args.samples if measure == "latency" else args.jobs
    return lambda: peers.MEASURES[measure](tool, count)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("tool")
    parser.add_argument("measure")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _on_term)
    out: dict = {"runs": []}
    try:
        run = _measure(args.tool, args.measure, args)
        for _ in range(args.runs):
            out["runs"].append(run())
    except (Exception, KeyboardInterrupt, SystemExit) as exc:
        traceback.print_exc(file=sys.stderr)
        out["error"] = f"{type(exc).__name__}: {exc}".strip()
    print(json.dumps(out), flush=True)
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
