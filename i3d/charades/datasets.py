"""Torch datasets over Charades: random training clips and whole videos for evaluation.

Sources, one per video id, under ``root``:

* RGB frame folders ``root/ID/ID-000001.jpg`` (1-based, 24 fps), as
  distributed (``Charades_v1_rgb``);
* flow frame folders ``root/ID/ID-000001x.jpg`` and ``ID-000001y.jpg``
  (grayscale, value ``255 * (f + 20) / 40``; ``Charades_v1_flow``);
* video files ``root/ID.mp4`` (``video_ext=".mp4"``), resampled to the
  preset's rate; with a flow preset, TV-L1 flow is read from ``flow_dir``
  when it is there, else computed on the fly. Training clips start at random
  frames, so they never fill the cache (only a whole pass does): precompute
  it with ``i3d flow --format npy --fps 24 --out FLOW_DIR ROOT/*.mp4``.

Frames are read and preprocessed by :func:`i3d.video.open_input`: the
preset's resize, centre crop (evaluation) or scale jitter, random crop and
flip (training), and value scaling. Delivered frame ``k`` is at time
``k / fps``; its labels are :func:`i3d.charades.annotations.frame_labels`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from i3d.charades.annotations import NUM_CLASSES, Video, frame_labels, validate_video_id
from i3d.charades.sizes import CLIP_FRAMES
from i3d.video.flow import FlowEngine
from i3d.video.inputs import NetworkInput, open_input
from i3d.video.presets import CHARADES_RGB, Preprocess


def source_path(root: str | os.PathLike[str], video_id: str, video_ext: str | None = None) -> Path:
    """``root/ID`` (a frame folder) or ``root/ID{video_ext}`` (a video file), after checking the id.

    Raises:
        InputError: for an id that could name something outside ``root``.
    """
    validate_video_id(video_id)
    return Path(root) / (video_id if video_ext is None else f"{video_id}{video_ext}")


@dataclass
class _Sources:
    """Where the inputs of a dataset are and how to open them."""

    root: Path
    preprocess: Preprocess
    video_ext: str | None
    flow_dir: Path | None
    flow_engine: FlowEngine | None

    def open(self, video: Video, train: bool, generator: torch.Generator | None, hflip: bool = True) -> NetworkInput:
        return open_input(
            source_path(self.root, video.id, self.video_ext),
            self.preprocess,
            train=train,
            flow_dir=self.flow_dir,
            generator=generator,
            flow_engine=self.flow_engine,
            hflip=hflip,
        )


def _fps(net_input: NetworkInput) -> float:
    if net_input.fps is None:
        raise ValueError(f"{net_input.path}: a source without a frame rate (.npy) cannot be labelled")
    return net_input.fps


class CharadesClips(Dataset):
    """Random training clips: item ``i`` is a clip of video ``i`` and its per-frame labels.

    Each access draws a start uniformly among the ``num_frames - clip_frames
    + 1`` possible ones and fresh augmentation (scale jitter, random crop,
    flip; the same for the whole clip). A video shorter than the clip is
    repeated from its start until the clip is full (frames and labels
    alike).

    Args:
        root: folder of frame folders or video files.
        videos: the annotations, e.g. ``read_csv(...)`` or the training
            subset of ``read_split_json(...)``.
        preprocess: preset; its modality chooses RGB or flow
            (``CHARADES_RGB``, ``CHARADES_FLOW``).
        clip_frames: frames per clip.
        video_ext: ``".mp4"`` etc. for video files; ``None`` for frame folders.
        num_classes: rows of the labels.
        flow_dir: flow cache for flow computed from video files.
        flow_engine: TV-L1 for flow computed from video files; by default
            one that runs in the process reading the clip (each ``DataLoader``
            worker gets its own copy), not a pool of processes per clip.
        generator: randomness; by default torch's global generator, which a
            ``DataLoader`` seeds differently in each worker.
        hflip: mirror half the clips left to right (``False``: none).

    Items:
        ``(clip, labels)``: ``clip`` ``(C, clip_frames, crop, crop)`` float32
        network input, ``labels`` ``(num_classes, clip_frames)`` float32 multi-hot.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        videos: Sequence[Video],
        preprocess: Preprocess = CHARADES_RGB,
        clip_frames: int = CLIP_FRAMES,
        *,
        video_ext: str | None = None,
        num_classes: int = NUM_CLASSES,
        flow_dir: str | os.PathLike[str] | None = None,
        flow_engine: FlowEngine | None = None,
        generator: torch.Generator | None = None,
        hflip: bool = True,
    ) -> None:
        if clip_frames < 1:
            raise ValueError(f"clip_frames must be >= 1, got {clip_frames}")
        for video in videos:
            validate_video_id(video.id)
        self.videos = list(videos)
        self.clip_frames = clip_frames
        self.num_classes = num_classes
        self.generator = generator
        self.hflip = hflip
        if flow_engine is None:
            # Loader workers already read clips in parallel: one TV-L1 thread
            # each, on the CPU (a forked loader worker cannot use CUDA).
            flow_engine = FlowEngine(workers=1, device="cpu")
        self._sources = _Sources(Path(root), preprocess, video_ext, _optional_path(flow_dir), flow_engine)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        video = self.videos[index]
        net_input = self._sources.open(video, train=True, generator=self.generator, hflip=self.hflip)
        total = net_input.num_frames
        start = int(torch.randint(0, max(total - self.clip_frames, 0) + 1, (), generator=self.generator))
        count = min(self.clip_frames, total)
        clip = _read_frames(net_input, start, count)
        labels = frame_labels(video, total, _fps(net_input), self.num_classes)[:, start : start + count]
        if count < self.clip_frames:
            repeats = -(-self.clip_frames // count)  # ceil
            clip = clip.repeat(1, repeats, 1, 1)[:, : self.clip_frames]
            labels = np.tile(labels, (1, repeats))[:, : self.clip_frames]
        return clip, torch.from_numpy(np.ascontiguousarray(labels))


def _read_frames(net_input: NetworkInput, start: int, count: int) -> torch.Tensor:
    """Frames ``start .. start + count - 1`` of ``net_input`` as ``(C, count, crop, crop)``."""
    clip = next(net_input.chunks(count, start=start))
    if clip.shape[1] != count:
        raise ValueError(f"{net_input.path}: delivered {clip.shape[1]} frames from {start}, expected {count}")
    return clip


@dataclass(frozen=True)
class VideoItem:
    """One evaluation video: its annotations, its network input and its per-frame labels.

    Attributes:
        video: the annotations.
        net_input: the whole video as network input; ``net_input.chunks(n)``
            yields ``(C, t, crop, crop)`` float32 chunks in order, reading
            frames as it goes, ``net_input.num_frames`` frames in all.
        labels: ``(num_classes, net_input.num_frames)`` float32 multi-hot,
            column ``k`` for delivered frame ``k`` at ``k / net_input.fps`` s.
    """

    video: Video
    net_input: NetworkInput
    labels: torch.Tensor


class CharadesVideos(Dataset):
    """Whole videos for evaluation, streamed: item ``i`` is a :class:`VideoItem`.

    Opening an item reads the source's layout (and, for a frame folder, its
    first frame), not its frames: those are read as ``item.net_input.chunks``
    is iterated, so memory is bounded by the chunk size. Centre crop, no
    augmentation. Iterate the dataset directly (or through a
    ``DataLoader(batch_size=None)``)::

        for item in CharadesVideos(root, read_csv("Charades_v1_test.csv")):
            logits = torch.cat([model_logits(chunk) for chunk in item.net_input.chunks(256)], dim=-1)

    Args:
        root, videos, preprocess, video_ext, num_classes, flow_dir: as for
            :class:`CharadesClips`.
        flow_engine: TV-L1 pool for flow computed from video files, shared
            by every video (the caller closes it); by default each video
            starts and stops a pool of its own.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        videos: Sequence[Video],
        preprocess: Preprocess = CHARADES_RGB,
        *,
        video_ext: str | None = None,
        num_classes: int = NUM_CLASSES,
        flow_dir: str | os.PathLike[str] | None = None,
        flow_engine: FlowEngine | None = None,
    ) -> None:
        for video in videos:
            validate_video_id(video.id)
        self.videos = list(videos)
        self.num_classes = num_classes
        self._sources = _Sources(Path(root), preprocess, video_ext, _optional_path(flow_dir), flow_engine)

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> VideoItem:
        video = self.videos[index]
        net_input = self._sources.open(video, train=False, generator=None)
        labels = frame_labels(video, net_input.num_frames, _fps(net_input), self.num_classes)
        return VideoItem(video, net_input, torch.from_numpy(labels))


def _optional_path(path: str | os.PathLike[str] | None) -> Path | None:
    return Path(path) if path is not None else None
