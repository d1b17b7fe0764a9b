"""Validation during training: Charades' whole-video mAP, and clip accuracy or mAP for any dataset.

The trainer calls a :class:`Validator`: ``validator(model, device=...,
precision=..., world=...)`` returns a :class:`ValidationOutcome` (its
numbers for the log, the videos it ran, the ones it could not read). Two
kinds:

* :class:`CharadesValidation`: the official classification mAP of whole
  videos, streamed through the package's engine
  (:func:`i3d.chunked.run_chunks`, in :func:`video_logits`);
* :class:`ClipValidation`: each video's ``val_clips`` centre-cropped clips
  (:class:`i3d.train.clips.ValidationClips`) in one batched forward pass
  (:func:`clip_logits`), their scores averaged; top-1, top-5 and mean class
  accuracy for single-label data, mAP for multi-label data.

Under several processes each runs its share of the videos and every
process gets the result. Both leave the model in eval mode.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from i3d.charades.datasets import CharadesVideos
from i3d.charades.metrics import EvalResult, evaluate_classification
from i3d.charades.submission import SubmissionWarning, video_scores
from i3d.chunked import LOGITS, run_chunks
from i3d.errors import I3DError
from i3d.model import InceptionI3d
from i3d.runtime import Precision, precision_context
from i3d.train.clips import ValidationClips
from i3d.train.distributed import World, gather_objects
from i3d.train.loss import clip_scores
from i3d.train.metrics import accuracy, multilabel_map
from i3d.video import NetworkInput

__all__ = [
    "DEFAULT_VAL_CHUNK_FRAMES",
    "Validator",
    "ValidationOutcome",
    "Validation",
    "CharadesValidation",
    "ClipValidation",
    "ClipValidationResult",
    "clip_logits",
    "video_logits",
    "validate",
]

# Frames per network call in whole-video validation: bounds memory, not the result.
DEFAULT_VAL_CHUNK_FRAMES = 256


class ValidationOutcome(Protocol):
    videos: int
    skipped: tuple[str, ...]

    def to_json(self) -> dict[str, Any]: ...

    def summary(self) -> str: ...


class Validator(Protocol):
    def __call__(
        self, model: nn.Module, *, device: torch.device, precision: Precision, world: World
    ) -> ValidationOutcome: ...


def _percent(x: float | None) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.2f}%"


# ---- the two network passes ----------------------------------------------------------


def video_logits(
    model: nn.Module,
    net_input: NetworkInput,
    device: torch.device,
    precision: Precision = "fp32",
    chunk_frames: int = DEFAULT_VAL_CHUNK_FRAMES,
) -> torch.Tensor:
    """Per-frame logits ``(K, T')`` of a whole video, float32 on the CPU.

    Args:
        model: in eval mode; an :class:`InceptionI3d` runs streamed (memory
            bounded by ``chunk_frames``, same result as one pass), any other
            module ``(1, C, T, H, W) -> (1, K, T')`` in one pass.
        net_input: the video as network input (``net_input.chunks(n)`` gives
            ``(C, t, H, W)`` pieces in order).
    """
    chunks = (chunk.unsqueeze(0).to(device) for chunk in net_input.chunks(chunk_frames))
    with precision_context(device, precision):
        if isinstance(model, InceptionI3d):
            logits = torch.cat(list(run_chunks(model, chunks, net_input.num_frames, LOGITS)), dim=2)
        else:
            logits = model(torch.cat(list(chunks), dim=2))
    return logits[0].float().cpu()


def clip_logits(
    model: nn.Module, clips: torch.Tensor, device: torch.device, precision: Precision = "fp32"
) -> torch.Tensor:
    """Class scores ``(N, K)`` float32 on the CPU of clips ``(N, C, T, H, W)``, in one network call.

    Each clip's per-time logits are averaged over time (:func:`i3d.train.loss.clip_scores`,
    what the clip losses train).
    """
    with precision_context(device, precision):
        logits = model(clips.to(device))  # (N, K, T')
    return clip_scores(logits).cpu()


# ---- Charades --------------------------------------------------------------------------


@dataclass(frozen=True)
class Validation:
    """The official classification evaluation of the validation videos.

    Attributes:
        result: mAP and the rest, over the videos that have actions.
        videos: videos run through the network.
        skipped: one-line errors of videos that could not be read (they
            score ``-inf``, as a submission missing them would).
    """

    result: EvalResult
    videos: int
    skipped: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**self.result.to_json(), "videos": self.videos, "skipped": len(self.skipped)}

    def summary(self) -> str:
        excluded = self.result.excluded
        left_out = f" (left out, no positives: {' '.join(f'c{c:03d}' for c in excluded)})" if excluded else ""
        return (
            f"mAP {_percent(self.result.map)} wAP {_percent(self.result.wap)} "
            f"over {self.result.classes} classes{left_out}, {self.videos} videos"
        )


def validate(
    model: nn.Module,
    videos: CharadesVideos,
    *,
    device: torch.device,
    precision: Precision = "fp32",
    chunk_frames: int = DEFAULT_VAL_CHUNK_FRAMES,
    world: World | None = None,
) -> Validation:
    """Charades classification mAP (``Charades_v1_classify.m``) of ``model`` on whole videos.

    A video's score for a class is the maximum over time of its per-frame
    logits. Videos without actions are not run: the official evaluation
    ignores their scores.
    """
    world = world or World()
    model.eval()
    scores: dict[str, Any] = {}
    skipped: list[str] = []
    for index in range(world.rank, len(videos), world.world_size):
        if not videos.videos[index].actions:
            continue
        try:
            item = videos[index]
            scores[item.video.id] = video_scores(video_logits(model, item.net_input, device, precision, chunk_frames))
        except I3DError as err:
            skipped.append(str(err))
    merged: dict[str, Any] = {}
    all_skipped: list[str] = []
    for part_scores, part_skipped in gather_objects((scores, skipped), world):
        merged.update(part_scores)
        all_skipped.extend(part_skipped)
    with warnings.catch_warnings():
        # The skipped videos are reported with their causes instead.
        warnings.simplefilter("ignore", SubmissionWarning)
        result = evaluate_classification(videos.videos, merged, videos.num_classes)
    return Validation(result, len(merged), tuple(all_skipped))


@dataclass(frozen=True)
class CharadesValidation:
    """:func:`validate` as a :class:`Validator`."""

    videos: CharadesVideos
    chunk_frames: int = DEFAULT_VAL_CHUNK_FRAMES

    def __call__(self, model: nn.Module, *, device: torch.device, precision: Precision, world: World) -> Validation:
        return validate(
            model, self.videos, device=device, precision=precision, chunk_frames=self.chunk_frames, world=world
        )


# ---- any labelled videos ---------------------------------------------------------------------


@dataclass(frozen=True)
class ClipValidationResult:
    """Attributes:
    metrics: ``top1``, ``top5``, ``mean_class_acc`` (single-label) or ``map``, ``wap``, ``classes``.
    videos: videos scored; skipped: one-line errors of the others.
    confusion: ``confusion[true][predicted]`` counts (single-label only).
    scores: ``(videos, K)`` scores in video order (videos that could not be read left out).
    """

    metrics: dict[str, Any]
    videos: int
    skipped: tuple[str, ...] = ()
    confusion: list[list[int]] | None = None
    scores: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {**self.metrics, "videos": self.videos, "skipped": len(self.skipped)}

    def summary(self) -> str:
        m = self.metrics
        if "top1" in m:
            head = f"top-1 {_percent(m['top1'])} top-5 {_percent(m['top5'])} mean class {_percent(m['mean_class_acc'])}"
        else:
            head = f"mAP {_percent(m['map'])} over {m['classes']} classes"
        return f"{head}, {self.videos} videos"


def score_targets(scores: np.ndarray, targets: np.ndarray, multi_label: bool) -> tuple[dict[str, Any], list | None]:
    """The metrics of ``scores`` ``(N, K)`` and, for single-label targets, the confusion matrix."""
    if multi_label:
        return multilabel_map(scores, targets), None
    result = accuracy(scores, targets)
    return result.to_json(), result.confusion.tolist()


class _Guarded(Dataset):
    """Item ``i`` of a subset of ``clips`` as ``(i, clips, target)`` or ``(i, error, None)``."""

    def __init__(self, clips: ValidationClips, indices: list[int]) -> None:
        self.clips = clips
        self.indices = indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[int, Any, Any]:
        index = self.indices[position]
        try:
            clips, target = self.clips[index]
        except I3DError as err:
            return index, str(err), None
        return index, clips, target


@dataclass(frozen=True)
class ClipValidation:
    """Validation clips scored as a :class:`Validator`; ``workers`` loader processes read ahead."""

    clips: ValidationClips
    workers: int = 0
    average: str = "score"  # the views' logits ("score") or their probabilities ("prob")

    def __call__(
        self, model: nn.Module, *, device: torch.device, precision: Precision, world: World
    ) -> ClipValidationResult:
        model.eval()
        indices = list(range(world.rank, len(self.clips), world.world_size))
        loader = DataLoader(_Guarded(self.clips, indices), batch_size=None, num_workers=self.workers)
        scores: dict[int, np.ndarray] = {}
        skipped: list[str] = []
        for index, clips, _ in loader:
            if isinstance(clips, str):
                skipped.append(clips)
                continue
            # The video's score: its clips' (views') scores averaged; as many
            # clips per network call as one crop of each clip.
            parts = clips.split(self.clips.val_clips)
            logits = torch.cat([clip_logits(model, part, device, precision) for part in parts])
            if self.average == "prob":
                logits = logits.sigmoid() if self.clips.multi_label else logits.softmax(dim=1)
            scores[index] = logits.mean(dim=0).numpy()
        merged: dict[int, np.ndarray] = {}
        all_skipped: list[str] = []
        for part_scores, part_skipped in gather_objects((scores, skipped), world):
            merged.update(part_scores)
            all_skipped.extend(part_skipped)
        order = sorted(merged)
        matrix = np.stack([merged[i] for i in order]) if order else np.zeros((0, self.clips.num_classes))
        targets = (
            np.stack([self.clips.target(i).numpy() for i in order])
            if order
            else np.zeros((0,) if not self.clips.multi_label else (0, self.clips.num_classes))
        )
        metrics, confusion = score_targets(matrix, targets, self.clips.multi_label)
        return ClipValidationResult(metrics, len(order), tuple(all_skipped), confusion, matrix)
