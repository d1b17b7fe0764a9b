"""``i3d flow``: TV-L1 optical flow for videos, written as Charades-style JPEGs or ``.npy``.

A thin layer over :func:`i3d.video.inputs.compute_flow`; ``i3d.cli`` wires
:func:`add_flow_arguments` and :func:`run_flow` into its subcommands.
"""

from __future__ import annotations

import argparse
import errno
import os

from i3d import console
from i3d.argtypes import frame_rate, positive_int
from i3d.atomic import check_output_dir
from i3d.choices import DEFAULT_FLOW_ENGINE, FLOW_ENGINES, FLOW_FORMATS
from i3d.errors import I3DError
from i3d.progress import Progress
from i3d.video.listing import check_collisions, check_source, expand_inputs, output_names
from i3d.video.presets import CHARADES_FLOW, CHARADES_FPS, KINETICS_FLOW


def add_flow_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``i3d flow`` arguments to ``parser``."""
    parser.add_argument(
        "videos",
        nargs="+",
        metavar="INPUT",
        help="video files (anything FFmpeg decodes), RGB frame folders, folders (searched recursively), .txt lists "
        "of paths (one per line) or glob patterns",
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder: DIR/REL/NAME/NAME-000001x.jpg and ...y.jpg (jpg) or DIR/REL/NAME.npy, "
        "REL/NAME being the input's path relative to the deepest folder holding every input, video extension "
        "dropped (vids/cam1/a.mp4 and vids/cam2/a.mp4 give DIR/cam1/a and DIR/cam2/a); each with a record of its "
        "source (NAME.json, NAME.npy.json) that lets --flow-dir reuse it for that source",
    )
    parser.add_argument(
        "--format",
        choices=FLOW_FORMATS,
        default="jpg",
        help="jpg: Charades-style grayscale JPEGs, value 255*(f+20)/40; "
        "npy: float16 (T, H, W, 2) in pixels (default: jpg)",
    )
    add_flow_engine_argument(parser, "--engine")
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="TV-L1 worker processes on the CPU, one thread each (default: every available core); the torch "
        "engine on a GPU runs in this process",
    )
    parser.add_argument(
        "--fps",
        type=frame_rate,
        default=KINETICS_FLOW.fps,
        help=f"frame rate the video is resampled to before computing flow (default: {KINETICS_FLOW.fps:g}, Kinetics; "
        f"{CHARADES_FLOW.fps:g} for Charades, e.g. a flow cache for 'i3d train --flow-dir')",
    )
    parser.add_argument(
        "--short-side",
        type=positive_int,
        default=KINETICS_FLOW.resize_short_side,
        help="frames are resized so that their short side has this many pixels "
        f"(default: {KINETICS_FLOW.resize_short_side})",
    )
    parser.add_argument(
        "--source-fps",
        type=frame_rate,
        default=CHARADES_FPS,
        help=f"frame rate of RGB frame folders given as VIDEO (default: {CHARADES_FPS:g}, Charades)",
    )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress (frames done, frames/s, ETA: a status line on a terminal, a plain line every 30 s "
        "otherwise); errors are still printed",
    )


def add_flow_engine_argument(parser: argparse.ArgumentParser, flag: str = "--flow-engine") -> None:
    """The TV-L1 engine choice, shared by ``flow``, ``extract``, ``predict`` and ``train``."""
    parser.add_argument(
        flag,
        choices=FLOW_ENGINES,
        default=DEFAULT_FLOW_ENGINE,
        help="TV-L1 optical flow engine: torch (OpenCV's algorithm in PyTorch, batched, on the GPU if there is one) "
        f"or opencv (OpenCV's DualTVL1 on worker processes); same fields to rounding (default: {DEFAULT_FLOW_ENGINE}); "
        "cached flow made by the other engine is recomputed",
    )


def run_flow(args: argparse.Namespace) -> int:
    """Compute flow for every input; report failures on stderr, one line each, and go on.

    Before any work: the inputs are listed (:mod:`i3d.video.listing`), no
    two may share an output (checked case-insensitively), the output folder
    must be writable. A failure is one line naming the input: an unreadable
    video, a TV-L1 worker process that died (the next input gets a fresh
    pool), an output that cannot be written; a full disk stops the run.

    Returns:
        0 if every input succeeded, 1 otherwise.
    """
    from i3d.video.flow import FlowEngine  # torch and OpenCV: not for --help
    from i3d.video.inputs import compute_flow

    try:
        videos = expand_inputs(args.videos, exclude=[args.out])
        names = output_names(videos, keep_suffix=False)
        check_collisions(names)  # before any work: x/clip.mp4 and x/clip.mov would share x/clip
        out = check_output_dir(args.out)
    except I3DError as err:
        console.error(err)
        return 1
    failures = 0
    progress = Progress("i3d flow", len(videos), quiet=args.quiet)
    with FlowEngine(args.workers, engine=args.engine) as engine:
        for video in videos:
            folder, name = os.path.split(names[video])
            try:
                check_source(video)
                written = compute_flow(
                    video,
                    out / folder,
                    fps=args.fps,
                    short_side=args.short_side,
                    format=args.format,
                    engine=engine,
                    source_fps=args.source_fps,
                    name=name,
                    progress=progress,
                )
            except I3DError as err:
                progress.clear()
                console.error(err)
                failures += 1
                continue
            except OSError as err:
                progress.clear()
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    console.error(f"{out / names[video]}: no space left on device; free space and rerun")
                    return 1
                console.error(f"{video}: cannot write flow ({err.strerror or err})")
                failures += 1
                continue
            progress.clear()
            print(written)
    return 1 if failures else 0
