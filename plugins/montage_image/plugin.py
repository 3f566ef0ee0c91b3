"""The `montage_image` plugin: many images in, one labelled contact sheet out.

Flow: validate the job data, resolve every path inside the sandbox, refuse an
oversized sheet before allocating it, then decode one input at a time into a
tile and paste it at once (full-size images are never held together), and
write the sheet atomically.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

from PIL import Image

from dtq.errors import PermanentJobError, PluginError
from dtq.plugin import JobContext, Plugin, PluginConfig

from .paths import Sandbox
from .sheet import Layout, Sheet, check_size, label_font, label_height, write_atomic
from .spec import Limits, MontageSpec, parse_spec
from .tiles import TileError, TileOptions, load_tile

OPTION_KEYS = {
    "montage_max_inputs": "max_inputs",
    "montage_max_output_pixels": "max_output_pixels",
    "montage_max_image_pixels": "max_image_pixels",
}


def limits_from_options(options: dict[str, Any]) -> Limits:
    """Read the operator's limits from ``PluginConfig.options`` (ints or digit strings)."""
    values: dict[str, int] = {}
    for key, field in OPTION_KEYS.items():
        if key not in options:
            continue
        try:
            values[field] = int(options[key])
        except (TypeError, ValueError):
            raise PluginError(f"montage_image: option {key} must be an integer, "
                              f"got {options[key]!r}") from None
        if values[field] < 1:
            raise PluginError(f"montage_image: option {key} must be at least 1")
    cap = 2 * Image.MAX_IMAGE_PIXELS  # Pillow's hard limit stays whatever the option says
    values["max_image_pixels"] = min(values.get("max_image_pixels", cap), cap)
    return Limits(**values)


def _sources(spec: MontageSpec, sandbox: Sandbox) -> list[tuple[str, Path]]:
    """(name as the job gave it, real path) for every input, all inside the sandbox."""
    if spec.input_dir is None:
        return [(raw, sandbox.input_file(raw)) for raw in spec.inputs]
    found = sandbox.glob(sandbox.input_dir(spec.input_dir), spec.glob, spec.max_inputs)
    if not found:
        raise PermanentJobError(
            f"montage_image: input_dir: no files in {spec.input_dir!r} match {spec.glob!r}"
        )
    return found


class MontageImage(Plugin):
    """Builds a contact sheet, like ImageMagick's ``montage``, from a list of images."""

    name = "montage_image"

    def __init__(self, config: PluginConfig | None = None) -> None:
        super().__init__(config)
        self.limits = limits_from_options(self.config.options)

    def setup(self) -> None:
        """Load the label font once, before workers fork (the format plugins are
        imported with ``tiles``)."""
        label_font(12)

    def process(self, data: Any, ctx: JobContext) -> dict[str, Any]:
        """Run one montage job; see docs/montage.md for the schema and the result."""
        spec = parse_spec(data, self.limits)
        sandbox = Sandbox(self.config.allowed_paths)
        output = sandbox.output_file(spec.output)
        sources = _sources(spec, sandbox)
        font = label_font(spec.font_size) if spec.labels else None
        columns, rows = spec.grid(len(sources))
        layout = Layout(columns, rows, spec.tile, spec.spacing, label_height(font))
        check_size(layout, self.limits.max_output_pixels)
        sheet = Sheet(layout, spec.background, font)
        placed, skipped = self._place_all(spec, sources, sheet, ctx)
        image = sheet.finish(len(placed))
        ctx.progress(1.0, f"writing {output.name}")
        size = write_atomic(image, output, spec.format, spec.quality)
        return {
            "output": str(output), "bytes": size, "width": image.width,
            "height": image.height, "format": spec.format, "tiles": len(placed),
            "placed": placed, "skipped": skipped,
        }

    def _place_all(
        self, spec: MontageSpec, sources: list[tuple[str, Path]], sheet: Sheet, ctx: JobContext
    ) -> tuple[list[str], list[dict[str, str]]]:
        """Decode and paste each input in turn; bad ones are skipped, or fail the job if strict."""
        opts = TileOptions(spec.tile, spec.background, spec.max_pixels, spec.upscale)
        placed: list[str] = []
        skipped: list[dict[str, str]] = []
        for done, (name, real) in enumerate(sources, start=1):
            label = PurePath(name).name
            try:
                tile = load_tile(real, opts)
            except TileError as exc:
                if spec.strict:
                    raise PermanentJobError(f"montage_image: {name}: {exc}") from None
                skipped.append({"input": name, "reason": str(exc)})
            else:
                sheet.place(len(placed), tile, label)
                tile.close()
                placed.append(name)
            ctx.progress(done / len(sources) * 0.99, f"{done}/{len(sources)} {label}")
        if not placed:
            first = skipped[0]
            raise PermanentJobError(
                f"montage_image: none of the {len(sources)} inputs could be used; first: "
                f"{first['input']}: {first['reason']}"
            )
        return placed, skipped
