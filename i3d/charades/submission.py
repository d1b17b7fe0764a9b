"""Submission files from model outputs, in the format the official scripts read.

Classification: one line per video, ``id s1 ... s157``. Localization: 25
lines per video, ``id j s1 ... s157`` for ``j = 1..25``, frame ``j`` being
the time ``(j - 1) / 25 * length``. Fields are separated by single spaces and
scores written with the shortest text that reads back to the same value.

The network gives per-frame logits ``(C, T')`` at a coarser rate than the
video (I3D halves time twice and pools, so ``T'`` is about ``T / 8``);
:func:`video_scores` reduces them to one score per class and
:func:`localization_scores` brings them back to the video's frames.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Literal

import numpy as np
import torch
from numpy.typing import ArrayLike

from i3d.atomic import open_atomic
from i3d.charades.annotations import NUM_CLASSES, validate_video_id
from i3d.charades.metrics import LOCALIZATION_FRAMES

Reduce = Literal["max", "mean"]

Scores = ArrayLike | torch.Tensor


def _as_numpy(x: Scores, keep_float32: bool = False) -> np.ndarray:
    """float64; float32 for float32 and narrower input when ``keep_float32``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy has no bfloat16.
        x = (x.float() if x.dtype in (torch.float16, torch.bfloat16) else x).numpy()
    x = np.asarray(x)
    if keep_float32 and x.dtype in (np.float16, np.float32):
        return x.astype(np.float32)
    return x.astype(np.float64)


def video_scores(frame_logits: Scores, reduce: Reduce = "max") -> np.ndarray:
    """One score per class from per-frame outputs.

    Args:
        frame_logits: ``(C, T')`` per-frame logits (or probabilities).
        reduce: ``"max"`` or ``"mean"`` over time.

    Returns:
        ``(C,)`` float64.
    """
    x = _as_numpy(frame_logits)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"expected per-frame outputs (C, T') with T' >= 1, got shape {x.shape}")
    if reduce == "max":
        return x.max(axis=1)
    if reduce == "mean":
        return x.mean(axis=1)
    raise ValueError(f"reduce must be 'max' or 'mean', got {reduce!r}")


def upsample_frames(frame_outputs: Scores, num_frames: int) -> np.ndarray:
    """Linear interpolation over time of ``(C, T')`` outputs to ``(C, num_frames)``.

    Output ``k`` of ``T'`` is taken to cover the ``k``-th of ``T'`` equal
    spans of the video and to sit at the span's centre; a video frame is
    interpolated between the two nearest centres and takes the end value
    beyond the first and last (``F.interpolate(mode="linear",
    align_corners=False)``).
    """
    x = _as_numpy(frame_outputs)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"expected per-frame outputs (C, T') with T' >= 1, got shape {x.shape}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    steps = x.shape[1]
    # Centres of the T' spans and of the num_frames frames, in units of the video's length.
    centres = (np.arange(steps) + 0.5) / steps
    frames = (np.arange(num_frames) + 0.5) / num_frames
    return np.stack([np.interp(frames, centres, row) for row in x])


def localization_scores(frame_outputs: Scores, num_frames: int, samples: int = LOCALIZATION_FRAMES) -> np.ndarray:
    """Scores of the official localization frames.

    The ``(C, T')`` outputs are upsampled to the video's ``num_frames``
    frames (:func:`upsample_frames`); localization frame ``j`` (1-based) at
    time ``(j - 1) / samples * length`` is video frame
    ``floor((j - 1) * num_frames / samples)`` (0-based).

    Returns:
        ``(samples, C)`` float64, row ``j - 1`` for frame ``j``.
    """
    upsampled = upsample_frames(frame_outputs, num_frames)
    index = (np.arange(samples) * num_frames) // samples
    return upsampled[:, index].T


def _format_scores(scores: np.ndarray) -> str:
    # str() of a numpy scalar is the shortest text that reads back to the same
    # value in its own precision; for float32 scores that text, read as
    # float64, keeps every order and every tie, so the ranking is unchanged.
    return " ".join(str(s) for s in scores)


def _items(scores: Mapping[str, Scores] | Iterable[tuple[str, Scores]]) -> Iterable[tuple[str, Scores]]:
    return scores.items() if isinstance(scores, Mapping) else scores


def write_classification(
    path: str | os.PathLike[str],
    scores: Mapping[str, Scores] | Iterable[tuple[str, Scores]],
    num_classes: int | None = NUM_CLASSES,
) -> None:
    """Write a classification submission, atomically (temporary file, then ``os.replace``).

    Args:
        path: the output file.
        scores: ``{video id: (C,) scores}`` or ``(id, scores)`` pairs, e.g.
            from :func:`video_scores`.
        num_classes: every row must have this many scores (``None``: any).

    Raises:
        InputError: for an id that is not a safe name.
        ValueError: for a row of the wrong shape or holding NaN; the file is
            left as it was.
    """
    with open_atomic(path) as f:
        for video_id, row in _items(scores):
            validate_video_id(video_id)
            f.write(f"{video_id} {_format_scores(_check_row(row, num_classes, video_id))}\n")


def write_localization(
    path: str | os.PathLike[str],
    scores: Mapping[str, Scores] | Iterable[tuple[str, Scores]],
    num_classes: int | None = NUM_CLASSES,
    samples: int = LOCALIZATION_FRAMES,
) -> None:
    """Write a localization submission, atomically: lines ``id j s1 ... sC``, ``j = 1..samples``.

    Args:
        path: the output file.
        scores: ``{video id: (samples, C) scores}`` or pairs, e.g. from
            :func:`localization_scores`.
        num_classes: every row must have this many scores (``None``: any).
    """
    with open_atomic(path) as f:
        for video_id, frames in _items(scores):
            validate_video_id(video_id)
            frames = _as_numpy(frames, keep_float32=True)
            if frames.ndim != 2 or frames.shape[0] != samples:
                raise ValueError(f"scores of {video_id!r} have shape {frames.shape}, expected ({samples}, C)")
            for j, row in enumerate(frames, start=1):
                f.write(f"{video_id} {j} {_format_scores(_check_row(row, num_classes, video_id))}\n")


def _check_row(row: Scores, num_classes: int | None, video_id: str) -> np.ndarray:
    row = _as_numpy(row, keep_float32=True)
    if row.ndim != 1 or (num_classes is not None and row.shape[0] != num_classes):
        expected = f"({num_classes},)" if num_classes is not None else "(C,)"
        raise ValueError(f"scores of {video_id!r} have shape {row.shape}, expected {expected}")
    if np.isnan(row).any():
        # The file would read back as a NaN score, which the evaluation refuses.
        raise ValueError(f"scores of {video_id!r} hold NaN (class {int(np.flatnonzero(np.isnan(row))[0])})")
    return row
