"""The shipped `montage_image` plugin: a contact sheet of many images (see docs/montage.md)."""

from .plugin import MontageImage

__all__ = ["MontageImage"]
