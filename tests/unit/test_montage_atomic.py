"""A montage job that dies while writing leaves neither a half sheet nor a temp file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from dtq_plugins.montage_image import MontageImage, sheet
from PIL import Image

from dtq.errors import PermanentJobError
from dtq.plugin import JobContext, PluginConfig


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for n in range(4):
        Image.new("RGB", (300, 200), (60 * n, 90, 200)).save(tmp_path / f"in{n}.png")
    return tmp_path


def run(root: Path, output: str = "sheet.png", **data: Any) -> dict[str, Any]:
    plugin = MontageImage(PluginConfig(allowed_paths=(root,)))
    job = {"inputs": [f"in{n}.png" for n in range(4)], "output": output, **data}
    return plugin.process(job, JobContext(job_id="j", attempt=1))


def names(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


def failing_save(self: Image.Image, fp: Any, *args: Any, **kwargs: Any) -> None:
    fp.write(b"\x89PNG half a sheet")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("unnamed_temp", [True, False])
def test_a_failed_write_keeps_the_old_sheet_and_no_temp(
    root: Path, monkeypatch: pytest.MonkeyPatch, unnamed_temp: bool
) -> None:
    (root / "sheet.png").write_bytes(b"the previous sheet")
    if not unnamed_temp:  # the fallback for file systems without O_TMPFILE
        monkeypatch.setattr(sheet, "_open_unnamed", lambda directory: (-1, False))
    before = names(root)
    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        run(root)
    assert (root / "sheet.png").read_bytes() == b"the previous sheet"
    assert names(root) == before


def test_a_good_write_replaces_the_sheet(root: Path) -> None:
    (root / "sheet.png").write_bytes(b"the previous sheet")
    result = run(root, output="sheet.png")
    with Image.open(root / "sheet.png") as im:
        assert im.size == (result["width"], result["height"])
    assert names(root) == {f"in{n}.png" for n in range(4)} | {"sheet.png"}


CHILD = """
    import os, signal, sys
    from PIL import Image
    from dtq.plugin import JobContext, PluginConfig
    from dtq_plugins.montage_image import MontageImage

    def save(self, fp, *args, **kwargs):
        fp.write(b"x" * 1_000_000)  # half a sheet is on its way to disk...
        fp.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # ...when the supervisor kills the worker

    Image.Image.save = save
    root = sys.argv[1]
    plugin = MontageImage(PluginConfig(allowed_paths=(root,)))
    job = {"inputs": [f"in{n}.png" for n in range(4)], "output": "sheet.png", "tile": 1024}
    plugin.process(job, JobContext(job_id="j", attempt=1))
"""


def test_sigkill_mid_write_leaves_nothing(root: Path) -> None:
    fd, unnamed = sheet._open_unnamed(root)
    if not unnamed:
        pytest.skip(f"no O_TMPFILE on the file system of {root}: a SIGKILL can leave a temp file")
    os.close(fd)
    before = names(root)
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD), str(root)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert names(root) == before


def test_an_oversized_sheet_is_refused_before_allocation(root: Path) -> None:
    plugin = MontageImage(PluginConfig(allowed_paths=(root,),
                                       options={"montage_max_output_pixels": 1_000_000}))
    job = {"inputs": [f"in{n}.png" for n in range(4)], "output": "s.png", "tile": 1000}
    with pytest.raises(PermanentJobError, match="over the limit of 1000000"):
        plugin.process(job, JobContext(job_id="j", attempt=1))
