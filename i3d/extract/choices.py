"""The choices and defaults of ``i3d extract``, in a module that imports no torch or NumPy.

:mod:`i3d.extract.extractor` and :mod:`i3d.extract.writers` import them from
here and export them as before; the parser needs only this module.
"""

from __future__ import annotations

from i3d.choices import ENDPOINTS, OUTPUTS

__all__ = ["MODES", "LAYERS", "STREAMS", "COMBINE", "CONCAT", "DEFAULT_CLIP_LEN", "DEFAULT_BATCH", "FORMATS", "LAYOUTS"]

MODES: tuple[str, ...] = ("full", "clips", "frames")
LAYERS: tuple[str, ...] = OUTPUTS + tuple(e for e in ENDPOINTS if e.startswith(("Mixed", "Conv", "MaxPool")))
STREAMS = ("rgb", "flow")
# separate: one output per stream; concat: one output, both streams' rows side by side.
COMBINE: tuple[str, ...] = ("separate", "concat")
CONCAT = "rgb+flow"  # the stream name of a combined output: OUT/NAME.rgb+flow.npy

# The common "stack" setting of other extractors: 64-frame windows, no overlap.
DEFAULT_CLIP_LEN = 64
DEFAULT_BATCH = 4  # clips (window x crop) per network call in clips and frames modes

FORMATS: tuple[str, ...] = ("npy", "npz", "safetensors", "h5")
# i3d: OUT/<name>.<stream>.<format>; port: OUT/<video id>.npy of (T', 1, 1, 1024), as the
# PyTorch port's extract_features.py saved pooled features.
LAYOUTS: tuple[str, ...] = ("i3d", "port")
