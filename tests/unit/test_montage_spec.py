"""Job-data validation for montage_image: defaults, and errors that name the field."""

from __future__ import annotations

import pytest
from dtq_plugins.montage_image import MontageImage
from dtq_plugins.montage_image.plugin import limits_from_options
from dtq_plugins.montage_image.spec import Limits, parse_spec

from dtq.errors import PermanentJobError, PluginError

BASE = {"inputs": ["a.jpg"], "output": "sheet.png"}


def parse(**changes: object) -> object:
    data = {**BASE, **changes}
    return parse_spec({k: v for k, v in data.items() if v is not None}, Limits())


def test_defaults() -> None:
    spec = parse()
    assert spec.tile == (256, 256)
    assert spec.spacing == 4
    assert spec.background == (255, 255, 255)
    assert spec.labels is True and spec.strict is False and spec.upscale is True
    assert (spec.font_size, spec.quality, spec.max_inputs) == (12, 85, 1000)
    assert spec.format == "PNG" and spec.max_pixels is None


@pytest.mark.parametrize(
    ("output", "fmt", "expected"),
    [("x.jpg", None, "JPEG"), ("x.JPEG", None, "JPEG"), ("x.webp", None, "WEBP"),
     ("x.bin", "jpeg", "JPEG"), ("x.png", "WebP", "WEBP")],
)
def test_format_from_field_or_extension(output: str, fmt: str | None, expected: str) -> None:
    assert parse(output=output, format=fmt).format == expected


def test_tile_as_int_or_pair() -> None:
    assert parse(tile=100).tile == (100, 100)
    assert parse(tile=[300, 200]).tile == (300, 200)


def test_columns_default_to_ceil_sqrt() -> None:
    assert parse().grid(10) == (4, 3)
    assert parse().grid(1) == (1, 1)
    assert parse(columns=8).grid(48) == (8, 6)
    assert parse(columns=8).grid(3) == (3, 1)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tile": [0, 10]}, "tile"),
        ({"tile": "big"}, "tile"),
        ({"tile": [1, 2, 3]}, "tile"),
        ({"columns": 0}, "columns"),
        ({"spacing": -1}, "spacing"),
        ({"labels": "yes"}, "labels"),
        ({"strict": 1}, "strict"),
        ({"quality": 101}, "quality"),
        ({"background": "not-a-colour"}, "background"),
        ({"output": "x.gif"}, "output"),
        ({"format": "tiff"}, "format"),
        ({"output": ""}, "output"),
        ({"inputs": []}, "inputs"),
        ({"inputs": "a.jpg"}, "inputs"),
        ({"input_dir": "photos"}, "inputs"),
        ({"inputs": None, "input_dir": "d", "glob": "../*"}, "glob"),
        ({"max_inputs": 5000}, "max_inputs"),
        ({"max_pixels": 10**12}, "max_pixels"),
        ({"colums": 3}, "colums"),
    ],
)
def test_invalid_fields_are_named(changes: dict[str, object], field: str) -> None:
    with pytest.raises(PermanentJobError, match=rf"invalid job data: {field}:"):
        parse(**changes)


def test_not_an_object() -> None:
    with pytest.raises(PermanentJobError, match="data: must be a JSON object"):
        parse_spec(["a.jpg"], Limits())


def test_too_many_inputs_for_max_inputs() -> None:
    with pytest.raises(PermanentJobError, match="more than max_inputs=2"):
        parse(inputs=["a", "b", "c"], max_inputs=2)


def test_plugin_options_cap_the_job() -> None:
    limits = limits_from_options({"montage_max_inputs": "10", "montage_max_image_pixels": 10**12})
    assert limits.max_inputs == 10
    assert limits.max_image_pixels == 2 * 89_478_485  # Pillow's hard limit is never raised
    with pytest.raises(PermanentJobError, match="max_inputs"):
        parse_spec({**BASE, "max_inputs": 11}, limits)


def test_bad_plugin_option_fails_at_load() -> None:
    from dtq.plugin import PluginConfig

    with pytest.raises(PluginError, match="montage_max_inputs"):
        MontageImage(PluginConfig(options={"montage_max_inputs": "many"}))
