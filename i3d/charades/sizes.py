"""Charades' fixed sizes, in a module that imports neither numpy nor torch.

:mod:`i3d.charades.annotations` and :mod:`i3d.charades.datasets` export them
as before; the training recipe (:mod:`i3d.train.recipe`) reads them from
here, so that ``i3d train --help`` imports no torch.
"""

from __future__ import annotations

__all__ = ["NUM_CLASSES", "CLIP_FRAMES"]

NUM_CLASSES = 157  # action classes c000 .. c156
CLIP_FRAMES = 64  # the old PyTorch port fine-tunes on clips of 64 frames
