"""Files shipped with the package, under ``i3d/weights/data/`` (label lists, DeepMind's checkpoint indexes)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["data_file"]

_DATA = Path(__file__).with_name("data")


def data_file(name: str) -> Path:
    """A file shipped with the package (``i3d/weights/data/NAME``)."""
    return _DATA / name
