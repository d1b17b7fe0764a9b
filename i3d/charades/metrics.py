"""The official Charades evaluation: classification mAP and per-frame localization mAP.

This computes what ``Charades_v1_classify.m`` and ``Charades_v1_localize.m``
of the Charades devkit compute:

* Per class, uninterpolated average precision: rows are sorted by descending
  score with a stable sort (ties keep ground-truth file order, as MATLAB's
  ``sort`` does; NaN scores go last), the precision at the rank of each
  positive is summed and divided by the number of positives.
* mAP is the mean of the per-class APs; wAP weights each class's AP by its
  number of positives, divided by the total number of positives.
* A row the submission does not score gets ``-inf``.

Classification has one row per ground-truth video. As in the official script,
a video without any action contributes no positives and its score is ``-inf``
whatever the submission says: that is the same as leaving it out, except
that it ranks ahead of any positive that is itself scored ``-inf`` (a video
missing from the submission) and comes later in the file.

Localization has 25 rows per ground-truth video, for the time points
``(j - 1) / 25 * length``, ``j = 1..25``; videos without actions count (all
their frames are negatives). A submission whose smallest frame number is 0
is taken as 0-based and shifted by one, as the official script does.

Where the official scripts return NaN (a class without positives makes the
mean NaN), this module leaves that class out of the mean and reports it:
:attr:`EvalResult.classes` says how many classes were averaged. On the
official test set every class has positives and the numbers are the same.

Problems the official scripts only print about (missing videos, ids not in
the ground truth, 0-based frames, repeated lines) are reported with
:func:`warnings.warn` as :class:`SubmissionWarning`; the evaluation goes on.
A malformed line raises :class:`i3d.errors.InputError` naming the file and
the line, and so does a NaN score, which has no rank: the official scripts
would sort it somewhere without a word.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from i3d.charades.annotations import (
    NUM_CLASSES,
    Video,
    class_labels,
    localization_labels,
    read_csv,
)
from i3d.charades.submission import (
    LOCALIZATION_FRAMES,
    _warn_ids,
    read_classification_submission,
    read_localization_submission,
)


@dataclass(frozen=True)
class EvalResult:
    """The outcome of an evaluation.

    Attributes:
        map: mean of the per-class APs over the classes with positives
            (NaN when no class has any).
        wap: per-class APs weighted by their number of positives.
        classes: how many classes were averaged.
        per_class: AP of each class in index order; ``None`` for a class
            without positives, which is left out of both means.
        positives: number of positive rows (videos or frames) of each class.
        samples: number of rows ranked per class (videos, or 25 per video).
    """

    map: float
    wap: float
    classes: int
    per_class: tuple[float | None, ...]
    positives: tuple[int, ...]
    samples: int

    @property
    def excluded(self) -> tuple[int, ...]:
        """Indices of the classes left out for lack of positives."""
        return tuple(i for i, ap in enumerate(self.per_class) if ap is None)

    def to_json(self) -> dict[str, object]:
        """``{"map", "wap", "classes", "per_class"}``, with ``None`` for NaN so the result is valid JSON."""
        return {
            "map": _json_float(self.map),
            "wap": _json_float(self.wap),
            "classes": self.classes,
            "per_class": list(self.per_class),
        }


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else x


def average_precision(scores: ArrayLike, labels: ArrayLike) -> float | None:
    """Uninterpolated AP of one class, as the official ``THUMOSeventclspr``.

    Args:
        scores: ``(N,)`` float scores; ``-inf`` ranks last, NaN after it.
        labels: ``(N,)`` bool, True for positives.

    Returns:
        The mean, over the positives, of the precision at each positive's rank
        in the stable descending order of ``scores``; ``None`` without positives.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be the same 1-D shape")
    positives = int(labels.sum())
    if positives == 0:
        return None
    # Ascending stable sort of the negated scores, exactly MATLAB's sort(-conf):
    # ties stay in row order and NaN goes last.
    hits = labels[np.argsort(-scores, kind="stable")]
    ranks = np.flatnonzero(hits) + 1
    precision = np.arange(1, positives + 1, dtype=np.float64) / ranks
    # Left-to-right summation, as the official loop adds them.
    return float(np.cumsum(precision)[-1] / positives)


