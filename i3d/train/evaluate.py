"""``i3d eval accuracy``: score a trained model on a labelled video list, as training validates.

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
(:func:`i3d.train.export.read_model_input`). A flag given overrides one of
them, and a warning says so; a model file without them (not from
``i3d train``) gets 64 frames at 25 fps, short side 256, crop 224, and a
warning says that too.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from i3d import console
from i3d.argtypes import natural_int, positive_float, positive_int
from i3d.errors import I3DError
from i3d.flags import add_crop, add_device, add_fps, add_precision, add_short_side, add_weights
from i3d.runtime import Placement, Precision, prepare
from i3d.train.clips import BROKEN_POLICIES, ValidationClips, index_videos
from i3d.train.datasets import DATASET_FORMATS, read_classes, read_video_list
from i3d.train.distributed import World
from i3d.train.export import read_class_names, read_model_input
from i3d.train.validation import ClipValidation, ClipValidationResult
from i3d.video.presets import Preprocess
from i3d.video.transforms import CROP_COUNTS
from i3d.weights import inception_i3d

__all__ = ["evaluate_accuracy", "add_accuracy_arguments", "run_accuracy"]


# Used where neither a flag nor the model file says (a model from before the
# input was saved with it, or not from i3d train): Kinetics' clips.
_FALLBACK = {"clip_frames": 64, "fps": 25.0, "short_side": 256, "crop": 224}
_FLAG = {"clip_frames": "--clip-frames", "fps": "--fps", "short_side": "--short-side", "crop": "--crop"}


def _show(value: float | None) -> str:
    return "the source's rate" if value is None else f"{value:g}"


def _settings(
    weights: str | os.PathLike[str], given: dict[str, Any], warn: Callable[[str], None]
) -> tuple[str | None, dict[str, Any]]:
    """The clip settings: those given, else the model's saved ones (:func:`read_model_input`), else
    :data:`_FALLBACK`; a warning says which given ones differ from the model's, or that it has none."""
    saved = read_model_input(weights)
    if saved is None:
        defaulted = [f"{_FLAG[k]} {v:g}" for k, v in _FALLBACK.items() if given[k] is None]
        if defaulted:
            warn(f"{weights}: no clip settings saved with the model; using {', '.join(defaulted)}")
        return None, {k: _FALLBACK[k] if v is None else v for k, v in given.items()}
    own = saved.to_json()
    changed = [f"{_FLAG[k]} {v:g} (the model's: {_show(own[k])})" for k, v in given.items() if v not in (None, own[k])]
    if changed:
        warn(f"{weights}: overriding the clip settings saved with the model: {', '.join(changed)}")
    return saved.preprocess.modality, {k: own[k] if v is None else v for k, v in given.items()}


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
    modality, settings = _settings(weights, given, warn)
    model = inception_i3d(weights=weights)
    names = read_class_names(weights) or (list(classes) if classes is not None else None)
    videos = read_video_list(format, root, listing, names)
    if videos.num_classes != model.num_classes:
        raise I3DError(
            f"{weights}: has {model.num_classes} classes and no names for them; the list has {videos.num_classes}"
        )
    modality = modality or ("rgb" if model.in_channels == 3 else "flow")
    preprocess = Preprocess(modality, settings["fps"], settings["short_side"], settings["crop"])
    if preprocess.crop > preprocess.resize_short_side:
        raise I3DError(f"--crop {preprocess.crop} is larger than --short-side {preprocess.resize_short_side}")
    indexed = index_videos(
        videos.videos, preprocess, source_fps=frame_fps, on_broken=on_broken, what="evaluation", warn=warn
    )
    clips = ValidationClips(
        indexed, videos, preprocess, settings["clip_frames"], frame_fps, val_clips=val_clips, crops=crops
    )
    placement = Placement.resolve(device, precision)
    model = prepare(model, placement.device, precision)
    return ClipValidation(clips, workers, average)(model, device=placement.device, precision=precision, world=World())


def add_accuracy_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``i3d eval accuracy``."""
    add_weights(p.add_argument, required=True, metavar="FILE", help="the model, e.g. a run's model.safetensors")
    p.add_argument("--format", choices=DATASET_FORMATS[1:], default="csv", help="list layout (default: csv)")
    p.add_argument("--root", required=True, type=Path, metavar="DIR", help="folder of the videos")
    p.add_argument("--csv", type=Path, metavar="FILE", help="the list (a split file for --format folders)")
    p.add_argument("--classes", type=Path, metavar="FILE", help="class names for a model file that has none")
    # Clip settings: the model's own unless given (a warning states each override).
    own = "default: the model's (saved by i3d train), else"
    p.add_argument("--clip-frames", type=positive_int, metavar="N", help=f"frames per clip ({own} 64)")
    p.add_argument("--val-clips", "--clips", type=positive_int, default=3, metavar="N", help="clips per video (3)")
    p.add_argument("--crops", type=int, choices=CROP_COUNTS, default=1, help="crops of every clip, 1, 3, 5 or 10 (1)")
    p.add_argument("--average", choices=("score", "prob"), default="score", help="average logits or probabilities")
    add_fps(p.add_argument, help=f"frames per second of the clips ({own} 25)")
    add_short_side(p.add_argument, metavar="PX", help=f"resize before cropping ({own} 256)")
    add_crop(p.add_argument, metavar="PX", help=f"centre crop ({own} 224)")
    p.add_argument("--frame-fps", type=positive_float, default=25.0, help="rate of frame folders (25)")
    add_device(p.add_argument, help="torch device (default: CUDA if available, else cpu)")
    add_precision(p.add_argument, default="fp32", help="inference precision (fp32)")
    p.add_argument("--workers", type=natural_int, default=0, metavar="N", help="loader processes (0)")
    p.add_argument("--on-broken", choices=BROKEN_POLICIES, default="error", help="unreadable videos (error)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def run_accuracy(args: argparse.Namespace) -> int:
    """Run ``i3d eval accuracy``; see :func:`add_accuracy_arguments`."""
    try:
        result = evaluate_accuracy(
            args.weights,
            args.format,
            args.root,
            args.csv,
            classes=read_classes(args.classes) if args.classes else None,
            clip_frames=args.clip_frames,
            val_clips=args.val_clips,
            fps=args.fps,
            short_side=args.short_side,
            crop=args.crop,
            frame_fps=args.frame_fps,
            device=args.device,
            precision=args.precision,
            workers=args.workers,
            on_broken=args.on_broken,
            crops=args.crops,
            average=args.average,
        )
    except (I3DError, ValueError, OSError) as err:
        console.error(err)
        return 1
    if args.json:
        console.write_json(result.to_json())
    else:
        print(result.summary())
    return 0
