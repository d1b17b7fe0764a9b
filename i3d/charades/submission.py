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
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Literal, TypeAlias

import numpy as np

from i3d.atomic import open_atomic
from i3d.charades.annotations import NUM_CLASSES, read_text, validate_video_id
from i3d.errors import InputError, shorten

if TYPE_CHECKING:
    import torch
    from numpy.typing import ArrayLike

Reduce = Literal["max", "mean"]

# torch is imported for type checking only: reading and writing submissions needs no torch.
Scores: TypeAlias = "ArrayLike | torch.Tensor"

# Charades_v1_localize.m scores 25 equally spaced frames of every video.
LOCALIZATION_FRAMES = 25

_FRAME_NUMBER = re.compile(r"[+-]?\d+")
# How many ids a warning lists before it says "...".
_IDS_SHOWN = 5


class SubmissionWarning(UserWarning):
    """A submission the official scripts would accept with a printed warning."""


def _warn_ids(what: str, ids: Sequence[object], consequence: str) -> None:
    shown = ", ".join(str(i) for i in ids[:_IDS_SHOWN]) + (", ..." if len(ids) > _IDS_SHOWN else "")
    warnings.warn(f"{len(ids)} {what} ({shown}); {consequence}", SubmissionWarning, stacklevel=3)


def _as_numpy(x: Scores, keep_float32: bool = False) -> np.ndarray:
    """float64; float32 for float32 and narrower input when ``keep_float32``."""
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported: reading needs no torch
    if torch is not None and isinstance(x, torch.Tensor):
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


# ---- reading, as the official scripts read -------------------------------------------


def _parse_scores(tokens: Sequence[str], where: str) -> np.ndarray:
    values = np.empty(len(tokens))
    for i, token in enumerate(tokens):
        # Python's float() also takes "1_0" and non-ASCII digits; MATLAB's str2double does not.
        try:
            if "_" in token or not token.isascii():
                raise ValueError
            values[i] = float(token)
        except ValueError:
            raise InputError(where, f"score {i + 1} is {shorten(repr(token))}, not a number") from None
        # NaN has no rank: the official scripts would sort it arbitrarily, and
        # a NaN in a submission is a model or export bug, never a real score.
        if np.isnan(values[i]):
            raise InputError(where, f"score {i + 1} is NaN")
    return values


def read_classification_submission(
    path: str | os.PathLike[str], num_classes: int = NUM_CLASSES
) -> dict[str, np.ndarray]:
    """Read a classification submission: lines ``id s1 ... s157``, tabs or spaces.

    Returns:
        ``{video id: (num_classes,) float64}``; a repeated id keeps its last
        line, as the official ``containers.Map`` does (with a warning).

    Raises:
        InputError: ``"<path>:<line>: <cause>"`` for a bad id, a wrong number
            of scores or a score that is not a number or is NaN.
    """
    name = os.fspath(path)
    predictions: dict[str, np.ndarray] = {}
    repeated = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{name}:{number}"
        video_id = validate_video_id(tokens[0], name, number)
        if len(tokens) - 1 != num_classes:
            raise InputError(where, f"video {video_id}: {len(tokens) - 1} scores, expected {num_classes}")
        if video_id in predictions:
            repeated.append(video_id)
        predictions[video_id] = _parse_scores(tokens[1:], where)
    if repeated:
        _warn_ids(f"ids repeated in {name}", repeated, "the last line of each counts")
    return predictions


def read_localization_submission(
    path: str | os.PathLike[str], num_classes: int = NUM_CLASSES
) -> dict[tuple[str, int], np.ndarray]:
    """Read a localization submission: lines ``id j s1 ... s157``, ``j`` in ``1..25``.

    When the smallest frame number in the file is 0 the file is taken as
    0-based and every frame number is shifted by one, with a warning, as the
    official script does.

    Returns:
        ``{(video id, j): (num_classes,) float64}`` with 1-based ``j``; a
        repeated key keeps its last line (with a warning).

    Raises:
        InputError: ``"<path>:<line>: <cause>"`` for a bad id or frame number,
            a wrong number of scores or a score that is not a number or is NaN.
    """
    name = os.fspath(path)
    rows: list[tuple[str, int, np.ndarray]] = []
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{name}:{number}"
        video_id = validate_video_id(tokens[0], name, number)
        if len(tokens) < 2 or _FRAME_NUMBER.fullmatch(tokens[1]) is None:
            frame_token = tokens[1] if len(tokens) > 1 else ""
            raise InputError(where, f"video {video_id}: frame number {shorten(repr(frame_token))} is not an integer")
        if len(tokens) - 2 != num_classes:
            raise InputError(where, f"video {video_id}: {len(tokens) - 2} scores, expected {num_classes}")
        rows.append((video_id, int(tokens[1]), _parse_scores(tokens[2:], where)))
    shift = 0
    if rows and min(frame for _, frame, _ in rows) == 0:
        warnings.warn(
            f"{name}: frame numbers start at 0, they should start at 1; adding 1 to all of them",
            SubmissionWarning,
            stacklevel=2,
        )
        shift = 1
    predictions: dict[tuple[str, int], np.ndarray] = {}
    repeated = []
    for video_id, frame, scores in rows:
        key = (video_id, frame + shift)
        if key in predictions:
            repeated.append(f"{video_id} frame {key[1]}")
        predictions[key] = scores
    if repeated:
        _warn_ids(f"frames repeated in {name}", repeated, "the last line of each counts")
    return predictions
