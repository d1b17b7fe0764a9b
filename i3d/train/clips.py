"""Clips of labelled videos: the pre-flight index, training clips and validation clips.

**Pre-flight index.** :func:`index_videos` opens every video once before
training (a video file's stream is scanned and its first frame decoded; a
frame folder is listed, its numbering checked for gaps, its first frame
read) and records how many frames it delivers at the preset's rate. A
missing, unreadable or gapped video is thus found before step 1, not when
one of its clips is first drawn, and is refused (``on_broken="error"``,
the default) or left out with a warning (``"skip"``).

**Training clips** (:class:`TrainingClips`): ``clip_frames`` consecutive
frames starting at a uniformly drawn frame of the video's range, with the
preset's scale jitter, random crop and flip (unless ``hflip=False``; a
flipped clip may change class, ``flipped_classes``); a shorter range is
repeated from its start until the clip is full.

**Validation clips** (:class:`ValidationClips`): the common protocol for
clip classifiers. Each video gives ``val_clips`` clips of ``clip_frames``
frames whose starts are evenly spaced from the first to the last possible
start (one clip, repeated to length, when the range is shorter than a
clip); frames are resized to the preset's short side and centre-cropped,
never flipped. The video's score is the mean of its clips' logits (each
clip's logits averaged over the network's time steps), see
:func:`i3d.train.validation.clip_logits`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from torch.utils.data import Dataset

from i3d import console
from i3d.errors import I3DError
from i3d.train.choices import BROKEN_POLICIES, OnBroken
from i3d.train.datasets import LabelledVideo, VideoList
from i3d.video.flow import DEFAULT_FLOW_ENGINE, FlowEngine
from i3d.video.inputs import NetworkInput, open_input
from i3d.video.presets import Preprocess

__all__ = ["BROKEN_POLICIES", "IndexedVideo", "index_videos", "TrainingClips", "ValidationClips", "clip_starts"]

# How many broken videos a warning names one by one.
_BROKEN_SHOWN = 10


@dataclass(frozen=True)
class IndexedVideo:
    """A video that opened, with its frame range at the preset's rate.

    Attributes:
        video: the list entry.
        num_frames: frames the whole video delivers.
        first, count: the range of delivered frames its ``start``/``end`` select.
    """

    video: LabelledVideo
    num_frames: int
    first: int
    count: int


def _frame(seconds: float, fps: float) -> int:
    return int(round(Fraction(seconds) * Fraction(fps)))


def _index_one(video: LabelledVideo, preprocess: Preprocess, source_fps: float) -> IndexedVideo | str:
    """The video's range, or its one-line error."""
    try:
        net_input = open_input(video.path, preprocess, source_fps=source_fps)
    except I3DError as err:
        return str(err)
    except (OSError, ValueError) as err:
        return f"{video.path}: {err}"
    total = net_input.num_frames
    fps = net_input.fps or source_fps
    first = min(_frame(video.start, fps), total) if video.start is not None else 0
    last = min(_frame(video.end, fps), total) if video.end is not None else total
    if last <= first:
        return f"{video.path}: the range {video.start}..{video.end} s holds none of its {total} frames at {fps:g} fps"
    return IndexedVideo(video, total, first, last - first)


def index_videos(
    videos: Sequence[LabelledVideo],
    preprocess: Preprocess,
    *,
    source_fps: float,
    on_broken: OnBroken = "error",
    what: str = "training",
    workers: int = 1,
    warn: Callable[[str], None] | None = None,
) -> list[IndexedVideo]:
    """Open every video once; see the module docstring.

    Args:
        videos: the list to index.
        preprocess: the preset clips will be read with (its rate sets the frame counts).
        source_fps: the rate frame folders were extracted at.
        on_broken: ``"error"`` raises on the first broken video (in list
            order), ``"skip"`` leaves broken videos out after one warning line each.
        what: ``"training"`` or ``"validation"``, for messages.
        workers: threads opening videos (decoding releases the GIL).
        warn: where warnings go, without the ``warning:`` voice (default: :func:`i3d.console.warning`).

    Raises:
        I3DError: a broken video with ``on_broken="error"``, or no usable video at all.
    """
    if on_broken not in BROKEN_POLICIES:
        raise ValueError(f"on_broken must be one of {BROKEN_POLICIES}, got {on_broken!r}")
    with ThreadPoolExecutor(max(workers, 1)) as pool:
        results = list(pool.map(lambda v: _index_one(v, preprocess, source_fps), videos))
    broken = [r for r in results if isinstance(r, str)]
    if broken and on_broken == "error":
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        raise I3DError(f"{broken[0]}{more}; found before training: fix or remove it, or pass --on-broken skip")
    indexed = [r for r in results if isinstance(r, IndexedVideo)]
    if broken:
        say = warn or console.warning
        for message in broken[:_BROKEN_SHOWN]:
            say(f"skipped {what} video: {message}")
        if len(broken) > _BROKEN_SHOWN:
            say(f"skipped {len(broken) - _BROKEN_SHOWN} more broken {what} videos")
    if not indexed:
        raise I3DError(f"none of the {len(videos)} {what} videos can be read")
    return indexed


def clip_starts(first: int, count: int, clip_frames: int, clips: int) -> list[int]:
    """``clips`` evenly spaced starts of ``clip_frames``-frame clips in frames ``first .. first + count - 1``."""
    last = first + max(count - clip_frames, 0)
    return [int(round(x)) for x in np.linspace(first, last, clips)]


