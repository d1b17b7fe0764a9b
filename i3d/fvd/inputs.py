"""FVD inputs: raw uint8 clips at their native size, from files, folders and arrays.

The reference resizes raw frames itself, so nothing here resizes, crops or
resamples: a clip is the first ``num_frames`` frames of a video, as decoded
(video files at their own frame rate, frame folders one image per frame).

Inputs, each expanded into videos (:class:`VideoItem`):

* a video file or a frame folder (``ID/ID-000001.jpg``...): one video;
* a folder of those, or a ``.txt`` list of paths: each of them;
* a ``.npy`` (memory-mapped) or ``.npz`` (read whole, one array inside)
  holding uint8 ``(N, T, H, W, 3)`` (N videos) or ``(T, H, W, 3)`` (one).
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from i3d.errors import I3DError, VideoError
from i3d.video import FrameFolderReader, VideoReader
from i3d.video.listing import expand_inputs

__all__ = [
    "VideoItem",
    "list_videos",
    "read_clip",
    "clip_batches",
    "clip_frames",
    "video_length",
    "ARRAY_SUFFIXES",
]

ARRAY_SUFFIXES = (".npy", ".npz")
_RGB = 3


@dataclass(frozen=True)
class VideoItem:
    """One video of the input: ``source`` itself, or row ``row`` of an array file,
    and which of its frames make the clip.

    ``index`` is its position in the whole input list (over all shards). The
    clip is frames ``start + k * step``; a ``start`` of ``None`` is drawn
    uniformly, per video, from the generator seeded with ``(seed, index)``
    (see :func:`clip_frames`).
    """

    source: str
    row: int | None
    index: int
    start: int | None = 0
    step: int = 1
    seed: int = 0

    @property
    def name(self) -> str:
        return self.source if self.row is None else f"{self.source}[{self.row}]"


def _is_array(path: str) -> bool:
    return path.lower().endswith(ARRAY_SUFFIXES) and not os.path.isdir(path)


def _npz_member(path: str, archive: zipfile.ZipFile) -> str:
    names = [n for n in archive.namelist() if n.endswith(".npy")]
    if len(names) != 1:
        raise VideoError(path, f"expected one array of videos in the .npz, found {len(names)}: {', '.join(names)}")
    return names[0]


def _array_shape(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an array file, from its header alone."""
    try:
        if path.lower().endswith(".npy"):
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            return array.shape, array.dtype
        with zipfile.ZipFile(path) as archive, archive.open(_npz_member(path, archive)) as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            return shape, dtype
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise VideoError(path, f"not a readable array file ({err})") from None


def _array_rows(path: str) -> int | None:
    """Number of videos in an array file (``None``: the file is one video)."""
    shape, dtype = _array_shape(path)
    if dtype != np.uint8 or len(shape) not in (4, 5) or shape[-1] != _RGB:
        raise VideoError(path, f"expected uint8 videos (N, T, H, W, 3) or (T, H, W, 3), got {dtype} {shape}")
    return shape[0] if len(shape) == 5 else None


def list_videos(inputs: Iterable[str | os.PathLike[str]], on_error: Callable[[str], None]) -> list[VideoItem]:
    """Expand inputs into videos, in order (see the module docstring).

    An array file that cannot be read is reported to ``on_error(message)`` and left out; other inputs are checked when read.
    """
    items: list[VideoItem] = []
    for path in expand_inputs(inputs):
        if not _is_array(path):
            items.append(VideoItem(path, None, len(items)))
            continue
        try:
            rows = _array_rows(path)
        except VideoError as err:
            on_error(str(err))
            continue
        for row in [None] if rows is None else range(rows):
            items.append(VideoItem(path, row, len(items)))
    return items


class _Arrays:
    """The array file being read (one at a time: consecutive videos share it)."""

    def __init__(self) -> None:
        self.path: str | None = None
        self.array: np.ndarray | None = None

    def get(self, path: str) -> np.ndarray:
        if path != self.path:
            self.path, self.array = None, None
            if path.lower().endswith(".npy"):
                array = np.load(path, mmap_mode="r", allow_pickle=False)
            else:
                with np.load(path, allow_pickle=False) as archive:
                    array = archive[archive.files[0]]
            self.path, self.array = path, array
        assert self.array is not None
        return self.array


