"""Frame-rate conversion by timestamps: the rule of FFmpeg's ``fps`` filter.

The rule (``fps=R``, FFmpeg's defaults ``round=near`` and ``eof_action=round``),
with every time measured from the first frame of the source, ``t0``:

* a source frame shown at time ``t`` gets the output *slot*
  ``q = round((t - t0) * R)``, rounding halves away from zero;
* the source ends at ``t_end``, the last frame's timestamp plus its duration,
  whose slot is ``E = round((t_end - t0) * R)``;
* output frame ``n`` (``0 <= n < E``, shown at ``t0 + n / R``) is the last
  source frame, in decoding order, whose slot is ``<= n``: a frame whose slot
  a later frame also reaches is dropped, and a frame is repeated until the
  next frame's slot.

So output frame ``n`` is the source frame on screen at time ``t0 + n / R``,
give or take half an output interval, and there are ``E`` output frames:
a 10 s clip at 30 fps (300 frames) gives 250 frames at 25 fps.

Two deliberate differences from ``ffmpeg -vf fps=R``: times are measured from
the first *video* frame (the ffmpeg command line measures from the container's
start, which is the same unless another stream starts earlier), and a source
with at least one frame always yields at least :data:`MIN_FRAMES` frame, even
when it lasts less than half an output interval.

All arithmetic is exact (:class:`fractions.Fraction`), so the frame count is
known from the container's timestamps before anything is decoded and does not
depend on floating-point rounding.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Generic, TypeVar

# Every readable source yields at least this many frames.
MIN_FRAMES = 1
# Highest rate a source may be resampled to (or be declared to have): high-speed
# cameras record up to about 1000 frames per second; more is a typo (--fps 1e9
# would plan 10^9 frames per second of video).
MAX_FPS = 1000
# Rates typed as floats (29.97, 23.976) become fractions with a denominator up
# to this, which keeps 30000/1001 exact while absorbing float noise.
MAX_RATE_DENOMINATOR = 1001 * 1000

T = TypeVar("T")


def as_rate(rate: float | Fraction) -> Fraction:
    """A frame rate as an exact fraction in ``(0, MAX_FPS]`` (frames per second).

    Raises:
        ValueError: a rate out of that range, or not finite.
    """
    if not isinstance(rate, Fraction) and not math.isfinite(rate):
        raise ValueError(f"frame rate must be a finite number, got {rate}")
    exact = rate if isinstance(rate, Fraction) else Fraction(rate).limit_denominator(MAX_RATE_DENOMINATOR)
    if not 0 < exact <= MAX_FPS:
        raise ValueError(f"frame rate must be > 0 and at most {MAX_FPS} frames per second, got {float(rate):g}")
    return exact


def round_half_away(x: Fraction) -> int:
    """Round to the nearest integer, halves away from zero (FFmpeg's ``AV_ROUND_NEAR_INF``)."""
    magnitude = math.floor(abs(x) + Fraction(1, 2))
    return magnitude if x >= 0 else -magnitude


def slot(time: Fraction, start: Fraction, rate: Fraction) -> int:
    """The output slot of a frame shown at ``time``: ``round((time - start) * rate)``."""
    return round_half_away((time - start) * rate)


def output_frame_count(start: Fraction, end: Fraction, rate: Fraction) -> int:
    """Number of frames the rule gives for a source spanning ``[start, end)`` seconds."""
    return max(MIN_FRAMES, slot(end, start, rate))


class FpsResampler(Generic[T]):
    """Streaming frame-rate conversion: push source frames, get output frames.

    Holds at most one source frame, so memory does not depend on the video's
    length. The number of output frames is fixed up front; frames pushed after
    the last slot is filled are ignored, and :meth:`finish` repeats the last
    frame into slots the source did not reach (a stream that decodes to fewer
    frames than its timestamps promised), so the count is always exact.

    Args:
        rate: output frame rate.
        start: time of the source's first frame (``t0``), in seconds.
        num_frames: number of output frames, from :func:`output_frame_count`.
    """

    def __init__(self, rate: Fraction, start: Fraction, num_frames: int) -> None:
        self.rate = rate
        self.start = start
        self.num_frames = num_frames
        self.next_slot = 0
        self._held: T | None = None
        self._has_held = False

    @property
    def done(self) -> bool:
        """Whether every output slot has been filled."""
        return self.next_slot >= self.num_frames

    def push(self, frame: T, time: Fraction) -> list[T]:
        """Add the next source frame (decoding order); return the output frames it completes."""
        target = min(slot(time, self.start, self.rate), self.num_frames)
        out: list[T] = []
        if self.next_slot < target:
            # Slots before the first frame's (its predecessors failed to decode)
            # show that first frame, as no earlier picture exists.
            fill = self._held if self._has_held else frame
            out = [fill] * (target - self.next_slot)  # type: ignore[list-item]
            self.next_slot = target
        self._held = frame
        self._has_held = True
        return out

    def finish(self) -> list[T]:
        """Output frames for the slots left after the last source frame."""
        if not self._has_held:
            return []
        out = [self._held] * (self.num_frames - self.next_slot)  # type: ignore[list-item]
        self.next_slot = self.num_frames
        return out  # type: ignore[return-value]
