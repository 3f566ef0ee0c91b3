"""montage_image may only read and write under PluginConfig.allowed_paths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from dtq_plugins.montage_image import MontageImage
from PIL import Image

from dtq.errors import PermanentJobError
from dtq.plugin import JobContext, PluginConfig


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An allowed root holding one image, next to a forbidden image outside it."""
    inside = tmp_path / "root"
    inside.mkdir()
    Image.new("RGB", (40, 30), "green").save(inside / "ok.png")
    Image.new("RGB", (40, 30), "red").save(tmp_path / "secret.png")
    return inside


def run(root: Path, **data: Any) -> dict[str, Any]:
    plugin = MontageImage(PluginConfig(allowed_paths=(root,)))
    return plugin.process({"tile": 32, **data}, JobContext(job_id="j", attempt=1))


def test_relative_paths_are_taken_from_the_first_root(root: Path) -> None:
    result = run(root, inputs=["ok.png"], output="sheet.png")
    assert result["output"] == str(root / "sheet.png")
    assert result["placed"] == ["ok.png"]


@pytest.mark.parametrize("escape", ["../secret.png", "sub/../../secret.png"])
def test_dotdot_escape_is_refused(root: Path, escape: str) -> None:
    with pytest.raises(PermanentJobError, match="outside the allowed paths"):
        run(root, inputs=["ok.png", escape], output="sheet.png")
    assert not (root / "sheet.png").exists()


def test_absolute_path_outside_is_refused(root: Path) -> None:
    with pytest.raises(PermanentJobError, match="secret.png.*outside the allowed paths"):
        run(root, inputs=[str(root.parent / "secret.png")], output="sheet.png")


def test_symlink_out_of_the_root_is_refused(root: Path) -> None:
    (root / "link.png").symlink_to(root.parent / "secret.png")
    with pytest.raises(PermanentJobError, match="link.png.*outside the allowed paths"):
        run(root, inputs=["link.png"], output="sheet.png")


def test_symlink_out_found_by_glob_is_refused(root: Path) -> None:
    (root / "zlink.png").symlink_to(root.parent / "secret.png")
    with pytest.raises(PermanentJobError, match="zlink.png.*outside the allowed paths"):
        run(root, input_dir=".", glob="*.png", output="sheet.png")


def test_symlink_inside_the_root_is_fine(root: Path) -> None:
    (root / "alias.png").symlink_to(root / "ok.png")
    assert run(root, inputs=["alias.png"], output="sheet.png")["tiles"] == 1


@pytest.mark.parametrize("where", ["../sheet.png", "/tmp/montage-escape.png", "out/sheet.png"])
def test_output_outside_is_refused(root: Path, where: str) -> None:
    (root / "out").symlink_to(root.parent)  # a directory symlink pointing out
    with pytest.raises(PermanentJobError, match="output:.*outside the allowed paths"):
        run(root, inputs=["ok.png"], output=where)
    assert not (root.parent / "sheet.png").exists()
    assert not Path("/tmp/montage-escape.png").exists()


def test_no_allowed_paths_allows_nothing(root: Path) -> None:
    plugin = MontageImage(PluginConfig())
    with pytest.raises(PermanentJobError, match="--allow-path"):
        plugin.process({"inputs": [str(root / "ok.png")], "output": str(root / "s.png")},
                       JobContext(job_id="j", attempt=1))


def test_fifo_is_skipped_not_waited_on(root: Path) -> None:
    os.mkfifo(root / "pipe.png")
    result = run(root, inputs=["ok.png", "pipe.png"], output="sheet.png")
    assert result["skipped"] == [{"input": "pipe.png", "reason": result["skipped"][0]["reason"]}]
    assert "not a regular file" in result["skipped"][0]["reason"]


def test_input_dir_glob_is_sorted_and_skips_directories(root: Path) -> None:
    Image.new("RGB", (10, 10), "blue").save(root / "a.png")
    (root / "dir.png").mkdir()
    result = run(root, input_dir=str(root), glob="*.png", output="sheet.jpg")
    assert [Path(p).name for p in result["placed"]] == ["a.png", "ok.png"]
    assert result["format"] == "JPEG"
