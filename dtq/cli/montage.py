"""`dtq montage`: one montage_image job per directory (or per chunk), enqueued in one go."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dtq.cli.progress import follow, summarise
from dtq.client import Queue
from dtq.engine.base import JobStatus

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"}


def register(commands: Any) -> None:
    p = commands.add_parser("montage", help="contact sheets of image directories (montage_image jobs)")
    p.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    p.add_argument("-o", "--output-dir", required=True, type=Path)
    p.add_argument("--per-dir", action="store_true", help="one sheet per directory (default: "
                   "one per directory too, unless --chunk splits them)")
    p.add_argument("--chunk", type=int, help="at most this many images per sheet")
    p.add_argument("--format", default="jpeg", choices=["jpeg", "png", "webp"])
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--columns", type=int)
    p.add_argument("--queue", default="default")
    p.add_argument("--timeout", type=float, help="per-job timeout (s)")
    p.add_argument("--wait", action="store_true", help="show progress until all are done")
    p.set_defaults(run=cmd_montage)


def images_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def plan(dirs: list[Path], out_dir: Path, chunk: int | None, fmt: str) -> list[tuple[list[Path], Path]]:
    """(inputs, output) per job: per directory, split into chunks when asked."""
    jobs = []
    ext = "jpg" if fmt == "jpeg" else fmt
    for directory in dirs:
        images = images_in(directory)
        size = chunk or max(1, len(images))
        for n, start in enumerate(range(0, len(images), size)):
            suffix = f"-{n + 1}" if chunk and len(images) > size else ""
            jobs.append((images[start:start + size], out_dir / f"{directory.name}{suffix}.{ext}"))
    return jobs


def cmd_montage(args: argparse.Namespace) -> int:
    for directory in args.dirs:
        if not directory.is_dir():
            print(f"dtq: {directory}: not a directory", file=sys.stderr)
            return 2
    args.output_dir.mkdir(parents=True, exist_ok=True)
    jobs = plan([d.resolve() for d in args.dirs], args.output_dir.resolve(), args.chunk, args.format)
    jobs = [(inputs, out) for inputs, out in jobs if inputs]
    if not jobs:
        print("dtq: no images found", file=sys.stderr)
        return 1
    options: dict[str, Any] = {"queue": args.queue}
    if args.timeout:
        options["timeout"] = args.timeout
    queue = Queue(args.redis_url, queue=args.queue)
    envelopes = [{"job": {"plugin": "montage_image", "data": {
        "inputs": [str(p) for p in inputs], "output": str(out), "format": args.format,
        "tile": args.tile, **({"columns": args.columns} if args.columns else {})}},
        "options": options} for inputs, out in jobs]
    ids = queue.enqueue_many(envelopes)
    print(f"enqueued {len(ids)} montage jobs")
    if not args.wait:
        for job_id in ids:
            print(job_id)
        return 0
    return summarise(ids, follow(queue, ids), describe=describe_sheet)


def describe_sheet(status: JobStatus) -> str:
    r = status.result if isinstance(status.result, dict) else {}
    skipped = r.get("skipped") or []
    return (f"{r.get('output', '?')} ({r.get('width')}x{r.get('height')}, "
            f"{r.get('tiles', r.get('placed', '?'))} tiles"
            + (f", {len(skipped)} skipped" if skipped else "") + ")")