def _reader(path: str) -> VideoReader | FrameFolderReader:
    if os.path.isdir(path):
        reader: VideoReader | FrameFolderReader = FrameFolderReader(path)
        if reader.kind != "rgb":
            raise VideoError(path, "holds flow frames; FVD needs RGB")
        return reader
    return VideoReader(path)


def video_length(item: VideoItem, arrays: _Arrays | None = None) -> int:
    """Frames in ``item``'s video (from the container or the array's shape)."""
    if item.row is None and not _is_array(item.source):
        return _reader(item.source).num_frames
    return len(_array_video(item, arrays or _Arrays()))


def clip_frames(item: VideoItem, length: int, num_frames: int | None) -> np.ndarray:
    """Indices of the clip's frames in a video of ``length`` frames.

    A clip of ``T`` frames at step ``s`` needs ``T * s`` frames (StyleGAN-V's
    rule: its datasets discard shorter videos); a random start is uniform
    in ``[0, length - T * s + s - 1]``, so that the last frame is in the video.

    Raises:
        VideoError: the video is too short.
    """
    want = length if num_frames is None else num_frames
    need = want * item.step
    if length < need or want == 0:
        asked = f"{need} needed for {want} at step {item.step}" if item.step > 1 else f"{want} asked for"
        raise VideoError(item.name, f"has {length} frames, fewer than the {asked}")
    start = item.start
    if start is None:
        rng = np.random.default_rng([item.seed, item.index])
        start = int(rng.integers(0, length - need + item.step))
    elif start + (want - 1) * item.step >= length:
        raise VideoError(item.name, f"has {length} frames; the clip from frame {start} needs more")
    return start + np.arange(want) * item.step


def _array_video(item: VideoItem, arrays: _Arrays) -> np.ndarray:
    try:
        array = arrays.get(item.source)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise VideoError(item.source, f"not a readable array file ({err})") from None
    return array if item.row is None else array[item.row]


def read_clip(item: VideoItem, num_frames: int | None = None, arrays: _Arrays | None = None) -> np.ndarray:
    """The clip of ``item`` (:func:`clip_frames`; all frames if ``num_frames`` is ``None``): uint8 ``(T, H, W, 3)``.

    Raises:
        VideoError: the video is unreadable or too short.
    """
    if item.row is None and not _is_array(item.source):
        reader = _reader(item.source)
        frames = clip_frames(item, reader.num_frames, num_frames)
        decoded = next(reader.chunks(int(frames[-1]) + 1)).frames  # from the first frame: decoders run forward
        return np.ascontiguousarray(decoded[frames])
    video = _array_video(item, arrays or _Arrays())
    return np.ascontiguousarray(video[clip_frames(item, len(video), num_frames)])


def clip_batches(
    items: Iterable[VideoItem],
    num_frames: int | None,
    batch_size: int,
    on_error: Callable[[str], None],
) -> Iterator[tuple[list[VideoItem], np.ndarray]]:
    """Consecutive clips of one shape, up to ``batch_size`` at a time: ``(items, (B, T, H, W, 3) uint8)``.

    A video that cannot be read is reported to ``on_error(message)`` (one line naming it)
    and skipped.
    """
    arrays = _Arrays()
    batch: list[tuple[VideoItem, np.ndarray]] = []
    for item in items:
        try:
            clip = read_clip(item, num_frames, arrays)
        except I3DError as err:
            on_error(str(err))
            continue
        if batch and (len(batch) == batch_size or batch[0][1].shape != clip.shape):
            yield [i for i, _ in batch], np.stack([c for _, c in batch])
            batch = []
        batch.append((item, clip))
    if batch:
        yield [i for i, _ in batch], np.stack([c for _, c in batch])
