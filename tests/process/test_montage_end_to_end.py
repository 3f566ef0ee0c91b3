"""The montage plugin through the whole system: entry point, sandbox, dtq montage --wait."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image
from supervisor_proc import REPO, SupervisorProcess, dtq_env

pytestmark = pytest.mark.process

SAMPLES = REPO / "scripts" / "demo" / "images"
BAD = REPO.parent / "shared" / "data" / "images" / "bad"


def dtq(redis_url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dtq", "--redis-url", redis_url, *args],
                          capture_output=True, text=True, env=dtq_env(), cwd=REPO, timeout=timeout)


@pytest.fixture
def montage_supervisor(redis_url, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(SAMPLES, images)
    out = tmp_path / "out"
    out.mkdir()
    # no --no-entry-points here: montage_image must be found through its entry point
    sup = SupervisorProcess(redis_url, "--workers", "2", "--allow-path", str(tmp_path),
                            "--timeout", "120", entry_points=True)
    yield images, out
    sup.cleanup()


def test_dtq_montage_wait_builds_one_sheet_per_directory(redis_url, montage_supervisor):
    images, out = montage_supervisor
    done = dtq(redis_url, "montage", str(images / "photos"), str(images / "science"),
               "-o", str(out), "--wait", "--format", "png")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "2 done, 0 not done" in done.stdout
    assert "finished" in done.stderr  # the progress bar
    for name, tiles in (("photos", 5), ("science", 6)):
        with Image.open(out / f"{name}.png") as sheet:
            assert sheet.format == "PNG" and sheet.width > 256 and sheet.height > 256
        assert f"{name}.png" in done.stdout and f"{tiles} tiles" in done.stdout


def test_enqueue_from_file_with_wait_reports_failures(redis_url, montage_supervisor, tmp_path):
    images, out = montage_supervisor
    lines = [
        {"id": "sheet-ok", "job": {"plugin": "montage_image", "data": {
            "input_dir": str(images / "photos"), "output": str(out / "ok.jpg")}}},
        {"id": "sheet-escape", "job": {"plugin": "montage_image", "data": {
            "inputs": ["/etc/passwd"], "output": str(out / "no.jpg")}}},
    ]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json\n")
    done = dtq(redis_url, "enqueue", "--from", str(jobs), "--wait")
    assert done.returncode == 1
    assert "line 3:" in done.stderr and "enqueued 2 jobs" in done.stdout
    assert "1 done, 1 not done" in done.stdout
    assert "sheet-escape: dead:" in done.stdout and "allowed" in done.stdout
    assert (out / "ok.jpg").exists() and not (out / "no.jpg").exists()


@pytest.mark.skipif(not BAD.is_dir(), reason="../shared/data/images/bad is absent")
def test_the_bad_corpus_never_takes_a_worker_down(redis_url, montage_supervisor, tmp_path):
    images, out = montage_supervisor
    bad = tmp_path / "bad"
    shutil.copytree(BAD, bad, ignore=shutil.ignore_patterns("README.md"))
    done = dtq(redis_url, "montage", str(bad), "-o", str(out), "--wait", timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 done, 0 not done" in done.stdout and "skipped" in done.stdout
    assert (out / "bad.jpg").exists()
