"""A network loaded for inference: the one loader of predict, extract, fvd.

:func:`load_network` reads weights (a registry name or a checkpoint file),
puts the model on its :class:`~i3d.runtime.Placement` ready for inference,
and applies the caller's preprocessing overrides, so that every command
loads a network the same way.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from i3d import weights as W
from i3d.model import InceptionI3d
from i3d.runtime import Placement, prepare
from i3d.video import Preprocess
from i3d.video.presets import with_overrides
from i3d.weights.model_input import ModelInput, read_model_input

__all__ = ["LoadedNetwork", "load_network"]


@dataclass(frozen=True)
class LoadedNetwork:
    """A model prepared on its placement, with what goes with it.

    ``weights`` names it in outputs' metadata: the registry name, else the
    checkpoint's path. ``preprocess`` is the weights' own (for a model file
    from ``i3d train``, the input it was trained on, ``trained_input``), with
    the caller's overrides.
    """

    model: InceptionI3d
    preprocess: Preprocess
    placement: Placement
    entry: W.WeightsEntry | None  # None for a plain checkpoint file
    path: Path  # the checkpoint file read
    trained_input: ModelInput | None = None  # saved with the file by i3d train: preprocessing, clip length

    @property
    def weights(self) -> str:
        return self.entry.name if self.entry is not None else str(self.path)

    @functools.cached_property
    def sha256(self) -> str:
        """The checkpoint file's sha256 (computed on first use: predict needs none)."""
        return W.sha256(self.path)

    def labels(self, progress: bool = False) -> list[str]:
        """The class names: the registry's, a model's from ``i3d train``, else the default ones."""
        if self.entry is not None:
            return W.categories(self.entry, progress=progress)
        saved = W.saved_class_names(self.path)
        if saved is not None and len(saved) == self.model.num_classes:
            return saved
        return W.default_categories(self.model.num_classes, progress)


def load_network(
    spec: str | os.PathLike[str] | W.WeightsEntry,
    placement: Placement,
    *,
    in_channels: int | None = None,
    preprocess: Preprocess | None = None,
    fps: float | None = None,
    short_side: int | None = None,
    crop: int | None = None,
    bn_eps: float | None = None,
    progress: bool = False,
) -> LoadedNetwork:
    """Load ``spec`` onto ``placement`` for inference.

    The preprocessing is the registry entry's, else the one ``i3d train``
    saved with the file (a model fine-tuned on 112-pixel crops is run on
    112-pixel crops), else Kinetics' for its modality.

    Args:
        in_channels: 3 (RGB) or 2 (flow), checked against the weights.
        preprocess: replaces the weights' preprocessing.
        fps, short_side, crop: override these fields of the preprocessing.
        bn_eps: every BatchNorm's epsilon (a protocol's network setting),
            set before :func:`~i3d.runtime.prepare` folds BatchNorm with it.
    """
    model, own, entry, path = W.load_pretrained(spec, in_channels=in_channels, progress=progress)
    trained = read_model_input(path) if entry is None else None
    if trained is not None:
        own = trained.preprocess
    if bn_eps is not None:
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm3d):
                module.eps = bn_eps
    model = prepare(model, placement.device, placement.precision)  # type: ignore[assignment]
    preprocess = with_overrides(preprocess or own, fps=fps, short_side=short_side, crop=crop)
    return LoadedNetwork(model, preprocess, placement, entry, Path(path), trained)
