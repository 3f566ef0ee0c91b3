"""Tile decisions on synthetic images: fitting, mode conversion, orientation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from dtq_plugins.montage_image.tiles import (
    TileError,
    TileOptions,
    fit,
    load_tile,
    orientation,
    to_8bit,
)
from PIL import Image


@pytest.mark.parametrize(
    ("size", "box", "upscale", "expected"),
    [
        ((4032, 3024), (256, 256), True, (256, 192)),
        ((128, 128), (256, 256), True, (256, 256)),
        ((128, 128), (256, 256), False, (128, 128)),
        ((1, 1), (256, 256), True, (256, 256)),
        ((16000, 4), (256, 256), True, (256, 1)),
        ((4, 16000), (256, 256), False, (1, 256)),
    ],
)
def test_fit_keeps_aspect_and_never_returns_zero(
    size: tuple[int, int], box: tuple[int, int], upscale: bool, expected: tuple[int, int]
) -> None:
    assert fit(size, box, upscale) == expected


def test_16_bit_is_scaled_by_1_over_256() -> None:
    im = Image.new("I;16", (4, 4), 0x8000)
    assert to_8bit(im).getextrema() == (128, 128)


def test_float_is_stretched_min_to_max() -> None:
    im = Image.new("F", (2, 1))
    im.putpixel((0, 0), -3.0)
    im.putpixel((1, 0), 3.0)
    assert to_8bit(im).getextrema() == (0, 255)


def test_float_with_nan_is_unsupported() -> None:
    im = Image.new("F", (2, 1), float("nan"))
    with pytest.raises(TileError, match="NaN"):
        to_8bit(im)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA"])
def test_alpha_modes_keep_their_alpha(mode: str) -> None:
    assert to_8bit(Image.new(mode, (2, 2))).mode == "RGBA"


def test_palette_with_trns_keeps_transparency() -> None:
    im = Image.new("P", (2, 2), 3)
    im.info["transparency"] = 3
    assert to_8bit(im).convert("RGBA").getpixel((0, 0))[3] == 0


@pytest.mark.parametrize("value", [0, 9, "6", -1])
def test_out_of_range_orientation_means_1(value: object) -> None:
    im = Image.new("RGB", (2, 2))
    im.getexif()[0x0112] = value
    assert orientation(im) == 1


def test_a_png_named_jpg_takes_the_png_path(tmp_path: Path) -> None:
    Image.new("RGB", (40, 20), "blue").save(tmp_path / "photo.jpg", format="PNG")
    tile = load_tile(tmp_path / "photo.jpg", TileOptions((20, 20), (255, 255, 255)))
    assert tile.size == (20, 10) and tile.getpixel((5, 5)) == (0, 0, 255)


def test_missing_file_is_a_tile_error(tmp_path: Path) -> None:
    with pytest.raises(TileError, match="cannot open"):
        load_tile(tmp_path / "gone.jpg", TileOptions((20, 20), (255, 255, 255)))


FORMATS_PROBE = """
import sys
from PIL import Image
from dtq_plugins.montage_image.plugin import MontageImage
from dtq_plugins.montage_image.tiles import FORMATS
MontageImage().setup()
missing = [f for f in FORMATS if f not in Image.OPEN] + [f for f in ("JPEG", "PNG", "WEBP")
                                                         if f not in Image.SAVE]
print(missing, Image._initialized, "PIL.PdfImagePlugin" in sys.modules)
"""


def test_setup_registers_every_format_we_decode_without_loading_all_of_pillow() -> None:
    """A format left out would make Pillow import every plugin at the first open in
    each worker; a full init before forking costs every supervisor start ~25 ms."""
    out = subprocess.run([sys.executable, "-c", FORMATS_PROBE], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "0", "False"]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "ICO", "PPM", "TGA"])
def test_every_format_we_decode_opens_after_a_fresh_import(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt.lower()}"
    Image.new("RGB", (8, 6), (200, 10, 10)).save(path, format=fmt)
    code = ("from pathlib import Path\n"
            "from dtq_plugins.montage_image.tiles import TileOptions, load_tile\n"
            "from PIL import Image\n"
            f"tile = load_tile(Path({str(path)!r}), TileOptions(size=(4, 4), background=(0, 0, 0)))\n"
            "print(tile.size, Image._initialized)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] != "2"  # opened without Pillow's import-everything init()
