#!/usr/bin/env python3
"""Benchmark the montage_image plugin against ImageMagick's `montage` on one core.

Both tools build the same sheet from the same inputs: the 16 largest camera
JPEGs of shared/data/images/real, each three times (48 tiles), 8 columns,
256x256 tiles, 4 px spacing, file-name labels, JPEG quality 85. Every run is a
fresh child process pinned with `taskset -c 0`; wall time is measured around
it and peak RSS comes from wait4() on that child alone. Runs alternate between
the tools so that machine noise hits both alike. Both sheets are kept in
--out for a visual comparison.

    .venv/bin/python scripts/bench_montage.py [--runs 5] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "images" / "real"
GEOMETRY = ["-geometry", "256x256+4+4", "-tile", "8x", "-label", "%f", "-quality", "85"]
FAST = ["-define", "jpeg:size=512x512", "-auto-orient"]
CHILD = """
import json, sys
from dtq.plugin import JobContext, PluginConfig
from dtq_plugins.montage_image import MontageImage
plugin = MontageImage(PluginConfig(allowed_paths=tuple(sys.argv[2:])))
plugin.setup()
print(json.dumps(plugin.process(json.loads(sys.argv[1]), JobContext(job_id="bench", attempt=1))))
"""


def is_real_montage() -> bool:
    """True when `montage` is ImageMagick's (this box has a fake `convert` stand-in)."""
    if shutil.which("montage") is None:
        return False
    probe = subprocess.run(["montage", "-version"], capture_output=True, text=True)
    return probe.returncode == 0 and "ImageMagick" in probe.stdout


def ensure_montage() -> str:
    """Install Debian's imagemagick when `montage` is missing, saying so; return its version."""
    if not is_real_montage():
        print("montage (ImageMagick) not found: installing Debian's imagemagick package "
              "(apt-get update && apt-get install -y imagemagick)", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "imagemagick"], check=True, env=env)
    version = subprocess.run(["montage", "-version"], capture_output=True, text=True).stdout
    return version.splitlines()[0]


def pick_inputs(data: Path, count: int = 16) -> list[Path]:
    """The ``count`` largest JPEGs by bytes, recognised by content (FF D8 FF), not name."""
    def is_jpeg(path: Path) -> bool:
        with path.open("rb") as f:
            return f.read(3) == b"\xff\xd8\xff"

    files = [p for p in data.iterdir() if p.is_file() and is_jpeg(p)]
    return sorted(files, key=lambda p: p.stat().st_size, reverse=True)[:count]


Sample = tuple[float, float, float]  # wall seconds, CPU seconds, peak RSS MiB


def measure(cmd: list[str]) -> tuple[Sample, int, str]:
    """Run ``cmd`` pinned to CPU 0: ((wall s, CPU s, peak RSS MiB), exit code, stderr)."""
    start = time.perf_counter()
    child = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    assert child.stderr is not None
    err = child.stderr.read().decode("utf-8", "replace")
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    return (wall, cpu, usage.ru_maxrss / 1024), child.returncode, err


def commands(inputs: list[Path], out: Path) -> dict[str, list[str]]:
    """The command line of each tool for the same 48-tile sheet."""
    tiles = [str(p) for p in inputs] * 3
    job = {"inputs": tiles, "output": str(out / "dtq_montage_image.jpg"), "columns": 8,
           "tile": 256, "spacing": 4, "labels": True, "quality": 85}
    return {
        "dtq montage_image": [sys.executable, "-c", CHILD, json.dumps(job),
                              str(inputs[0].parent), str(out)],
        "IM montage (jpeg:size)": ["montage", *FAST, *GEOMETRY, *tiles,
                                   str(out / "imagemagick_fast.jpg")],
    }


def run_all(cmds: dict[str, list[str]], runs: int) -> dict[str, list[Sample]]:
    """Alternate the tools ``runs`` times (after one warm-up each); stop on any failure."""
    for cmd in cmds.values():
        measure(cmd)  # warm the page cache and the interpreter's .pyc files
    samples: dict[str, list[Sample]] = {name: [] for name in cmds}
    for n in range(runs):
        for name, cmd in cmds.items():
            sample, code, err = measure(cmd)
            if code != 0:
                sys.exit(f"{name} failed (exit {code}):\n{err[-2000:]}")
            samples[name].append(sample)
            wall, cpu, rss = sample
            print(f"  run {n + 1}/{runs} {name:<24} {wall:6.2f} s wall {cpu:6.2f} s CPU "
                  f"{rss:7.1f} MiB", flush=True)
    return samples


def plain_montage(inputs: list[Path], out: Path) -> str:
    """Whether montage without jpeg:size (full-size decodes) survives Debian's policy."""
    tiles = [str(p) for p in inputs] * 3
    (wall, _, rss), code, err = measure(["montage", "-auto-orient", *GEOMETRY, *tiles,
                                    str(out / "imagemagick_plain.jpg")])
    first = next((line for line in err.splitlines() if line.strip()), "")
    return f"exit {code}, {wall:.2f} s, {rss:.0f} MiB peak" + (f": {first}" if first else "")


def report(samples: dict[str, list[Sample]]) -> None:
    """Print the table: median wall and CPU seconds, peak MiB, and each tool against ours.

    CPU seconds are shown too because they barely move when the box is busy.
    """
    ours = "dtq montage_image"
    wall = {name: statistics.median(w for w, _, _ in s) for name, s in samples.items()}
    cpu = {name: statistics.median(c for _, c, _ in s) for name, s in samples.items()}
    peak = {name: max(r for _, _, r in s) for name, s in samples.items()}
    print(f"\n{'tool':<24} {'median s':>9} {'CPU s':>7} {'peak MiB':>9} {'time / ours':>12} "
          f"{'CPU / ours':>11} {'memory / ours':>14}")
    for name in samples:
        print(f"{name:<24} {wall[name]:9.2f} {cpu[name]:7.2f} {peak[name]:9.1f} "
              f"{wall[name] / wall[ours]:11.2f}x {cpu[name] / cpu[ours]:10.2f}x "
              f"{peak[name] / peak[ours]:13.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool (default 5)")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of real images")
    parser.add_argument("--out", type=Path, default=Path("/tmp/dtq-bench-montage"),
                        help="where both sheets are kept for comparison")
    args = parser.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no images at {args.data}; pass --data")
    args.out.mkdir(parents=True, exist_ok=True)
    version = ensure_montage()
    inputs = pick_inputs(args.data)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, pinned to CPU 0; "
          f"Python {platform.python_version()}; {version}")
    print(f"inputs: {len(inputs)} JPEGs x 3 = {3 * len(inputs)} tiles, "
          f"{sum(p.stat().st_size for p in inputs) / 2**20:.1f} MiB once")
    samples = run_all(commands(inputs, args.out.resolve()), args.runs)
    report(samples)
    print(f"\nplain montage without jpeg:size: {plain_montage(inputs, args.out.resolve())}")
    print(f"sheets kept in {args.out}/")


if __name__ == "__main__":
    main()
