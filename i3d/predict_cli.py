"""``i3d predict``: classify videos with pretrained weights (:class:`i3d.predict.Classifier`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d import console
from i3d.argtypes import output_file, positive_int, regular_file
from i3d.errors import I3DError
from i3d.flags import (
    add_backend,
    add_device,
    add_inputs,
    add_overrides,
    add_precision,
    add_quiet,
    add_stream_weights,
    overrides,
    prefetch_streams,
    stream_weights,
)

__all__ = ["add_arguments", "run"]


def _add_flow_engine(p: argparse.ArgumentParser) -> None:
    from i3d.video.cli import add_flow_engine_argument

    add_flow_engine_argument(p)


def _add_views(p: argparse.ArgumentParser) -> None:
    """Multi-view testing: ``--clips``, ``--clip-len``, ``--crops``, ``--average``."""
    from i3d.choices import AVERAGES, CROP_COUNTS, DEFAULT_CLIP_LEN

    p.add_argument(
        "--clips",
        type=positive_int,
        default=None,
        metavar="K",
        help="score K windows of --clip-len frames evenly spaced over the video, the first at frame 0, the last "
        "ending at the last frame (default: the whole video as one view)",
    )
    p.add_argument(
        "--clip-len",
        type=positive_int,
        default=DEFAULT_CLIP_LEN,
        metavar="N",
        help=f"frames per window with --clips (default: {DEFAULT_CLIP_LEN})",
    )
    p.add_argument(
        "--crops",
        type=int,
        choices=CROP_COUNTS,
        default=1,
        help="crops of every frame, each a view: 1 centre (default), 3 along the long side, 5 corners and centre, "
        "10 those and their mirror images",
    )
    p.add_argument(
        "--average",
        choices=AVERAGES,
        default="score",
        help="average the views' logits (score, default) or their softmax probabilities (prob)",
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``i3d predict``."""
    from i3d.choices import DEFAULT_CHUNK_FRAMES

    add_inputs(p, "videos")
    add_stream_weights(p)
    p.add_argument(
        "--stream",
        choices=("rgb", "flow", "joint"),
        default="rgb",
        help="which network to run; joint adds RGB and flow logits (default: rgb)",
    )
    p.add_argument("--labels", type=regular_file, help="class names, one per line, overriding the weights' own")
    p.add_argument("--top", type=int, default=5, metavar="K", help="number of classes to print (default: 5)")
    p.add_argument("--json", action="store_true", help="print one JSON document: a list with one object per video")
    add_device(p.add_argument)
    add_precision(p.add_argument, default="fp32")
    add_backend(p.add_argument)
    p.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK_FRAMES,
        metavar="N",
        help=f"frames per network call; bounds memory, results do not depend on it (default: {DEFAULT_CHUNK_FRAMES})",
    )
    p.add_argument("--flow-dir", type=Path, help="folder caching computed flow frames, reused by later runs")
    _add_flow_engine(p)
    add_overrides(p)
    _add_views(p)
    add_quiet(p.add_argument)
    p.add_argument(
        "--out",
        type=output_file,
        default=None,
        metavar="FILE",
        help="also write the results to FILE: JSON lines (.jsonl, one object per video) or CSV (.csv, one row per "
        "video and class: video,rank,label,index,prob,logit)",
    )


def run(args: argparse.Namespace) -> int:
    """Run ``i3d predict``; see :func:`add_arguments`."""
    from i3d.predict import Classifier
    from i3d.video.listing import check_source, expand_inputs

    if args.top < 1 or args.chunk < 1:
        console.error("--top and --chunk must be >= 1")
        return 2
    if args.out is not None and args.out.suffix.lower() not in (".jsonl", ".csv"):
        console.error(f"--out {args.out}: the name must end in .jsonl or .csv")
        return 2
    try:
        videos = expand_inputs(args.videos, exclude=[args.flow_dir])
    except I3DError as err:
        console.error(str(err))
        return 1
    weights, flow_weights = stream_weights(args)
    try:
        prefetch_streams(args, {"rgb": ("rgb",), "flow": ("flow",), "joint": ("rgb", "flow")}[args.stream])
        classifier = Classifier(
            args.stream,
            rgb_weights=weights,
            flow_weights=flow_weights,
            labels=args.labels,
            device=args.device,
            precision=args.precision,
            backend=args.backend,
            chunk_frames=args.chunk,
            flow_dir=args.flow_dir,
            flow_engine=args.flow_engine,
            **overrides(args),
            clips=args.clips,
            clip_len=args.clip_len,
            crops=args.crops,
            average=args.average,
            progress=sys.stderr.isatty(),
        )
    except (I3DError, ValueError) as err:
        console.error(str(err))
        return 1
    from i3d.progress import Progress

    progress = Progress("i3d predict", len(videos), quiet=args.quiet)
    results, failed = [], 0
    if not args.json:
        print(f"  {'prob':>9}  {'logit':>9}  label")
    for video in videos:
        try:
            check_source(video)
            prediction = classifier.predict(video, top=args.top, progress=progress)
        except I3DError as err:
            progress.clear()
            console.error(str(err))
            failed += 1
            continue
        except (ValueError, RuntimeError, OSError, MemoryError) as err:  # e.g. out of memory: report, go on
            progress.clear()
            console.error(f"{video}: {type(err).__name__}: {err}")
            failed += 1
            continue
        progress.clear()
        results.append(prediction.to_json())
        if not args.json:
            print(prediction.video)
            for t in prediction.top:
                print(f"  {t.prob:9.6f}  {t.logit:9.4f}  {t.label}")
    if args.json:
        console.write_json(results, indent=1)
    if args.out is not None:
        try:
            _write_predictions(args.out, results)
        except I3DError as err:  # e.g. made a device node meanwhile (checked when parsed)
            console.error(str(err))
            return 1
        except OSError as err:
            console.error(f"{args.out}: cannot write ({err.strerror or err})")
            return 1
    return 1 if failed else 0


def _write_predictions(path: Path, results: list[dict]) -> None:
    """JSON lines or CSV by the extension, written atomically."""
    import csv

    from i3d.atomic import open_atomic

    with open_atomic(path) as f:
        if path.suffix.lower() == ".jsonl":
            for result in results:
                f.write(console.strict_json(result) + "\n")
            return
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video", "rank", "label", "index", "prob", "logit"])
        for result in results:
            for rank, top in enumerate(result["top"], 1):
                writer.writerow([result["video"], rank, top["label"], top["index"], top["prob"], top["logit"]])
