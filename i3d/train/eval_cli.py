"""``i3d eval accuracy``: a thin layer over :func:`i3d.train.evaluate.evaluate_accuracy`.

``add_accuracy_arguments(parser)`` / ``run_accuracy(args) -> int`` are wired
into ``i3d.cli``. Errors are one line on stderr (exit status 1); the result
goes to stdout, as text or (``--json``) one JSON object.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from i3d import console
from i3d.argtypes import natural_int, positive_float, positive_int
from i3d.choices import CROP_COUNTS
from i3d.errors import I3DError
from i3d.flags import add_crop, add_device, add_fps, add_precision, add_short_side, add_weights, overrides
from i3d.train.choices import BROKEN_POLICIES, DATASET_FORMATS

__all__ = ["add_accuracy_arguments", "run_accuracy"]


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
    # Imported here, not at the top, so that ``i3d eval accuracy --help`` imports no torch.
    from i3d.train.datasets import read_classes
    from i3d.train.evaluate import evaluate_accuracy

    try:
        result = evaluate_accuracy(
            args.weights,
            args.format,
            args.root,
            args.csv,
            classes=read_classes(args.classes) if args.classes else None,
            clip_frames=args.clip_frames,
            val_clips=args.val_clips,
            **overrides(args),
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
