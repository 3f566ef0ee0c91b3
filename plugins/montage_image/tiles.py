"""Decode one input file into one 8-bit RGB tile, safely and cheaply.

Any input can be hostile, so every failure of Pillow (and there are several
exception families: `OSError`, `DecompressionBombError`, `ValueError`,
`SyntaxError`, `struct.error`, ...) becomes a `TileError` whose message is the
reason shown to the user. Only frame 0 of a multi-frame file is used.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from .paths import open_regular

log = logging.getLogger(__name__)

# Formats we decode (JPEG includes MPO). Others are refused on purpose: EPS runs Ghostscript.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "DIB", "ICO", "PPM", "TGA")
JPEG_LIKE = ("JPEG", "MPO")
# The modules that register FORMATS' decoders (and the JPEG, PNG and WEBP encoders),
# imported with this module, before the workers fork. Image.init() would import all
# ~45 of Pillow's format plugins: ~25 ms at every supervisor start and their memory in
# every worker, for formats we refuse anyway.
FORMAT_MODULES = ("JpegImagePlugin", "PngImagePlugin", "GifImagePlugin", "WebPImagePlugin",
                  "TiffImagePlugin", "BmpImagePlugin", "IcoImagePlugin", "PpmImagePlugin",
                  "TgaImagePlugin")
for _module in FORMAT_MODULES:
    importlib.import_module(f"PIL.{_module}")

EXIF_ORIENTATION = 0x0112
TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class TileError(Exception):
    """An input that cannot become a tile; ``str()`` is the reason for the user."""


@dataclass(frozen=True)
class TileOptions:
    """How to turn an input into a tile."""

    size: tuple[int, int]
    background: tuple[int, int, int]
    max_pixels: int | None = None  # None: Pillow's warning limit is a hard refusal
    upscale: bool = True


def fit(size: tuple[int, int], box: tuple[int, int], upscale: bool) -> tuple[int, int]:
    """The largest size with ``size``'s aspect ratio inside ``box``; never 0 on a side."""
    w, h = size
    scale = min(box[0] / w, box[1] / h)
    if not upscale:
        scale = min(scale, 1.0)
    return max(1, min(box[0], round(w * scale))), max(1, min(box[1], round(h * scale)))


def orientation(im: Image.Image) -> int:
    """The EXIF (or XMP) orientation 1..8; anything broken or out of range means 1."""
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a corrupt EXIF block must never fail the tile
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def to_8bit(im: Image.Image) -> Image.Image:
    """Convert any mode to L, RGB or RGBA without clipping or losing transparency."""
    mode = im.mode
    if mode.startswith("I"):  # I;16 and friends: scale 16 bits down to 8, never clip
        return im.convert("I").point(lambda v: v / 256).convert("L")
    if mode == "F":
        return _normalise_float(im)
    if mode in ALPHA_MODES or "transparency" in im.info:
        return im.convert("RGBA")
    if mode in ("L", "RGB"):
        return im
    return im.convert("L" if mode == "1" else "RGB")


def _normalise_float(im: Image.Image) -> Image.Image:
    lo, hi = im.getextrema()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise TileError("unsupported: floating-point image with NaN or infinite values")
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return im.point(lambda v: (v - lo) * scale).convert("L")


def flatten(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite RGBA onto the background and return RGB (the sheet has no alpha)."""
    if im.mode == "RGBA":
        base = Image.new("RGB", im.size, background)
        base.paste(im, (0, 0), im)
        return base
    return im if im.mode == "RGB" else im.convert("RGB")


def render(im: Image.Image, opts: TileOptions) -> Image.Image:
    """Turn an opened image into a tile: draft, convert, resize, flatten, orient."""
    w, h = im.size
    if w < 1 or h < 1:
        raise TileError(f"invalid image size {w}x{h}")
    if opts.max_pixels is not None and w * h > opts.max_pixels:
        raise TileError(f"refused: {w}x{h} is {w * h} pixels, over max_pixels={opts.max_pixels}")
    jpeg = im.format in JPEG_LIKE  # from the content, never the file name
    if not jpeg:
        im.load()  # decode errors must surface here, not inside getexif() (PNG loads there)
    turn = orientation(im)
    box = opts.size if turn < 5 else (opts.size[1], opts.size[0])
    target = fit(im.size, box, opts.upscale)
    if jpeg:
        im.draft("RGB", target)  # libjpeg scales by 1/2..1/8 while decoding
    tile = to_8bit(im)
    if tile.size != target:
        tile = tile.resize(target, Image.Resampling.LANCZOS, reducing_gap=2.0)
    tile = flatten(tile, opts.background)
    if turn in TRANSPOSE:
        tile = tile.transpose(TRANSPOSE[turn])
    return tile.copy() if tile is im else tile


def describe(exc: BaseException) -> str:
    """A short reason for the user from whatever Pillow raised."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, Image.DecompressionBombError):
        return f"refused as a decompression bomb: {text}"
    if isinstance(exc, Image.DecompressionBombWarning):
        return (f"refused by the decompression-bomb guard: {text}; set max_pixels in the "
                "job to allow larger images")
    if isinstance(exc, UnidentifiedImageError):
        return ("not a recognised image (not an image, a corrupt header, or an unsupported "
                "format such as HEIF)")
    if "truncated" in text.lower():
        return f"truncated file: {text}"
    if isinstance(exc, ValueError) and "MAX_TEXT_CHUNK" in text:
        return f"refused: a PNG text chunk inflates too far ({text})"
    return f"cannot decode: {type(exc).__name__}: {text}"


@contextmanager
def quiet_stderr(path: Path) -> Iterator[None]:
    """Keep C libraries (libtiff) from writing to our stderr; log what they said."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            said = sink.read(2000).decode("utf-8", "replace").strip()
            if said:
                log.debug("decoder said about %s: %s", path, said)


def load_tile(path: Path, opts: TileOptions) -> Image.Image:
    """Decode ``path`` (already inside the sandbox) into an RGB tile, or raise TileError."""
    try:
        fd = open_regular(path)
    except OSError as exc:
        raise TileError(f"cannot open: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as f:
        if os.fstat(fd).st_size == 0:
            raise TileError("empty file (0 bytes)")
        bomb = "error" if opts.max_pixels is None else "ignore"
        try:
            with quiet_stderr(path), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # corrupt-EXIF and palette notes are not errors
                warnings.simplefilter(bomb, Image.DecompressionBombWarning)
                with Image.open(f, formats=FORMATS) as im:
                    return render(im, opts)
        except TileError:
            raise
        except Exception as exc:  # noqa: BLE001 - hostile input: every failure is a reason
            raise TileError(describe(exc)) from None
