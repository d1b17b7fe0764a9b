"""Small synthetic videos, encoded on the fly with PyAV, and frame folders.

Frame ``i`` of :func:`indexed_frames` is dark grey with cell ``i`` of an
8 x 8 grid white, so that the source frame behind a delivered frame can be
read back (:func:`frame_index`) even through lossy codecs, B-frames and a
palette.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from i3d.video.flow import flow_frame_names, flow_to_jpeg_values

GRID = 8
BACKGROUND, MARK = 40, 255
# Millisecond timestamps for variable-rate streams.
VFR_TIME_BASE = Fraction(1, 1000)


def indexed_frames(count: int, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """``count`` (at most 64) RGB frames; frame ``i`` has grid cell ``i`` white."""
    assert count <= GRID * GRID
    cell_h, cell_w = height // GRID, width // GRID
    frames = []
    for i in range(count):
        frame = np.full((height, width, 3), BACKGROUND, np.uint8)
        row, col = divmod(i, GRID)
        frame[row * cell_h : (row + 1) * cell_h, col * cell_w : (col + 1) * cell_w] = MARK
        frames.append(frame)
    return frames


def frame_index(frame: np.ndarray) -> int:
    """The ``i`` of a (decoded, possibly lossy, possibly resized) :func:`indexed_frames` frame."""
    height, width = frame.shape[:2]
    cell_h, cell_w = height // GRID, width // GRID
    grey = frame[: cell_h * GRID, : cell_w * GRID].astype(np.float32).mean(axis=-1)
    cells = grey.reshape(GRID, cell_h, GRID, cell_w).mean(axis=(1, 3))
    return int(np.argmax(cells))


def encode(
    path: Path,
    frames: Sequence[np.ndarray],
    *,
    rate: int = 30,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    times: Sequence[float] | None = None,
    rotation: int | None = None,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    input_format: str = "rgb24",
) -> Path:
    """Encode RGB (or ``input_format``) frames into ``path``; ``times`` (seconds) makes it variable-rate."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        stream.options = options or {}
        if times is not None:
            stream.codec_context.time_base = VFR_TIME_BASE
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format=input_format)
            if times is not None:
                frame.pts = round(Fraction(times[i]).limit_denominator() / VFR_TIME_BASE)
                frame.time_base = VFR_TIME_BASE
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_rgb_folder(parent: Path, name: str, frames: Sequence[np.ndarray], *, skip: int | None = None) -> Path:
    """Charades RGB layout ``parent/name/name-000001.jpg``...; ``skip`` leaves one number out."""
    folder = parent / name
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        if i != skip:
            cv2.imwrite(str(folder / f"{name}-{i + 1:06d}.jpg"), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 100])
    return folder


def write_flow_folder(parent: Path, name: str, fields: Sequence[np.ndarray]) -> Path:
    """Charades flow layout ``parent/name/name-000001x.jpg`` and ``...y.jpg``."""
    folder = parent / name
    folder.mkdir(parents=True)
    for i, field in enumerate(fields):
        values = flow_to_jpeg_values(field)
        for channel, file_name in enumerate(flow_frame_names(name, i)):
            cv2.imwrite(str(folder / file_name), values[..., channel], [cv2.IMWRITE_JPEG_QUALITY, 100])
    return folder


def reference_picks(times: Sequence[float], end: float, fps: float) -> list[int]:
    """Which source frame each output frame shows, straight from the rule's statement.

    Output frame ``n`` is the last source frame whose ``round((t - t0) * fps)``
    (halves up) is ``<= n``, for ``n < round((end - t0) * fps)``.
    """
    start = Fraction(times[0]).limit_denominator()
    rate = Fraction(fps).limit_denominator()

    def rounded(t: float) -> int:
        x = (Fraction(t).limit_denominator() - start) * rate
        return int(x + Fraction(1, 2)) if x >= 0 else -int(-x + Fraction(1, 2))

    slots = [rounded(t) for t in times]
    count = max(1, rounded(end))
    return [max([i for i, q in enumerate(slots) if q <= n], default=0) for n in range(count)]
