"""Every hostile file in shared/data/images/bad ends as its README says: rendered or skipped.

Default mode skips a bad file with a reason naming it; strict mode fails the
job with PermanentJobError naming it. Nothing crashes, hangs or leaks stderr.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from dtq_plugins.montage_image import MontageImage
from PIL import Image

from dtq.errors import PermanentJobError
from dtq.plugin import JobContext, PluginConfig

DATA = Path(__file__).parents[2] / ".." / "shared" / "data" / "images"
if not (DATA / "bad").is_dir():
    pytest.skip(f"shared test images not found at {DATA.resolve()}", allow_module_level=True)
BAD = (DATA / "bad").resolve()
GOOD = (DATA / "real" / "hopper.jpg").resolve()

RENDER = {
    "anim_apng_41_frames.png", "anim_gif_31_frames.gif", "anim_webp_42_frames.webp",
    "corrupt_jpeg_bad_exif_and_data.jpg", "corrupt_jpeg_junk_before_marker.jpg",
    "edge_1x1.png", "edge_aspect_16000x4.png", "edge_exif_orientation_9.jpg",
    "edge_png_content_named.jpg", "large_jpeg_10000x8000_80mpx.jpg", "mode_CMYK_tiff.tif",
    "mode_F_float32.tiff", "mode_I16_tiff.tif", "mode_LAB_tiff.tif", "mode_LA_coins.png",
    "mode_P_alpha_palette.png", "mode_P_single_transparent_index.png",
    "multipage_tiff_3_pages.tiff", "png16_gray_moon.png", "png16_rgb_hopper.png",
    "png16_rgba_transparent.png",
}
# file -> a word the skip reason must contain
SKIP = {
    "trunc_jpeg_half_camera.jpg": "truncated", "trunc_jpeg_ultrahdr_phone.jpg": "truncated",
    "trunc_jpeg_pillow.jpg": "truncated", "trunc_jpeg_inside_exif.jpg": "truncated",
    "trunc_png_half_photo.png": "truncated", "trunc_png_pillow.png": "truncated",
    "trunc_png_no_iend.png": "truncated",
    "empty_zero_bytes.jpg": "empty", "empty_zero_bytes.png": "empty",
    "text_named_as.jpg": "not a recognised image", "html_named_as.png": "not a recognised image",
    "unsupported_heif.heif": "unsupported format",
    "bomb_gif_4gpx.gif": "decompression bomb", "bomb_ico_4gpx.ico": "decompression bomb",
    "bomb_png_header_100000x100000.png": "decompression bomb",
    "bomb_png_valid_1bit_40000x40000.png": "decompression bomb",
    "header_bmp_reallybig.bmp": "decompression bomb",
    "bomb_png_text_chunk.png": "text chunk",
    "large_png_gray_12000x9000_108mpx.png": "max_pixels",
    "header_broken_png.png": "not a recognised image",
    "header_png_bad_ihdr_crc.png": "not a recognised image",
    "header_jpeg_sof_width_0.jpg": "not a recognised image",
    "header_gif_zero_width.gif": "not a recognised image",
    "header_bmp_bad_header_size.bmp": "Unsupported BMP header",
    "header_tiff_oom.tif": "not a recognised image",
    "corrupt_png_idat_stream.png": "unrecognized data stream",
}


def run(inputs: list[Path], **data: Any) -> dict[str, Any]:
    out = data.pop("out")
    plugin = MontageImage(PluginConfig(allowed_paths=(BAD.parent, out)))
    job = {"inputs": [str(p) for p in inputs], "output": str(out / "sheet.png"), "tile": 64,
           **data}
    return plugin.process(job, JobContext(job_id="j", attempt=1))


def test_the_table_covers_the_whole_corpus() -> None:
    files = {p.name for p in BAD.iterdir() if p.name != "README.md"}
    assert files == RENDER | set(SKIP)
    assert len(files) == 47


@pytest.mark.parametrize("name", sorted(RENDER))
def test_unusual_but_valid_files_are_rendered(name: str, tmp_path: Path) -> None:
    for strict in (False, True):
        result = run([BAD / name, GOOD], out=tmp_path, strict=strict)
        assert result["placed"] == [str(BAD / name), str(GOOD)]
        assert result["skipped"] == []


@pytest.mark.parametrize("name", sorted(SKIP))
def test_bad_files_are_skipped_with_a_reason(name: str, tmp_path: Path) -> None:
    result = run([BAD / name, GOOD], out=tmp_path)
    assert result["placed"] == [str(GOOD)]
    [skipped] = result["skipped"]
    assert skipped["input"] == str(BAD / name)
    assert SKIP[name].lower() in skipped["reason"].lower()


@pytest.mark.parametrize("name", sorted(SKIP))
def test_bad_files_fail_a_strict_job_naming_the_file(name: str, tmp_path: Path) -> None:
    with pytest.raises(PermanentJobError, match=name.replace(".", r"\.")) as failed:
        run([GOOD, BAD / name], out=tmp_path, strict=True)
    assert SKIP[name].lower() in str(failed.value).lower()
    assert not (tmp_path / "sheet.png").exists()


def test_the_whole_corpus_in_one_job_closes_every_file(tmp_path: Path) -> None:
    files = sorted(p for p in BAD.iterdir() if p.name != "README.md")
    open_before = set(os.listdir("/proc/self/fd"))
    result = run(files, out=tmp_path)
    assert set(os.listdir("/proc/self/fd")) == open_before
    assert {Path(p).name for p in result["placed"]} == RENDER
    assert {Path(s["input"]).name for s in result["skipped"]} == set(SKIP)


def test_a_job_where_nothing_renders_fails(tmp_path: Path) -> None:
    with pytest.raises(PermanentJobError, match="none of the 2 inputs"):
        run([BAD / "empty_zero_bytes.jpg", BAD / "text_named_as.jpg"], out=tmp_path)


def test_max_pixels_allows_the_108_mpx_png(tmp_path: Path) -> None:
    name = "large_png_gray_12000x9000_108mpx.png"
    result = run([BAD / name], out=tmp_path, max_pixels=110_000_000)
    assert result["tiles"] == 1
    result = run([BAD / name, GOOD], out=tmp_path, max_pixels=100_000_000)
    assert "over max_pixels=100000000" in result["skipped"][0]["reason"]


def test_bombs_are_refused_and_pillow_limits_stay(tmp_path: Path) -> None:
    filters = list(warnings.filters)
    limit = Image.MAX_IMAGE_PIXELS
    result = run([BAD / "bomb_png_valid_1bit_40000x40000.png", GOOD], out=tmp_path,
                 max_pixels=2 * limit)
    assert "1600000000 pixels" in result["skipped"][0]["reason"]
    assert Image.MAX_IMAGE_PIXELS == limit
    assert warnings.filters == filters


def test_libtiff_chatter_does_not_reach_stderr(tmp_path: Path,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    run([BAD / "header_tiff_oom.tif", GOOD], out=tmp_path)
    assert "samples per pixel" not in capfd.readouterr().err
