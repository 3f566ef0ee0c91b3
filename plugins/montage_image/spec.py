"""The montage job-data schema: parse and validate a job's ``data`` into a `MontageSpec`.

Every problem raises `PermanentJobError` naming the field, because bad job data
never gets better on a retry. Unknown keys are refused so a typo ("colums") does
not silently fall back to a default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from PIL import Image, ImageColor

from dtq.errors import PermanentJobError

FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "webp": "WEBP"}
KNOWN_KEYS = frozenset(
    {
        "inputs", "input_dir", "glob", "output", "format", "tile", "columns", "spacing",
        "background", "labels", "font_size", "quality", "strict", "max_inputs", "max_pixels",
        "upscale",
    }
)
MAX_TILE_SIDE = 4096


@dataclass(frozen=True)
class Limits:
    """Operator limits from the plugin config; a job may ask for less, never more."""

    max_inputs: int = 1000
    max_output_pixels: int = 100_000_000
    max_image_pixels: int = 2 * Image.MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class MontageSpec:
    """A validated montage job."""

    inputs: tuple[str, ...]
    input_dir: str | None
    glob: str
    output: str
    format: str
    tile: tuple[int, int]
    columns: int | None
    spacing: int
    background: tuple[int, int, int]
    labels: bool
    font_size: int
    quality: int
    strict: bool
    max_inputs: int
    max_pixels: int | None
    upscale: bool

    def grid(self, count: int) -> tuple[int, int]:
        """Columns and rows for ``count`` tiles (columns default to ceil(sqrt(n)))."""
        columns = self.columns or max(1, math.ceil(math.sqrt(count)))
        columns = max(1, min(columns, count))
        return columns, max(1, math.ceil(count / columns))


def bad(field: str, problem: str) -> PermanentJobError:
    """The error for an invalid field, worded the same way everywhere."""
    return PermanentJobError(f"montage_image: invalid job data: {field}: {problem}")


def _int(data: Mapping[str, Any], field: str, default: int, lo: int, hi: int) -> int:
    value = data.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(field, f"must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise bad(field, f"must be between {lo} and {hi}, got {value}")
    return value


def _bool(data: Mapping[str, Any], field: str, default: bool) -> bool:
    value = data.get(field, default)
    if not isinstance(value, bool):
        raise bad(field, f"must be true or false, got {value!r}")
    return value


def _tile(data: Mapping[str, Any]) -> tuple[int, int]:
    value = data.get("tile", 256)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise bad("tile", f"must be an integer or [width, height], got {value!r}")
    for side in value:
        if isinstance(side, bool) or not isinstance(side, int) or not 1 <= side <= MAX_TILE_SIDE:
            raise bad("tile", f"each side must be an integer 1..{MAX_TILE_SIDE}, got {value!r}")
    return value[0], value[1]


def _background(data: Mapping[str, Any]) -> tuple[int, int, int]:
    value = data.get("background", "#ffffff")
    if not isinstance(value, str):
        raise bad("background", f"must be a colour string such as '#ffffff', got {value!r}")
    try:
        rgb = ImageColor.getrgb(value)
    except ValueError:
        raise bad("background", f"unknown colour {value!r}") from None
    return rgb[0], rgb[1], rgb[2]


def _format(data: Mapping[str, Any], output: str) -> str:
    value = data.get("format")
    if value is None:
        value = PurePath(output).suffix.lstrip(".")
        field = "output"
    else:
        field = "format"
    if not isinstance(value, str) or value.lower() not in FORMATS:
        raise bad(field, f"format must be PNG, JPEG or WebP (from 'format' or the "
                         f"output extension), got {value!r}")
    return FORMATS[value.lower()]


def _sources(data: Mapping[str, Any]) -> tuple[tuple[str, ...], str | None, str]:
    inputs, input_dir, pattern = data.get("inputs"), data.get("input_dir"), data.get("glob", "*")
    if (inputs is None) == (input_dir is None):
        raise bad("inputs", "give exactly one of 'inputs' (a list of paths) or 'input_dir'")
    if inputs is not None:
        if not isinstance(inputs, list) or not all(isinstance(p, str) and p for p in inputs):
            raise bad("inputs", "must be a list of non-empty path strings")
        if not inputs:
            raise bad("inputs", "is empty")
        return tuple(inputs), None, "*"
    if not isinstance(input_dir, str) or not input_dir:
        raise bad("input_dir", f"must be a non-empty path string, got {input_dir!r}")
    if not isinstance(pattern, str) or not pattern or pattern.startswith("/") \
            or ".." in PurePath(pattern).parts:
        raise bad("glob", f"must be a relative pattern without '..', got {pattern!r}")
    return (), input_dir, pattern


def _max_pixels(data: Mapping[str, Any], limits: Limits) -> int | None:
    if data.get("max_pixels") is None:
        return None
    return _int(data, "max_pixels", 0, 1, limits.max_image_pixels)


def parse_spec(data: Any, limits: Limits) -> MontageSpec:
    """Validate job data against the schema and the operator's limits."""
    if not isinstance(data, Mapping):
        raise bad("data", f"must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise bad(unknown[0], f"unknown field (known: {', '.join(sorted(KNOWN_KEYS))})")
    output = data.get("output")
    if not isinstance(output, str) or not output:
        raise bad("output", f"must be a non-empty path string, got {output!r}")
    inputs, input_dir, pattern = _sources(data)
    columns = None if data.get("columns") is None else _int(data, "columns", 0, 1, 10_000)
    spec = MontageSpec(
        inputs=inputs, input_dir=input_dir, glob=pattern, output=output,
        format=_format(data, output), tile=_tile(data), columns=columns,
        spacing=_int(data, "spacing", 4, 0, 1000), background=_background(data),
        labels=_bool(data, "labels", True), font_size=_int(data, "font_size", 12, 4, 200),
        quality=_int(data, "quality", 85, 1, 100), strict=_bool(data, "strict", False),
        max_inputs=_int(data, "max_inputs", limits.max_inputs, 1, limits.max_inputs),
        max_pixels=_max_pixels(data, limits), upscale=_bool(data, "upscale", True),
    )
    if len(spec.inputs) > spec.max_inputs:
        raise bad("inputs", f"{len(spec.inputs)} inputs, more than max_inputs={spec.max_inputs}")
    return spec
