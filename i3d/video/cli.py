"""``i3d flow``: TV-L1 optical flow for videos, written as Charades-style JPEGs or ``.npy``.

A thin layer over :func:`i3d.video.inputs.compute_flow`; ``i3d.cli`` wires
:func:`add_flow_arguments` and :func:`run_flow` into its subcommands.
"""

from __future__ import annotations

import argparse

from i3d import console
from i3d.argtypes import positive_float, positive_int
from i3d.errors import I3DError, VideoError
from i3d.video.flow import FLOW_FORMATS, FlowEngine
from i3d.video.inputs import compute_flow, source_name
from i3d.video.presets import CHARADES_FLOW, KINETICS_FLOW
from i3d.video.readers import CHARADES_FPS


def add_flow_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``i3d flow`` arguments to ``parser``."""
    parser.add_argument(
        "videos", nargs="+", metavar="VIDEO", help="video files (anything FFmpeg decodes) or RGB frame folders"
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output folder: DIR/NAME/NAME-000001x.jpg and ...y.jpg (jpg) or DIR/NAME.npy, "
        "NAME being the video's file stem",
    )
    parser.add_argument(
        "--format",
        choices=FLOW_FORMATS,
        default="jpg",
        help="jpg: Charades-style grayscale JPEGs, value 255*(f+20)/40; "
        "npy: float16 (T, H, W, 2) in pixels (default: jpg)",
    )
    parser.add_argument(
        "--workers", type=positive_int, default=None, help="TV-L1 worker processes (default: every available core)"
    )
    parser.add_argument(
        "--fps",
        type=positive_float,
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
        type=positive_float,
        default=CHARADES_FPS,
        help=f"frame rate of RGB frame folders given as VIDEO (default: {CHARADES_FPS:g}, Charades)",
    )


def run_flow(args: argparse.Namespace) -> int:
    """Compute flow for every input; report failures on stderr, one line each, and go on.

    A failure is one line naming the input: an unreadable video, a name
    already used by an earlier input, a TV-L1 worker process that died (the
    next input gets a fresh pool), an output that cannot be written.

    Returns:
        0 if every input succeeded, 1 otherwise.
    """
    failures = 0
    first_input_of: dict[str, str] = {}
    with FlowEngine(args.workers) as engine:
        for video in args.videos:
            name = source_name(video)
            try:
                if name in first_input_of:
                    raise VideoError(video, f"output name {name!r} is already used by {first_input_of[name]}")
                first_input_of[name] = video
                out = compute_flow(
                    video,
                    args.out,
                    fps=args.fps,
                    short_side=args.short_side,
                    format=args.format,
                    engine=engine,
                    source_fps=args.source_fps,
                )
            except I3DError as err:
                console.error(err)
                failures += 1
                continue
            except OSError as err:
                console.error(f"{video}: cannot write flow ({err})")
                failures += 1
                continue
            print(out)
    return 1 if failures else 0
