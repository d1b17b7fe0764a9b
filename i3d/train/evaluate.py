"""Score a trained model on a labelled video list, as training validates.

::

    i3d eval accuracy --weights runs/ucf/model.safetensors --format csv --csv test.csv --root videos/

The model's class names come from its file (:mod:`i3d.train.export`); the
list's labels are matched to them by name, so the list may hold a subset of
the classes. A file without names takes the list's classes (sorted labels
or ``--classes``), which must be as many as the model's outputs. Each video
is scored as training validates it (:mod:`i3d.train.clips`: ``--val-clips``
evenly spaced centre-cropped clips of ``--clip-frames`` frames, scores
averaged): top-1, top-5 and mean class accuracy for single-label lists, mAP
for multi-label ones. Multi-view testing: ``--clips K --crops N`` scores
``K x N`` views of each video (:func:`i3d.video.transforms.crop_views`) and
averages their logits (``--average score``) or probabilities (``prob``:
softmax, or sigmoid for multi-label lists).

The clips are made as the model's were in training: its modality, frame
rate, short side, crop and clip length are saved with it
(:func:`i3d.weights.model_input.read_model_input`), which
:func:`i3d.network.load_network` takes as the model's preprocessing. A flag
given overrides one of them, and a warning says so; a model file without
them (not from ``i3d train``) gets its weights' preprocessing (Kinetics':
25 fps, short side 256, crop 224, for a file of its own) and 64 frames,
and a warning says that too.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from i3d import console
from i3d.errors import I3DError
from i3d.network import LoadedNetwork, load_network
from i3d.runtime import Placement, Precision
from i3d.train.clips import ValidationClips, index_videos
from i3d.train.datasets import read_video_list
from i3d.train.distributed import World
from i3d.train.export import read_class_names
from i3d.train.validation import ClipValidation, ClipValidationResult
from i3d.video.presets import Preprocess

__all__ = ["evaluate_accuracy"]


# Clip length where neither a flag nor the model file says (a model from before the input was saved with it,
# or not from i3d train): Kinetics' clips. Its preprocessing is then the weights' own (load_network).
_FALLBACK_CLIP_FRAMES = 64
_FLAG = {"clip_frames": "--clip-frames", "fps": "--fps", "short_side": "--short-side", "crop": "--crop"}


def _show(value: float | None) -> str:
    return "the source's rate" if value is None else f"{value:g}"


def _settings(
    weights: str | os.PathLike[str], net: LoadedNetwork, given: dict[str, Any], warn: Callable[[str], None]
) -> dict[str, Any]:
    """The clip settings: those given, else the model's own (saved by ``i3d train``, else its weights'
    preprocessing and :data:`_FALLBACK_CLIP_FRAMES`); a warning says which given ones differ from the
    model's saved ones, or that it has none."""
    saved = net.trained_input
    own = {
        "clip_frames": saved.clip_frames if saved is not None else _FALLBACK_CLIP_FRAMES,
        "fps": net.preprocess.fps,
        "short_side": net.preprocess.resize_short_side,
        "crop": net.preprocess.crop,
    }
    if saved is None:
        defaulted = [f"{_FLAG[k]} {_show(v)}" for k, v in own.items() if given[k] is None]
        if defaulted:
            warn(f"{weights}: no clip settings saved with the model; using {', '.join(defaulted)}")
    else:
        changed = [
            f"{_FLAG[k]} {v:g} (the model's: {_show(own[k])})" for k, v in given.items() if v not in (None, own[k])
        ]
        if changed:
            warn(f"{weights}: overriding the clip settings saved with the model: {', '.join(changed)}")
    return {k: own[k] if v is None else v for k, v in given.items()}


def evaluate_accuracy(
    weights: str | os.PathLike[str],
    format: str,
    root: str | os.PathLike[str],
    listing: str | os.PathLike[str] | None = None,
    *,
    classes: Sequence[str] | None = None,
    clip_frames: int | None = None,
    val_clips: int = 3,
    fps: float | None = None,
    short_side: int | None = None,
    crop: int | None = None,
    frame_fps: float = 25.0,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    workers: int = 0,
    on_broken: str = "error",
    warn: Callable[[str], None] = console.warning,
    crops: int = 1,
    average: str = "score",
) -> ClipValidationResult:
    """Score ``weights`` on a ``folders``/``csv``/``kinetics`` list; see the module docstring.

    ``clip_frames``, ``fps``, ``short_side`` and ``crop`` left ``None`` are
    the model's (saved by ``i3d train``), else 64 frames at 25 fps, short
    side 256, crop 224; ``warn`` is told of values that differ from the
    model's, or of a model that has none.
    """
    given = {"clip_frames": clip_frames, "fps": fps, "short_side": short_side, "crop": crop}
    placement = Placement.resolve(device, precision)
    net = load_network(weights, placement, progress=True)
    settings = _settings(weights, net, given, warn)
    model = net.model
    names = read_class_names(net.path) or (list(classes) if classes is not None else None)
    videos = read_video_list(format, root, listing, names)
    if videos.num_classes != model.num_classes:
        raise I3DError(
            f"{weights}: has {model.num_classes} classes and no names for them; the list has {videos.num_classes}"
        )
    preprocess = Preprocess(net.preprocess.modality, settings["fps"], settings["short_side"], settings["crop"])
    if preprocess.crop > preprocess.resize_short_side:
        raise I3DError(f"--crop {preprocess.crop} is larger than --short-side {preprocess.resize_short_side}")
    indexed = index_videos(
        videos.videos, preprocess, source_fps=frame_fps, on_broken=on_broken, what="evaluation", warn=warn
    )
    clips = ValidationClips(
        indexed, videos, preprocess, settings["clip_frames"], frame_fps, val_clips=val_clips, crops=crops
    )
    return ClipValidation(clips, workers, average)(model, device=placement.device, precision=precision, world=World())
