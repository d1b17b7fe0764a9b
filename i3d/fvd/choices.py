"""The choices and defaults of ``i3d fvd``, in a module that imports no torch or NumPy.

:mod:`i3d.fvd.resize`, :mod:`i3d.fvd.distance` and :mod:`i3d.fvd.embedding`
import them from here and export them as before; the parser needs only this
module and :mod:`i3d.fvd.protocols`.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["ResizeMethod", "RESIZE_METHODS", "MAX_BLOCK_SIZE", "DEFAULT_BATCH"]

ResizeMethod = Literal["reference", "torch"]
RESIZE_METHODS: tuple[str, ...] = ("reference", "torch")

# tfgan's default block size for the kernel distance.
MAX_BLOCK_SIZE = 1024

# Clips per network call. The reference runs 16; 8 bounds CPU memory to
# ~1 GB for 16-frame clips and changes no number (each clip runs alone).
DEFAULT_BATCH = 8