def mean_average_precision(scores: ArrayLike, labels: ArrayLike) -> EvalResult:
    """Per-class AP, mAP and wAP of a score matrix.

    Args:
        scores: ``(N, C)`` float, row order breaking ties.
        labels: ``(N, C)`` bool.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must be the same 2-D shape")
    per_class = tuple(average_precision(scores[:, c], labels[:, c]) for c in range(scores.shape[1]))
    positives = tuple(int(n) for n in labels.sum(axis=0))
    averaged = [ap for ap in per_class if ap is not None]
    total = sum(positives)
    if averaged:
        mean_ap = math.fsum(averaged) / len(averaged)
        weighted_ap = math.fsum(ap * n for ap, n in zip(per_class, positives) if ap is not None) / total
    else:
        mean_ap = weighted_ap = math.nan
    return EvalResult(mean_ap, weighted_ap, len(averaged), per_class, positives, scores.shape[0])


def _score_vector(value: ArrayLike, num_classes: int, key: object) -> np.ndarray:
    vector = np.asarray(value, dtype=np.float64)
    if vector.shape != (num_classes,):
        raise ValueError(f"scores of {key!r} have shape {vector.shape}, expected ({num_classes},)")
    if np.isnan(vector).any():
        raise ValueError(f"scores of {key!r} hold NaN (class {int(np.flatnonzero(np.isnan(vector))[0])})")
    return vector


def _warn_without_positives(result: EvalResult) -> EvalResult:
    if result.excluded:
        codes = [f"c{c:03d}" for c in result.excluded]
        _warn_ids(
            "class(es) without positives in the ground truth",
            codes,
            "left out of mAP and wAP (the official script's mean is NaN then)",
        )
    return result


def evaluate_classification(
    videos: Sequence[Video],
    predictions: Mapping[str, ArrayLike],
    num_classes: int = NUM_CLASSES,
) -> EvalResult:
    """Video-level classification mAP, as ``Charades_v1_classify.m``.

    Args:
        videos: the ground truth, in file order.
        predictions: ``{video id: (num_classes,) scores}``.

    Warns:
        SubmissionWarning: for videos with actions that have no scores (they
            score ``-inf``), for ids not in the ground truth (ignored), and
            for classes without positives (left out of the means).
    """
    labels = class_labels(videos, num_classes)
    scores = np.full((len(videos), num_classes), -np.inf)
    missing = []
    for row, video in enumerate(videos):
        if not video.actions:
            continue
        if video.id in predictions:
            scores[row] = _score_vector(predictions[video.id], num_classes, video.id)
        else:
            missing.append(video.id)
    if missing:
        _warn_ids("videos missing from the submission", missing, "they score -inf")
    known = {video.id for video in videos}
    extra = [key for key in predictions if key not in known]
    if extra:
        _warn_ids("ids not in the ground truth", extra, "ignored")
    return _warn_without_positives(mean_average_precision(scores, labels))


def evaluate_localization(
    videos: Sequence[Video],
    predictions: Mapping[tuple[str, int], ArrayLike],
    num_classes: int = NUM_CLASSES,
    frames: int = LOCALIZATION_FRAMES,
) -> EvalResult:
    """Per-frame localization mAP, as ``Charades_v1_localize.m``.

    Args:
        videos: the ground truth, in file order; every video counts.
        predictions: ``{(video id, j): (num_classes,) scores}`` with frame
            numbers ``j`` in ``1..frames`` (frame ``j`` is at time
            ``(j - 1) / frames * length``).

    Warns:
        SubmissionWarning: for frames without scores (they score ``-inf``),
            for keys not among the ground-truth frames (ignored), and for
            classes without positives (left out of the means).
    """
    labels = np.zeros((len(videos) * frames, num_classes), dtype=bool)
    scores = np.full((len(videos) * frames, num_classes), -np.inf)
    missing = []
    for v, video in enumerate(videos):
        labels[v * frames : (v + 1) * frames] = localization_labels(video, frames, num_classes)
        for j in range(1, frames + 1):
            key = (video.id, j)
            if key in predictions:
                scores[v * frames + j - 1] = _score_vector(predictions[key], num_classes, key)
            else:
                missing.append(f"{video.id} frame {j}")
    if missing:
        _warn_ids("frames missing from the submission", missing, "they score -inf")
    known = {video.id for video in videos}
    extra = [f"{vid} frame {j}" for vid, j in predictions if vid not in known or not 1 <= j <= frames]
    if extra:
        _warn_ids("frames not in the ground truth", extra, "ignored")
    return _warn_without_positives(mean_average_precision(scores, labels))


def evaluate_classification_file(
    gt: str | os.PathLike[str], pred: str | os.PathLike[str], num_classes: int = NUM_CLASSES
) -> EvalResult:
    """``Charades_v1_classify(pred, gt)``: read the ground-truth CSV and the submission, evaluate."""
    return evaluate_classification(
        read_csv(gt, num_classes=num_classes), read_classification_submission(pred, num_classes), num_classes
    )


def evaluate_localization_file(
    gt: str | os.PathLike[str], pred: str | os.PathLike[str], num_classes: int = NUM_CLASSES
) -> EvalResult:
    """``Charades_v1_localize(pred, gt)``: read the ground-truth CSV and the submission, evaluate."""
    return evaluate_localization(
        read_csv(gt, num_classes=num_classes), read_localization_submission(pred, num_classes), num_classes
    )
