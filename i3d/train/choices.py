"""Names that ``i3d train`` and ``i3d eval accuracy`` offer as choices, in a module that imports no torch.

:mod:`i3d.train.datasets` and :mod:`i3d.train.clips` import them from here
and export them as before; a parser built from this module alone keeps
``--help`` free of torch and numpy.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["DatasetFormat", "DATASET_FORMATS", "OnBroken", "BROKEN_POLICIES"]

# How a labelled video list is laid out (i3d.train.datasets).
DatasetFormat = Literal["charades", "folders", "csv", "kinetics"]
DATASET_FORMATS: tuple[str, ...] = ("charades", "folders", "csv", "kinetics")
# What a video that cannot be read does to a run (i3d.train.clips.index_videos).
OnBroken = Literal["error", "skip"]
BROKEN_POLICIES: tuple[str, ...] = ("error", "skip")
