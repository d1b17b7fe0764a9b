"""The file formats ``i3d export`` writes; no torch here, so that ``--help`` stays quick."""

from __future__ import annotations

__all__ = ["FORMATS"]

FORMATS = ("onnx", "openvino", "torchscript")
