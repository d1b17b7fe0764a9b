"""``i3d eval classify``, ``i3d eval localize`` and ``i3d eval timeline``: a thin layer over :mod:`i3d.charades.metrics`.

Each command is a pair ``add_*_arguments(parser)`` / ``run_*(args) -> int``
that ``i3d.cli`` wires into its subcommands. Warnings about the submission
(missing videos, unknown ids, 0-based frames) go to stderr as
``i3d eval TASK: warning: ...`` lines; an unusable input prints its one-line
error to stderr and gives exit status 1.

The flags need nothing heavy: numpy and the metrics are imported by the
``run_*`` functions, so that ``i3d eval classify --help`` is instant.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from i3d import console
from i3d.argtypes import output_file, positive_int, regular_file
from i3d.errors import I3DError

if TYPE_CHECKING:
    from i3d.charades.metrics import EvalResult

# The official localization evaluation scores 25 frames per video
# (i3d.charades.metrics.LOCALIZATION_FRAMES, which a test checks equal).
_LOCALIZATION_FRAMES = 25


def _add_common(parser: argparse.ArgumentParser, pred_help: str) -> None:
    parser.add_argument(
        "--gt", required=True, type=regular_file, metavar="CSV", help="ground truth, e.g. Charades_v1_test.csv"
    )
    parser.add_argument("--pred", required=True, type=regular_file, metavar="FILE", help=pred_help)
    parser.add_argument(
        "--classes",
        type=regular_file,
        metavar="FILE",
        help="Charades_v1_classes.txt: names the classes in the table (its line count sets the number of classes)",
    )


def _add_eval(parser: argparse.ArgumentParser, pred_help: str) -> None:
    _add_common(parser, pred_help)
    parser.add_argument(
        "--json", action="store_true", help='print {"map", "wap", "classes", "per_class"} as JSON instead of a table'
    )
    parser.add_argument(
        "--plot", metavar="PNG", type=output_file, help="also write a bar chart of the per-class APs to this file"
    )


def add_classify_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``i3d eval classify``."""
    _add_eval(parser, "classification submission: one line 'id s1 ... s157' per video")


def add_localize_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``i3d eval localize``."""
    _add_eval(parser, f"localization submission: lines 'id j s1 ... s157', j = 1..{_LOCALIZATION_FRAMES} per video")


def add_timeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``i3d eval timeline``."""
    _add_common(parser, f"localization submission: lines 'id j s1 ... s157', j = 1..{_LOCALIZATION_FRAMES}")
    parser.add_argument("--video", required=True, metavar="ID", help="the video to plot")
    parser.add_argument("--out", type=output_file, required=True, metavar="PNG", help="the PNG file to write")
    parser.add_argument(
        "--top", type=positive_int, default=5, metavar="K", help="plot the K best-scoring classes (default 5)"
    )


def _print_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        console.warning(w.message)


def _class_names(args: argparse.Namespace) -> list[str] | None:
    from i3d.charades.annotations import read_classes

    return [c.name for c in read_classes(args.classes)] if args.classes else None


def _run_eval(args: argparse.Namespace, evaluate: Callable[..., EvalResult], title: str) -> int:
    from i3d.charades.annotations import NUM_CLASSES

    try:
        names = _class_names(args)
        num_classes = len(names) if names is not None else NUM_CLASSES
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = evaluate(args.gt, args.pred, num_classes)
        _print_warnings(caught)
    except (I3DError, OSError) as err:
        console.error(err)
        return 1
    # The numbers first: a plot that fails (no matplotlib, a folder that is
    # not there) must not lose an evaluation that may have taken a while.
    if args.json:
        console.write_json(result.to_json())
    else:
        print(format_result(result, names, title), flush=True)
    if args.plot:
        from i3d.charades.plots import plot_per_class_ap

        try:
            plot_per_class_ap(args.plot, result, names, title=title)
        except (I3DError, OSError) as err:
            console.error(err)
            return 1
    return 0


def format_result(result: EvalResult, class_names: list[str] | None = None, title: str = "") -> str:
    """The plain-text report: mAP, wAP, how many classes were averaged, then one line per class."""
    heading = f"{title} " if title else ""
    lines = [
        f"{heading}mAP: {result.map:.6f}",
        f"{heading}wAP: {result.wap:.6f} (weighted by the number of positives of each class)",
        f"classes averaged: {result.classes} of {len(result.per_class)}",
    ]
    if result.excluded:
        lines.append("left out, no positives: " + " ".join(f"c{c:03d}" for c in result.excluded))
    lines.append("")
    lines.append(f"{'class':<6} {'AP':>8} {'positives':>9}" + ("  name" if class_names else ""))
    for c, (ap, positives) in enumerate(zip(result.per_class, result.positives)):
        shown = f"{ap:8.4f}" if ap is not None else f"{'-':>8}"
        name = f"  {class_names[c]}" if class_names else ""
        lines.append(f"c{c:03d}   {shown} {positives:>9}{name}")
    return "\n".join(lines)


def run_classify(args: argparse.Namespace) -> int:
    """``i3d eval classify``: video-level mAP as ``Charades_v1_classify.m``."""
    from i3d.charades.metrics import evaluate_classification_file

    return _run_eval(args, evaluate_classification_file, "classification")


def run_localize(args: argparse.Namespace) -> int:
    """``i3d eval localize``: per-frame mAP as ``Charades_v1_localize.m``."""
    from i3d.charades.metrics import evaluate_localization_file

    return _run_eval(args, evaluate_localization_file, "localization")


def run_timeline(args: argparse.Namespace) -> int:
    """``i3d eval timeline``: PNG of one video's ground truth against its localization scores."""
    import numpy as np

    from i3d.charades.annotations import NUM_CLASSES, read_csv, validate_video_id
    from i3d.charades.plots import plot_timeline
    from i3d.charades.submission import LOCALIZATION_FRAMES, read_localization_submission

    try:
        video_id = validate_video_id(args.video, "--video")
        names = _class_names(args)
        num_classes = len(names) if names is not None else NUM_CLASSES
        videos = {v.id: v for v in read_csv(args.gt, num_classes=num_classes)}
        if video_id not in videos:
            raise I3DError(f"{args.gt}: no video {video_id}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            predictions = read_localization_submission(args.pred, num_classes)
        _print_warnings(caught)
        frames = [predictions.get((video_id, j)) for j in range(1, LOCALIZATION_FRAMES + 1)]
        if any(f is None for f in frames):
            raise I3DError(f"{args.pred}: video {video_id} lacks some of frames 1..{LOCALIZATION_FRAMES}")
        plot_timeline(args.out, videos[video_id], np.stack(frames, axis=1), names, top=args.top)
    except (I3DError, OSError) as err:
        console.error(err)
        return 1
    return 0