def _target(labels: tuple[int, ...], num_classes: int, multi_label: bool) -> torch.Tensor:
    """A class index ``()`` int64, or a multi-hot ``(num_classes,)`` float32."""
    if not multi_label:
        return torch.tensor(labels[0], dtype=torch.int64)
    target = torch.zeros(num_classes, dtype=torch.float32)
    target[list(labels)] = 1.0
    return target


def _read_clip(net_input: NetworkInput, start: int, available: int, clip_frames: int) -> torch.Tensor:
    """``(C, clip_frames, H, W)`` (``(crops, C, clip_frames, H, W)`` for a
    multi-crop stream) from ``start``: ``available`` frames, repeated to length if fewer."""
    count = min(clip_frames, available)
    clip = next(net_input.chunks(count, start=start))
    if clip.shape[-3] != count:
        raise I3DError(f"{net_input.path}: delivered {clip.shape[-3]} frames from {start}, expected {count}")
    if count < clip_frames:
        repeats = -(-clip_frames // count)  # ceil
        clip = torch.cat([clip] * repeats, dim=-3).narrow(-3, 0, clip_frames)
    return clip


class _Clips:
    """What training and validation clips share: the indexed videos and how to open them."""

    def __init__(
        self,
        videos: Sequence[IndexedVideo],
        classes: VideoList,
        preprocess: Preprocess,
        clip_frames: int,
        source_fps: float,
        flow_engine: str = DEFAULT_FLOW_ENGINE,
    ) -> None:
        if clip_frames < 1:
            raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
        self.videos = list(videos)
        self.classes = classes.classes
        self.multi_label = classes.multi_label
        self.num_classes = classes.num_classes
        self.preprocess = preprocess
        self.clip_frames = clip_frames
        self.source_fps = source_fps
        # One thread per loader worker, on the CPU: the workers are the
        # parallelism, and a forked loader worker cannot use CUDA.
        self.flow_engine = FlowEngine(workers=1, engine=flow_engine, device="cpu")

    def __len__(self) -> int:
        return len(self.videos)

    def _open(
        self,
        item: IndexedVideo,
        train: bool,
        generator: torch.Generator | None,
        hflip: bool = True,
        crops: int = 1,
    ) -> NetworkInput:
        net_input = open_input(
            item.video.path,
            self.preprocess,
            train=train,
            generator=generator,
            source_fps=self.source_fps,
            hflip=hflip,
            crops=crops,
            flow_engine=self.flow_engine,
        )
        if net_input.num_frames != item.num_frames:
            raise I3DError(f"{item.video.path}: has {net_input.num_frames} frames now, {item.num_frames} when indexed")
        return net_input

    def target(self, index: int, flipped_classes: Sequence[int] | None = None) -> torch.Tensor:
        labels = self.videos[index].video.labels
        if flipped_classes is not None:
            labels = tuple(flipped_classes[label] for label in labels)
        return _target(labels, self.num_classes, self.multi_label)


class TrainingClips(_Clips, Dataset):
    """Random training clips; item ``i`` is ``(clip (C, T, crop, crop), target)`` of video ``i``.

    ``target`` is the class index (``()`` int64) or, for multi-label data, a
    multi-hot ``(num_classes,)`` float32. All randomness comes from
    ``generator`` (see :class:`i3d.train.data.ClipDataset`).

    Keyword args:
        hflip: mirror half the clips left to right (``False``: none, for
            classes that name a direction).
        flipped_classes: the class of a mirrored clip of each class
            (:func:`i3d.train.datasets.read_flip_map`), e.g. "left to right"
            for "right to left"; ``None``: mirroring keeps the class.
    """

    def __init__(
        self,
        *args,
        generator: torch.Generator | None = None,
        hflip: bool = True,
        flipped_classes: Sequence[int] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        if flipped_classes is not None and sorted(flipped_classes) != list(range(self.num_classes)):
            raise ValueError(f"flipped_classes must be a permutation of the {self.num_classes} classes")
        self.generator = generator
        self.hflip = hflip
        self.flipped_classes = tuple(flipped_classes) if flipped_classes is not None else None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.videos[index]
        net_input = self._open(item, train=True, generator=self.generator, hflip=self.hflip)
        spare = max(item.count - self.clip_frames, 0)
        start = item.first + int(torch.randint(0, spare + 1, (), generator=self.generator))
        target = self.target(index, self.flipped_classes if net_input.flipped else None)
        return _read_clip(net_input, start, item.count, self.clip_frames), target


class ValidationClips(_Clips, Dataset):
    """Item ``i`` is ``(clips (val_clips * crops, C, T, crop, crop), target)``
    of video ``i``, clip-major (clip 0's crops first); see the module docstring.
    ``crops``: views of every frame (:func:`i3d.video.transforms.crop_views`)."""

    def __init__(self, *args, val_clips: int = 1, crops: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if val_clips < 1:
            raise ValueError(f"val_clips must be >= 1, got {val_clips}")
        self.val_clips = val_clips
        self.crops = crops

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        item = self.videos[index]
        net_input = self._open(item, train=False, generator=None, crops=self.crops)
        starts = clip_starts(item.first, item.count, self.clip_frames, self.val_clips)
        end = item.first + item.count
        clips = [_read_clip(net_input, s, end - s, self.clip_frames) for s in starts]
        views = torch.stack(clips)  # (val_clips, C, T, H, W) or (val_clips, crops, C, T, H, W)
        return (views.flatten(0, 1) if self.crops > 1 else views), self.target(index)
