"""Classify videos with pretrained I3D: one stream or DeepMind's two-stream sum.

DeepMind's evaluation averages each stream's per-time logits over time and,
for the joint model, adds the RGB and flow averages before the softmax.

Multi-view testing (mmaction2's "10 clips x 3 crops"): each video is seen as
``clips x crops`` views, ``clips`` windows of ``clip_len`` frames evenly
spaced (:func:`i3d.video.windows.spaced_starts`; by default one view: the
whole video) times ``crops`` crops of every frame
(:func:`i3d.video.transforms.crop_views`). A view's score is its logits
averaged over time (summed over the streams for ``joint``); the video's
score averages the views' logits (``average="score"``) or their softmax
probabilities (``average="prob"``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from i3d import weights as W
from i3d.choices import AVERAGES, CROP_COUNTS, DEFAULT_BACKEND, DEFAULT_CLIP_LEN, Backend
from i3d.chunked import DEFAULT_CHUNK_FRAMES, LOGITS, chunked_outputs, run_clips
from i3d.model import InceptionI3d
from i3d.network import LoadedNetwork, load_network
from i3d.progress import Progress
from i3d.runtime import Placement, Precision
from i3d.video import open_input
from i3d.video.flow import DEFAULT_FLOW_ENGINE, check_flow_engine
from i3d.video.inputs import NetworkInput
from i3d.video.windows import TIME_DIM, gather_windows, spaced_windows

__all__ = ["Stream", "Average", "AVERAGES", "TopClass", "Prediction", "Classifier", "DEFAULT_CHUNK_FRAMES"]

Stream = Literal["rgb", "flow", "joint"]
Average = Literal["score", "prob"]


@dataclass(frozen=True)
class TopClass:
    label: str
    index: int
    prob: float
    logit: float


@dataclass(frozen=True)
class Prediction:
    """One video's logits (averaged over time and views) and its top classes,
    ranked by the averaged logits, or with ``average="prob"`` by the views'
    averaged probabilities (``prob`` of a class is the softmax of the
    averaged logits, or that average of probabilities)."""

    video: str
    logits: torch.Tensor  # (num_classes,)
    top: list[TopClass]

    def to_json(self) -> dict:
        return {"video": self.video, "top": [t.__dict__ for t in self.top]}


class Classifier:
    """Classify video files, frame folders or DeepMind ``.npy`` arrays.

    Args:
        stream: ``"rgb"``, ``"flow"`` or ``"joint"`` (sum of both logits).
        rgb_weights, flow_weights: registry names or checkpoint paths.
        labels: class names overriding the weights' own: a list, or a file
            with one name per line.
        device: where the network runs (default: CUDA if available).
        precision: ``fp32`` (exact, default), ``tf32``, ``bf16`` or ``fp16``
            (see :mod:`i3d.runtime`).
        backend: ``"torch"`` (default) or ``"openvino"`` (CPU, fp32 or
            bf16; :mod:`i3d.openvino`).
        chunk_frames: frames per network call; memory, not results, depends
            on it.
        flow_dir: a cache folder of flow frames (see :mod:`i3d.video.flow`).
        flow_engine: the TV-L1 engine for flow computed from videos,
            ``"torch"`` (default) or ``"opencv"``.
        fps, short_side, crop: override these fields of the weights'
            preprocessing (:class:`i3d.video.Preprocess`).
        clips: windows per video for multi-view testing (default: one
            view of the whole video).
        clip_len: frames per window when ``clips`` is given.
        crops: views of every frame: 1, 3, 5 or 10.
        average: ``"score"`` (the views' logits) or ``"prob"`` (their
            softmax probabilities).
    """

    def __init__(
        self,
        stream: Stream = "rgb",
        *,
        rgb_weights: str | os.PathLike[str] | W.WeightsEntry = W.DEFAULT_RGB,
        flow_weights: str | os.PathLike[str] | W.WeightsEntry = W.DEFAULT_FLOW,
        labels: list[str] | str | os.PathLike[str] | None = None,
        device: str | torch.device | None = None,
        precision: Precision = "fp32",
        backend: Backend = DEFAULT_BACKEND,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        flow_dir: str | os.PathLike[str] | None = None,
        flow_engine: str = DEFAULT_FLOW_ENGINE,
        fps: float | None = None,
        short_side: int | None = None,
        crop: int | None = None,
        clips: int | None = None,
        clip_len: int = DEFAULT_CLIP_LEN,
        crops: int = 1,
        average: Average = "score",
        progress: bool = True,
    ) -> None:
        if stream not in ("rgb", "flow", "joint"):
            raise ValueError(f"stream must be rgb, flow or joint, got {stream!r}")
        if crops not in CROP_COUNTS:
            raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")
        if average not in AVERAGES:
            raise ValueError(f"average must be one of {AVERAGES}, got {average!r}")
        if (clips is not None and clips < 1) or clip_len < 1:
            raise ValueError(f"clips and clip_len must be >= 1, got {clips} and {clip_len}")
        self.clips, self.clip_len, self.crops, self.average = clips, clip_len, crops, average
        self.placement = Placement.resolve(device, precision, backend)
        self.device, self.precision = self.placement.device, self.placement.precision
        self.chunk_frames = chunk_frames
        self.flow_dir = flow_dir
        self.flow_engine = check_flow_engine(flow_engine)
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        overrides = {"fps": fps, "short_side": short_side, "crop": crop}
        self.models: list[LoadedNetwork] = []
        if stream in ("rgb", "joint"):
            self.models.append(load_network(rgb_weights, self.placement, in_channels=3, progress=progress, **overrides))
        if stream in ("flow", "joint"):
            self.models.append(
                load_network(flow_weights, self.placement, in_channels=2, progress=progress, **overrides)
            )
        sizes = {m.model.num_classes for m in self.models}
        if len(sizes) != 1:
            raise W.WeightsError(f"the RGB and flow weights have different classes: {sorted(sizes)}")
        num_classes = sizes.pop()
        if labels is None:
            self.labels = self.models[0].labels(progress)
        elif isinstance(labels, (str, os.PathLike)):
            self.labels = W.read_labels(labels, num_classes)
        else:
            self.labels = list(labels)
        if len(self.labels) != num_classes:
            raise W.WeightsError(f"{len(self.labels)} labels for {num_classes} classes")

    def view_logits(self, path: str | os.PathLike[str], progress: Progress | None = None) -> torch.Tensor:
        """Each view's time-averaged logits ``(views, num_classes)``, summed
        over the streams; views clip-major (clip 0's crops, then clip 1's);
        frames done reported to ``progress``."""
        total = None
        for model in self.models:
            source = open_input(
                path, model.preprocess, flow_dir=self.flow_dir, flow_engine=self.flow_engine, crops=self.crops
            )
            # All crops of a chunk run together: chunk_frames frames in all.
            chunks = source.chunks(max(1, self.chunk_frames // self.crops))  # outside the precision context
            if progress is not None:
                progress.start(f"{path} ({model.preprocess.modality})", source.num_frames)
                chunks = _counted(chunks, progress)
            views = self._views(model.model, source, chunks)
            total = views if total is None else total + views
        assert total is not None
        return total

    def _views(self, net: InceptionI3d, source: NetworkInput, chunks: Iterator[torch.Tensor]) -> torch.Tensor:
        """``(views, num_classes)`` of one stream."""
        frames = source.num_frames
        if self.clips is None:  # the whole video, fully convolutionally
            outputs = chunked_outputs(net, chunks, frames, LOGITS, **self.placement.engine_options)
            per_time = torch.cat([y.float() for y in outputs], dim=2)  # (crops, num_classes, T')
            return per_time.mean(dim=2).cpu()
        windows = gather_windows(chunks, spaced_windows(frames, self.clip_len, self.clips), frames)
        clips = (c for w in windows for c in (w.unbind(0) if self.crops > 1 else (w,)))  # (C, L, S, S) each
        per_call = max(1, self.chunk_frames // self.clip_len)  # clips per network call: chunk_frames frames
        batches = _stacked(clips, per_call)
        outputs = run_clips(net, batches, LOGITS, **self.placement.engine_options)
        return torch.cat([y.float().mean(dim=2).cpu() for y in outputs])  # (clips * crops, num_classes)

    def logits(self, path: str | os.PathLike[str], progress: Progress | None = None) -> torch.Tensor:
        """Logits ``(num_classes,)`` averaged over time and views, summed over the streams."""
        return self.view_logits(path, progress).mean(dim=0)

    def predict(self, path: str | os.PathLike[str], top: int = 5, progress: Progress | None = None) -> Prediction:
        views = self.view_logits(path, progress)  # (views, num_classes)
        logits = views.mean(dim=0)
        probs = torch.softmax(views, dim=1).mean(dim=0) if self.average == "prob" else torch.softmax(logits, dim=0)
        # Ranked by what was averaged: probabilities saturate (ties at 0 and 1), logits do not.
        order = torch.argsort(probs if self.average == "prob" else logits, descending=True, stable=True)[:top]
        best = [TopClass(self.labels[i], int(i), float(probs[i]), float(logits[i])) for i in order.tolist()]
        return Prediction(str(Path(path)), logits, best)


def _stacked(clips: Iterator[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Batches ``(B, C, L, S, S)`` of at most ``size`` clips."""
    batch: list[torch.Tensor] = []
    for clip in clips:
        batch.append(clip)
        if len(batch) == size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)


def _counted(chunks: Iterator[torch.Tensor], progress: Progress) -> Iterator[torch.Tensor]:
    for chunk in chunks:  # (C, t, H, W) or (crops, C, t, H, W)
        yield chunk
        progress.advance(chunk.shape[TIME_DIM])  # the network has taken it
