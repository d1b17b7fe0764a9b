"""Windows of frames: which frames each output row covers, and gathering
them from a stream of chunks with bounded memory.

A window is an array of frame indices, ascending (repeats allowed). Three
ways to lay them over a video of ``frames`` frames, windows of ``length``:

* :func:`stepped_windows`: one every ``step`` frames from frame 0, as many
  as fit; a video shorter than a window gives one window of all its frames.
* :func:`spaced_windows`: ``count`` windows evenly spaced, the first
  starting at frame 0 and the last ending at the last frame (mmaction2's
  ``SampleFrames(num_clips)`` in test mode, video_features'
  ``extraction_total``).
* :func:`centred_windows`: one per frame, frame ``i``'s starting at
  ``i - length // 2``, indices clamped to the video (edge frames repeated).

:func:`gather_windows` cuts them out of consecutive chunks, keeping only the
frames that a later window can still need.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch

__all__ = ["spaced_starts", "stepped_windows", "spaced_windows", "centred_windows", "gather_windows"]

# Time is this dimension of a chunk, (C, t, H, W) and (views, C, t, H, W) alike.
TIME_DIM = -3


def spaced_starts(frames: int, length: int, count: int) -> np.ndarray:
    """Starts of ``count`` windows of ``length`` frames evenly spaced over ``frames``.

    Start ``k`` is ``k * (frames - length) / (count - 1)`` rounded to the
    nearest integer, so the first starts at 0 and the last at ``frames -
    length``; one window is centred (start ``(frames - length) // 2``). A
    video shorter than a window has every start at 0.

    Rounded as mmaction2 (1.x) rounds its test clips' offsets
    (``SampleFrames._get_test_clips``): ``np.round`` of the float64 product
    ``k * (span / (count - 1))``, halves to even, except where that product
    lands an ulp off the half (``11 * (25 / 22)`` is ``12.500000000000002``:
    13). Those are the clips mmaction2 tests on, and the ones training's
    validation takes (:func:`i3d.train.clips.clip_starts`, whose
    ``np.linspace`` computes the same products). Exact halves are common:
    every odd span with an odd ``count``.
    """
    if count < 1 or length < 1:
        raise ValueError(f"count and length must be >= 1, got {count} and {length}")
    span = max(frames - length, 0)
    if count == 1:
        return np.array([span // 2], dtype=np.int64)
    return np.round(np.arange(count) * (span / (count - 1))).astype(np.int64)


def stepped_windows(frames: int, length: int, step: int) -> Iterator[np.ndarray]:
    """Windows ``[s, s + length)`` for ``s = 0, step, 2 step, ...`` that fit in
    the video; one window of every frame if the video is shorter than ``length``."""
    if frames < length:
        yield np.arange(frames)
        return
    for start in range(0, frames - length + 1, step):
        yield np.arange(start, start + length)


def spaced_windows(frames: int, length: int, count: int) -> Iterator[np.ndarray]:
    """:func:`spaced_starts` windows; each is the whole video if it is shorter than ``length``."""
    for start in spaced_starts(frames, length, count):
        yield np.arange(start, min(start + length, frames))


def centred_windows(frames: int, length: int) -> Iterator[np.ndarray]:
    """Frame ``i``'s window, ``i - length // 2 .. i - length // 2 + length - 1``
    clamped to ``[0, frames - 1]``, for every frame ``i``."""
    offsets = np.arange(length) - length // 2
    for i in range(frames):
        yield np.clip(i + offsets, 0, frames - 1)


def gather_windows(
    chunks: Iterable[torch.Tensor], windows: Iterable[np.ndarray], frames: int
) -> Iterator[torch.Tensor]:
    """Each window's frames from consecutive ``chunks`` (time at dimension
    -3: ``(C, t, H, W)`` or ``(views, C, t, H, W)``) of a ``frames``-frame input.

    Windows must come in order of their first and of their last frame (as all
    of this module's do); frames before the current window's first are
    dropped, so memory holds one window's span and one chunk.

    Yields:
        One tensor per window, ``(..., len(window), H, W)``, in order.

    Raises:
        ValueError: the chunks do not add up to ``frames``.
    """
    buffer: torch.Tensor | None = None  # frames [start, start + buffer.shape[TIME_DIM])
    start = 0
    source = iter(chunks)
    for window in windows:
        first, last = int(window[0]), int(window[-1])
        while buffer is None or last >= start + buffer.shape[TIME_DIM]:
            chunk = next(source, None)
            if chunk is None:
                held = 0 if buffer is None else buffer.shape[TIME_DIM]
                raise ValueError(f"got {start + held} frames, expected {frames}")
            buffer = chunk if buffer is None else torch.cat([buffer, chunk], dim=TIME_DIM)
        drop = first - start
        if drop > 0:
            buffer, start = buffer.narrow(TIME_DIM, drop, buffer.shape[TIME_DIM] - drop), first
        yield buffer.index_select(TIME_DIM, torch.as_tensor(window - start))
    received = start + (0 if buffer is None else buffer.shape[TIME_DIM]) + sum(c.shape[TIME_DIM] for c in source)
    if received != frames:
        raise ValueError(f"got {received} frames, expected {frames}")
