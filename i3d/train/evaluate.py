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
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from i3d.argtypes import natural_int, positive_float, positive_int
from i3d.errors import I3DError
from i3d.runtime import PRECISIONS, Precision, default_device, prepare
from i3d.train.clips import BROKEN_POLICIES, ValidationClips, index_videos
from i3d.train.datasets import DATASET_FORMATS, read_classes, read_video_list
from i3d.train.distributed import World
from i3d.train.export import read_class_names
from i3d.train.validation import ClipValidation, ClipValidationResult
from i3d.video.presets import Preprocess
from i3d.video.transforms import CROP_COUNTS
from i3d.weights import inception_i3d

__all__ = ["evaluate_accuracy", "add_accuracy_arguments", "run_accuracy"]


def evaluate_accuracy(
    weights: str | os.PathLike[str],
    format: str,
    root: str | os.PathLike[str],
    listing: str | os.PathLike[str] | None = None,
    *,
    classes: Sequence[str] | None = None,
    clip_frames: int = 64,
    val_clips: int = 3,
    fps: float = 25.0,
    short_side: int = 256,
    crop: int = 224,
    frame_fps: float = 25.0,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    workers: int = 0,
    on_broken: str = "error",
    crops: int = 1,
    average: str = "score",
) -> ClipValidationResult:
    """Score ``weights`` on a ``folders``/``csv``/``kinetics`` list; see the module docstring."""
    model = inception_i3d(weights=weights)
    names = read_class_names(weights) or (list(classes) if classes is not None else None)
    videos = read_video_list(format, root, listing, names)
    if videos.num_classes != model.num_classes:
        raise I3DError(
            f"{weights}: has {model.num_classes} classes and no names for them; the list has {videos.num_classes}"
        )
    preprocess = Preprocess("rgb" if model.in_channels == 3 else "flow", fps, short_side, crop)
    indexed = index_videos(videos.videos, preprocess, source_fps=frame_fps, on_broken=on_broken, what="evaluation")
    clips = ValidationClips(indexed, videos, preprocess, clip_frames, frame_fps, val_clips=val_clips, crops=crops)
    device = torch.device(device) if device is not None else default_device()
    model = prepare(model, device, precision)
    return ClipValidation(clips, workers, average)(model, device=device, precision=precision, world=World())


def add_accuracy_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``i3d eval accuracy``."""
    p.add_argument("--weights", required=True, metavar="FILE", help="the model, e.g. a run's model.safetensors")
    p.add_argument("--format", choices=DATASET_FORMATS[1:], default="csv", help="list layout (default: csv)")
    p.add_argument("--root", required=True, type=Path, metavar="DIR", help="folder of the videos")
    p.add_argument("--csv", type=Path, metavar="FILE", help="the list (a split file for --format folders)")
    p.add_argument("--classes", type=Path, metavar="FILE", help="class names for a model file that has none")
    p.add_argument("--clip-frames", type=positive_int, default=64, metavar="N", help="frames per clip (64)")
    p.add_argument("--val-clips", "--clips", type=positive_int, default=3, metavar="N", help="clips per video (3)")
    p.add_argument("--crops", type=int, choices=CROP_COUNTS, default=1, help="crops of every clip, 1, 3, 5 or 10 (1)")
    p.add_argument("--average", choices=("score", "prob"), default="score", help="average logits or probabilities")
    p.add_argument("--fps", type=positive_float, default=25.0, help="frames per second of the clips (25)")
    p.add_argument("--short-side", type=positive_int, default=256, metavar="PX", help="resize before cropping (256)")
    p.add_argument("--crop", type=positive_int, default=224, metavar="PX", help="centre crop (224)")
    p.add_argument("--frame-fps", type=positive_float, default=25.0, help="rate of frame folders (25)")
    p.add_argument("--device", help="torch device (default: CUDA if available, else cpu)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="inference precision (fp32)")
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
        print(f"i3d: error: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), allow_nan=False))
    else:
        print(result.summary())
    return 0
