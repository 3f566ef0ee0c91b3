"""The contact sheet: grid layout, labels, and an atomic write of the result.

The layout follows ImageMagick's ``montage -geometry WxH+S+S``: every cell is
the tile plus ``spacing`` on each side (so neighbours are 2*spacing apart),
plus a label band under the tile when labels are on. Tiles are centred in
their cell.
"""

from __future__ import annotations

import errno
import os
import secrets
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from dtq.errors import PermanentJobError

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
LABEL_PAD = 2  # pixels above and below the label text


FONT_FILE = Path(__file__).with_name("fonts") / "DejaVuSans.ttf"


@lru_cache(maxsize=8)
def label_font(size: int) -> Font:
    """The shipped DejaVu Sans (same look on every box, accents included), cached per size.

    Pillow's bundled Aileron has no accented letters, so it is only the fallback.
    """
    try:
        return ImageFont.truetype(str(FONT_FILE), size)
    except (OSError, ImportError):
        return ImageFont.load_default(size=size)


def label_height(font: Font | None) -> int:
    """Height of the label band under each tile (0 without labels)."""
    if font is None:
        return 0
    return int(font.getbbox("Agjy|_")[3]) + 2 * LABEL_PAD


@dataclass(frozen=True)
class Layout:
    """Where each cell of the grid is."""

    columns: int
    rows: int
    tile: tuple[int, int]
    spacing: int
    label: int

    @property
    def cell(self) -> tuple[int, int]:
        return self.tile[0] + 2 * self.spacing, self.tile[1] + 2 * self.spacing + self.label

    @property
    def size(self) -> tuple[int, int]:
        return self.columns * self.cell[0], self.rows * self.cell[1]

    def origin(self, index: int) -> tuple[int, int]:
        """Top-left corner of the tile area of cell ``index`` (row-major)."""
        row, col = divmod(index, self.columns)
        return col * self.cell[0] + self.spacing, row * self.cell[1] + self.spacing


def check_size(layout: Layout, max_pixels: int) -> None:
    """Refuse a sheet over the operator's pixel limit before allocating it."""
    width, height = layout.size
    if width * height > max_pixels:
        raise PermanentJobError(
            f"montage_image: the sheet would be {width}x{height} = {width * height} pixels, over "
            f"the limit of {max_pixels} (plugin option montage_max_output_pixels); use fewer "
            "inputs, smaller tiles or fewer columns"
        )


def fit_label(text: str, font: Font, width: int) -> str:
    """``text`` shortened with an ellipsis so it fits ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text + "..." if text else ""


class Sheet:
    """The sheet being built; tiles are pasted as they come, one at a time."""

    def __init__(self, layout: Layout, background: tuple[int, int, int], font: Font | None):
        self.layout = layout
        self.font = font
        self.image = Image.new("RGB", layout.size, background)
        self.ink = (0, 0, 0) if sum(background) >= 384 else (255, 255, 255)
        self._draw = ImageDraw.Draw(self.image)

    def place(self, index: int, tile: Image.Image, label: str) -> None:
        """Paste ``tile`` centred in cell ``index`` and write its label under it."""
        x, y = self.layout.origin(index)
        tw, th = self.layout.tile
        self.image.paste(tile, (x + (tw - tile.width) // 2, y + (th - tile.height) // 2))
        if self.font is not None:
            text = fit_label(label, self.font, tw)
            left = x + (tw - int(self.font.getlength(text))) // 2
            self._draw.text((left, y + th + LABEL_PAD), text, fill=self.ink,
                            font=self.font)

    def finish(self, placed: int) -> Image.Image:
        """The sheet cut down to the rows that hold tiles (skipped inputs leave no gap)."""
        rows = max(1, -(-placed // self.layout.columns))
        if rows == self.layout.rows:
            return self.image
        return self.image.crop((0, 0, self.image.width, rows * self.layout.cell[1]))


def _save_options(fmt: str, quality: int) -> dict[str, object]:
    if fmt == "JPEG":
        return {"quality": quality}
    if fmt == "WEBP":
        return {"quality": quality, "method": 4}
    return {"compress_level": 6}


def _open_unnamed(directory: Path) -> tuple[int, bool]:
    """An unnamed file in ``directory`` (O_TMPFILE) that vanishes if we are killed."""
    flags = os.O_WRONLY | os.O_CLOEXEC
    if not os.path.isdir("/proc/self/fd"):  # needed to give the file a name later
        return -1, False
    try:
        return os.open(directory, flags | os.O_TMPFILE, 0o644), True
    except (AttributeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (
            errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT
        ):
            raise
    return -1, False


def write_atomic(image: Image.Image, path: Path, fmt: str, quality: int) -> int:
    """Write ``image`` to ``path`` so readers see the old file or the whole new one.

    The data goes to an unnamed O_TMPFILE in the same directory (nothing is left if
    the worker is SIGKILLed mid-write), is fsynced, linked under a temporary name,
    and renamed over ``path``. Returns the size in bytes.
    """
    temp = f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd, unnamed = _open_unnamed(path.parent)
        if not unnamed:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644,
                         dir_fd=dir_fd)
        try:
            size = _save(image, fd, fmt, quality, dir_fd, temp if unnamed else None)
            os.replace(temp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            _unlink_quietly(temp, dir_fd)
            raise
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return size


def _save(image: Image.Image, fd: int, fmt: str, quality: int, dir_fd: int,
          link_as: str | None) -> int:
    """Encode into ``fd``, fsync it, and give an unnamed file the name ``link_as``."""
    with os.fdopen(fd, "wb") as f:
        image.save(f, format=fmt, **_save_options(fmt, quality))
        f.flush()
        os.fsync(f.fileno())
        if link_as is not None:  # linkat(AT_SYMLINK_FOLLOW) on the /proc link names it
            os.link(f"/proc/self/fd/{f.fileno()}", link_as, dst_dir_fd=dir_fd,
                    follow_symlinks=True)
        return os.fstat(f.fileno()).st_size


def _unlink_quietly(name: str, dir_fd: int) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
