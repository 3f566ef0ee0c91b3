"""Golden checks of montage_image sheets: geometry, placement, orientation, colour modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dtq_plugins.montage_image import MontageImage
from dtq_plugins.montage_image.sheet import label_font, label_height
from PIL import Image, ImageOps, ImageStat

from dtq.plugin import JobContext, PluginConfig

DATA = Path(__file__).parents[2] / ".." / "shared" / "data" / "images"
if not (DATA / "real").is_dir():
    pytest.skip(f"shared test images not found at {DATA.resolve()}", allow_module_level=True)
REAL = (DATA / "real").resolve()
BAD = (DATA / "bad").resolve()
RED = (255, 0, 0)


def run(tmp_path: Path, inputs: list[Path], **data: Any) -> tuple[dict[str, Any], Image.Image]:
    plugin = MontageImage(PluginConfig(allowed_paths=(REAL, BAD, tmp_path)))
    job = {"inputs": [str(p) for p in inputs], "output": str(tmp_path / "sheet.png"), **data}
    result = plugin.process(job, JobContext(job_id="j", attempt=1))
    with Image.open(result["output"]) as sheet:
        return result, sheet.convert("RGB")


def close(a: tuple[int, ...], b: tuple[int, ...], tolerance: int = 12) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def test_geometry_matches_imagemagick_montage(tmp_path: Path) -> None:
    inputs = [REAL / "landscape_1.jpg", REAL / "portrait_1.jpg", REAL / "hopper.jpg"]
    result, sheet = run(tmp_path, inputs, tile=[100, 80], spacing=5, columns=2)
    label = label_height(label_font(12))
    assert label > 0
    assert sheet.size == (2 * 110, 2 * (90 + label))
    assert (result["width"], result["height"], result["tiles"]) == (*sheet.size, 3)
    assert result["bytes"] == Path(result["output"]).stat().st_size
    assert result["placed"] == [str(p) for p in inputs] and result["skipped"] == []


def test_the_default_geometry_is_imagemagicks(tmp_path: Path) -> None:
    """montage -geometry 256x256+4+4 -tile 8x -label %f: 264 px cells, 283 px rows."""
    _, sheet = run(tmp_path, [REAL / "hopper.jpg"] * 9, columns=8)
    assert sheet.size == (8 * 264, 2 * 283)


def test_tiles_are_placed_in_their_cells(tmp_path: Path) -> None:
    inputs = [REAL / "landscape_1.jpg", REAL / "portrait_1.jpg", REAL / "hopper.jpg"]
    _, sheet = run(tmp_path, inputs, tile=64, spacing=4, columns=2, labels=False,
                   background="#ff0000")
    assert sheet.size == (144, 144)
    for x, y in [(1, 1), (70, 70), (74, 1), (143, 143), (1, 75), (100, 100)]:
        assert sheet.getpixel((x, y)) == RED, (x, y)  # spacing, and the empty fourth cell
    assert sheet.getpixel((36, 6)) == RED  # a 4:3 landscape leaves bands above and below
    assert sheet.getpixel((80, 36)) == RED  # a 3:4 portrait leaves bands left and right
    for n, path in enumerate(inputs):
        x, y = 4 + 72 * (n % 2), 4 + 72 * (n // 2)
        with Image.open(path) as im:
            want = ImageOps.exif_transpose(im).convert("RGB")
        want.thumbnail((64, 64))
        got = sheet.crop((x + (64 - want.width) // 2, y + (64 - want.height) // 2,
                          x + (64 + want.width) // 2, y + (64 + want.height) // 2))
        assert close(tuple(ImageStat.Stat(got).mean), tuple(ImageStat.Stat(want).mean), 6)


def test_small_images_are_scaled_up_like_montage_unless_told(tmp_path: Path) -> None:
    _, sheet = run(tmp_path, [REAL / "hopper.jpg"], tile=256, labels=False,
                   background="#ff0000")
    assert sheet.getpixel((6, 6)) != RED  # 128 px hopper fills the 256 px tile
    _, sheet = run(tmp_path, [REAL / "hopper.jpg"], tile=256, labels=False,
                   background="#ff0000", upscale=False)
    assert sheet.getpixel((6, 6)) == RED and sheet.getpixel((132, 132)) != RED


def test_exif_orientation_6_is_rotated(tmp_path: Path) -> None:
    stored = Image.new("RGB", (200, 100), "red")
    stored.paste((0, 0, 255), (100, 0, 200, 100))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    stored.save(tmp_path / "rot6.jpg", exif=exif, quality=95)
    _, sheet = run(tmp_path, [tmp_path / "rot6.jpg"], tile=64, spacing=0, labels=False,
                   background="#00ff00")
    assert sheet.size == (64, 64)
    assert close(sheet.getpixel((32, 8)), RED, 40)  # stored left is now the top
    assert close(sheet.getpixel((32, 56)), (0, 0, 255), 40)
    assert sheet.getpixel((4, 32)) == (0, 255, 0)  # now portrait: bands left and right


def test_alpha_is_composited_onto_the_background(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (64, 64), (0, 255, 0, 0))  # hidden green, fully transparent
    rgba.paste((0, 0, 255, 255), (32, 0, 64, 64))
    rgba.save(tmp_path / "alpha.png")
    _, sheet = run(tmp_path, [tmp_path / "alpha.png"], tile=64, spacing=0, labels=False,
                   background="#ff0000")
    assert sheet.getpixel((10, 32)) == RED
    assert sheet.getpixel((54, 32)) == (0, 0, 255)


@pytest.mark.parametrize("name", ["mode_P_single_transparent_index.png", "mode_LA_coins.png",
                                  "png16_rgba_transparent.png", "mode_P_alpha_palette.png"])
def test_transparent_pixels_show_the_background(tmp_path: Path, name: str) -> None:
    with Image.open(BAD / name) as im:
        alpha = im.convert("RGBA").getchannel("A")
    clear = [(x, y) for y in range(0, alpha.height, 3) for x in range(0, alpha.width, 3)
             if alpha.getpixel((x, y)) == 0]
    assert clear, "the test image should have transparent pixels"
    _, sheet = run(tmp_path, [BAD / name], tile=list(alpha.size), spacing=0, labels=False,
                   background="#00ff00")
    assert {sheet.getpixel(xy) for xy in clear} == {(0, 255, 0)}


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    _, sheet = run(tmp_path, [BAD / "png16_gray_moon.png"], tile=128, spacing=0, labels=False)
    mean = ImageStat.Stat(sheet.convert("L")).mean[0]
    assert 95 < mean < 130  # the naive conversion gives ~255


def test_float_image_is_normalised(tmp_path: Path) -> None:
    _, sheet = run(tmp_path, [BAD / "mode_F_float32.tiff"], tile=128, spacing=0, labels=False)
    low, high = sheet.convert("L").getextrema()
    assert low < 20 and high > 235


def test_first_frame_only(tmp_path: Path) -> None:
    result, _ = run(tmp_path, [BAD / "anim_gif_31_frames.gif", BAD / "anim_webp_42_frames.webp"])
    assert result["tiles"] == 2


def test_progress_is_reported_per_tile(tmp_path: Path) -> None:
    seen: list[tuple[float | None, str]] = []
    plugin = MontageImage(PluginConfig(allowed_paths=(REAL, tmp_path)))
    ctx = JobContext(job_id="j", attempt=1, report=lambda f, m: seen.append((f, m)))
    job = {"inputs": [str(REAL / "hopper.jpg")] * 4, "output": str(tmp_path / "s.webp")}
    assert plugin.process(job, ctx)["format"] == "WEBP"
    fractions = [f for f, _ in seen]
    assert len(seen) == 5 and fractions == sorted(fractions) and fractions[-1] == 1.0


def test_labels_use_the_shipped_font_with_accents() -> None:
    font = label_font(12)
    assert font.getname()[0] == "DejaVu Sans"  # Pillow's own Aileron draws é as a box
