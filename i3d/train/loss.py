"""Training losses: Charades' per-frame loss, and clip losses for any labelled videos.

:class:`CharadesObjective` and :class:`ClipObjective` share the
:class:`Objective` protocol the trainer calls: ``objective(logits, target)``
returns the weighted total first, then the terms it logs, named by
``objective.names``.

The Charades loss is per-frame localization plus clip classification.

I3D gives one logit per class every 8 input frames or so. The localization
term brings those back to every frame of the clip by linear interpolation and
scores each frame against its labels; the classification term takes the
maximum over time of both the logits and the labels, i.e. "does the class
occur anywhere in the clip". Both are binary cross-entropies with logits,
averaged over their elements (train_i3d.py:101-111 of the PyTorch port).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import torch
import torch.nn.functional as F

__all__ = [
    "LossTerms",
    "Objective",
    "CharadesObjective",
    "ClipObjective",
    "charades_loss",
    "clip_scores",
    "upsample_logits",
]


class LossTerms(NamedTuple):
    """The weighted total and its two unweighted terms, each a 0-d tensor."""

    total: torch.Tensor
    localization: torch.Tensor
    classification: torch.Tensor


def upsample_logits(logits: torch.Tensor, frames: int) -> torch.Tensor:
    """Linear interpolation over time, ``(B, C, T')`` -> ``(B, C, frames)``.

    Each output step is taken to cover an equal share of the clip and to sit
    at its centre (``align_corners=False``), the convention of
    :func:`i3d.charades.submission.upsample_frames`, so that training and the
    localization submission place the outputs alike. (The port called
    ``F.upsample(..., mode='linear')`` under PyTorch 0.3, whose default
    corner alignment differs; not reproduced.)
    """
    if logits.dim() != 3 or logits.shape[2] < 1:
        raise ValueError(f"expected per-frame logits (B, C, T') with T' >= 1, got shape {tuple(logits.shape)}")
    return F.interpolate(logits, size=frames, mode="linear", align_corners=False)


def charades_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    localization_weight: float = 0.5,
    classification_weight: float = 0.5,
) -> LossTerms:
    """The loss of a batch of clips.

    Args:
        logits: ``(B, C, T')`` per-frame logits of the network.
        labels: ``(B, C, T)`` multi-hot per-frame labels of the clip's ``T``
            frames, in ``[0, 1]``.
        localization_weight, classification_weight: weights of the two terms.

    Returns:
        :class:`LossTerms`, computed in float32 whatever the logits' dtype.
    """
    if labels.dim() != 3 or labels.shape[:2] != logits.shape[:2]:
        raise ValueError(
            f"labels {tuple(labels.shape)} do not fit logits {tuple(logits.shape)}: "
            "expected (B, C, T) with the logits' B and C"
        )
    labels = labels.float()
    per_frame = upsample_logits(logits.float(), labels.shape[2])
    localization = F.binary_cross_entropy_with_logits(per_frame, labels)
    classification = F.binary_cross_entropy_with_logits(per_frame.amax(dim=2), labels.amax(dim=2))
    total = localization_weight * localization + classification_weight * classification
    return LossTerms(total, localization, classification)


class Objective(Protocol):
    """A training loss: ``(logits (B, K, T'), target) -> (total, term, ...)``, 0-d float32 tensors."""

    names: tuple[str, ...]

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]: ...


@dataclass(frozen=True)
class CharadesObjective:
    """:func:`charades_loss` on per-frame labels ``(B, K, T)``."""

    localization_weight: float = 0.5
    classification_weight: float = 0.5
    names: ClassVar[tuple[str, ...]] = ("loss", "localization", "classification")

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(charades_loss(logits, target, self.localization_weight, self.classification_weight))


def clip_scores(logits: torch.Tensor) -> torch.Tensor:
    """A clip's class scores: per-time logits ``(B, K, T')`` averaged over time, ``(B, K)`` float32."""
    if logits.dim() != 3:
        raise ValueError(f"expected per-time logits (B, K, T'), got shape {tuple(logits.shape)}")
    return logits.float().mean(dim=2)


@dataclass(frozen=True)
class ClipObjective:
    """One label set per clip, on the time-averaged logits (:func:`clip_scores`).

    Single-label targets ``(B,)`` int64: softmax cross-entropy. Multi-label
    targets ``(B, K)`` multi-hot: binary cross-entropy averaged over the
    elements. ``label_smoothing`` ``s`` mixes the targets with the uniform
    distribution (``torch.nn.functional.cross_entropy``'s rule); for
    multi-label targets each 0/1 becomes ``s/2`` / ``1 - s/2``.
    """

    multi_label: bool = False
    label_smoothing: float = 0.0
    names: ClassVar[tuple[str, ...]] = ("loss",)

    def __call__(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores = clip_scores(logits)
        if self.multi_label:
            smoothed = target.float() * (1 - self.label_smoothing) + self.label_smoothing / 2
            return (F.binary_cross_entropy_with_logits(scores, smoothed),)
        return (F.cross_entropy(scores, target.long(), label_smoothing=self.label_smoothing),)
