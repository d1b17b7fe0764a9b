"""Classify videos with pretrained I3D: one stream or DeepMind's two-stream sum.

DeepMind's evaluation averages each stream's per-time logits over time and,
for the joint model, adds the RGB and flow averages before the softmax.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from i3d import weights as W
from i3d.model import InceptionI3d
from i3d.progress import Progress
from i3d.runtime import Precision, default_device, prepare
from i3d.streaming import DEFAULT_CHUNK_FRAMES, LOGITS, stream_outputs
from i3d.video import Preprocess, open_input
from i3d.video.flow import DEFAULT_FLOW_ENGINE, check_flow_engine
from i3d.video.presets import with_overrides

__all__ = ["Stream", "TopClass", "Prediction", "Classifier", "DEFAULT_CHUNK_FRAMES"]

Stream = Literal["rgb", "flow", "joint"]


@dataclass(frozen=True)
class TopClass:
    label: str
    index: int
    prob: float
    logit: float


@dataclass(frozen=True)
class Prediction:
    """Time-averaged logits of one video and its top classes."""

    video: str
    logits: torch.Tensor  # (num_classes,)
    top: list[TopClass]

    def to_json(self) -> dict:
        return {"video": self.video, "top": [t.__dict__ for t in self.top]}


@dataclass
class _Model:
    net: InceptionI3d
    preprocess: Preprocess
    entry: W.WeightsEntry | None  # None for a plain checkpoint file
    path: str | None = None  # that file

    def labels(self, progress: bool) -> list[str]:
        if self.entry is not None:
            return W.categories(self.entry, progress=progress)
        # A model from `i3d train` carries its class names.
        saved = W.saved_class_names(self.path) if self.path is not None else None
        if saved is not None and len(saved) == self.net.num_classes:
            return saved
        return W.default_categories(self.net.num_classes, progress)


def _load(
    spec: str | os.PathLike[str] | W.WeightsEntry,
    channels: int,
    device: torch.device,
    precision: Precision,
    progress: bool,
) -> _Model:
    """A model with its preprocessing."""
    net, preprocess, entry, _ = W.load_pretrained(spec, in_channels=channels, progress=progress)
    path = None if entry is not None or isinstance(spec, W.WeightsEntry) else os.fspath(spec)
    return _Model(prepare(net, device, precision), preprocess, entry, path)  # type: ignore[arg-type]


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
        chunk_frames: frames per network call; memory, not results, depends
            on it.
        flow_dir: a cache folder of flow frames (see :mod:`i3d.video.flow`).
        flow_engine: the TV-L1 engine for flow computed from videos,
            ``"torch"`` (default) or ``"opencv"``.
        fps, short_side, crop: override these fields of the weights'
            preprocessing (:class:`i3d.video.Preprocess`).
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
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        flow_dir: str | os.PathLike[str] | None = None,
        flow_engine: str = DEFAULT_FLOW_ENGINE,
        fps: float | None = None,
        short_side: int | None = None,
        crop: int | None = None,
        progress: bool = True,
    ) -> None:
        if stream not in ("rgb", "flow", "joint"):
            raise ValueError(f"stream must be rgb, flow or joint, got {stream!r}")
        self.device = torch.device(device) if device is not None else default_device()
        self.precision = precision
        self.chunk_frames = chunk_frames
        self.flow_dir = flow_dir
        self.flow_engine = check_flow_engine(flow_engine)
        if chunk_frames < 1:
            raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
        self.models: list[_Model] = []
        if stream in ("rgb", "joint"):
            self.models.append(_load(rgb_weights, 3, self.device, precision, progress))
        if stream in ("flow", "joint"):
            self.models.append(_load(flow_weights, 2, self.device, precision, progress))
        for model in self.models:
            model.preprocess = with_overrides(model.preprocess, fps=fps, short_side=short_side, crop=crop)
        sizes = {m.net.num_classes for m in self.models}
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

    def logits(self, path: str | os.PathLike[str], progress: Progress | None = None) -> torch.Tensor:
        """Time-averaged logits ``(num_classes,)``, summed over the streams;
        frames done reported to ``progress``."""
        total = None
        for model in self.models:
            source = open_input(path, model.preprocess, flow_dir=self.flow_dir, flow_engine=self.flow_engine)
            chunks = source.chunks(self.chunk_frames)  # decoding stays outside the precision context
            if progress is not None:
                progress.start(f"{path} ({model.preprocess.modality})", source.num_frames)
                chunks = _counted(chunks, progress)
            outputs = [
                y.float()
                for y in stream_outputs(
                    model.net, chunks, source.num_frames, LOGITS, device=self.device, precision=self.precision
                )
            ]
            per_time = torch.cat(outputs, dim=2)  # (1, num_classes, T')
            averaged = per_time[0].mean(dim=1).cpu()  # (num_classes,)
            total = averaged if total is None else total + averaged
        assert total is not None
        return total

    def predict(self, path: str | os.PathLike[str], top: int = 5, progress: Progress | None = None) -> Prediction:
        logits = self.logits(path, progress)
        probs = torch.softmax(logits, dim=0)
        order = torch.argsort(logits, descending=True, stable=True)[:top]
        best = [TopClass(self.labels[i], int(i), float(probs[i]), float(logits[i])) for i in order.tolist()]
        return Prediction(str(Path(path)), logits, best)


def _counted(chunks: Iterator[torch.Tensor], progress: Progress) -> Iterator[torch.Tensor]:
    for chunk in chunks:  # (C, t, H, W)
        yield chunk
        progress.advance(chunk.shape[1])  # the network has taken it
