"""Clip-classification metrics: top-1 / top-5 / mean class accuracy, confusion, and mAP.

Single-label data is scored by accuracy: top-k counts a video as right when
its class is among the ``k`` highest scores (ties broken by class order);
mean class accuracy averages the per-class top-1 accuracy over the classes
that have videos. Multi-label data is scored by mean average precision, with
:func:`i3d.charades.metrics.mean_average_precision` (the Charades devkit's
AP, classes without positives left out of the mean).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from i3d.charades.metrics import mean_average_precision

__all__ = ["Accuracy", "accuracy", "multilabel_map"]

TOP_K = 5


@dataclass(frozen=True)
class Accuracy:
    """Attributes: fractions in ``[0, 1]`` (NaN without videos), ``confusion[true, predicted]`` counts."""

    top1: float
    top5: float
    mean_class_acc: float
    videos: int
    confusion: np.ndarray

    def to_json(self) -> dict[str, float | None]:
        return {k: _finite_or_none(getattr(self, k)) for k in ("top1", "top5", "mean_class_acc")}


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def accuracy(scores: ArrayLike, targets: ArrayLike) -> Accuracy:
    """Accuracy of ``scores`` ``(N, K)`` against class indices ``targets`` ``(N,)``."""
    scores = np.asarray(scores, dtype=np.float64)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.ndim != 2 or targets.shape != (scores.shape[0],):
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must be (N, K) and (N,)")
    num_videos, num_classes = scores.shape
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    if num_videos == 0:
        return Accuracy(math.nan, math.nan, math.nan, 0, confusion)
    # Stable descending order: ties go to the lower class index.
    order = np.argsort(-scores, axis=1, kind="stable")
    predicted = order[:, 0]
    np.add.at(confusion, (targets, predicted), 1)
    top1 = float(np.mean(predicted == targets))
    top5 = float(np.mean((order[:, :TOP_K] == targets[:, None]).any(axis=1)))
    per_class = confusion.sum(axis=1)
    present = per_class > 0
    mean_class = float(np.mean(np.diag(confusion)[present] / per_class[present]))
    return Accuracy(top1, top5, mean_class, num_videos, confusion)


def multilabel_map(scores: ArrayLike, targets: ArrayLike) -> dict[str, float | int | None]:
    """``{"map", "wap", "classes"}`` of ``scores`` ``(N, K)`` against multi-hot ``targets`` ``(N, K)``."""
    result = mean_average_precision(scores, np.asarray(targets) > 0)
    return {"map": _finite_or_none(result.map), "wap": _finite_or_none(result.wap), "classes": result.classes}
