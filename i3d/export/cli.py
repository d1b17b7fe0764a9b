"""``i3d export --weights W --format {onnx,openvino,torchscript} --out FILE``:
a thin layer over :func:`i3d.export.export_weights`. ``add_export_arguments``
/ ``run_export`` are wired into ``i3d.cli``; a failure prints one line and
gives exit status 1.
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

from i3d import console
from i3d.argtypes import positive_int
from i3d.errors import I3DError
from i3d.export.formats import FORMATS
from i3d.flags import add_weights


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``i3d export``."""
    add_weights(
        parser.add_argument,
        default="rgb_imagenet",
        help="registry name (see `i3d weights list`) or .pt/.safetensors path (default: rgb_imagenet)",
    )
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="file format (default: onnx)")
    parser.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="file to write (.onnx, .xml with its .bin beside it for OpenVINO, .pt for TorchScript)",
    )
    parser.add_argument(
        "--output",
        default="logits",
        metavar="OUTPUT",
        help="what the file computes: logits (default), pooled (Mixed_5c after the head's average pool) or a "
        "trunk endpoint such as Mixed_4f",
    )
    parser.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="frame size H = W traced with (default: the weights' crop, 224); batch and clip length stay dynamic, "
        "and H, W too for endpoints, or from 193 pixels on for logits and pooled",
    )


def _check_out(path: Path) -> str | None:
    """Why ``path`` cannot be written, or None (checked before the minutes of exporting)."""
    if not path.parent.is_dir():
        return f"{path}: folder {path.parent} does not exist"
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mode):
        return f"{path}: exists and is not a regular file; give a new path or a regular file to replace"
    return None


def run_export(args: argparse.Namespace) -> int:
    """Run ``i3d export``; returns the exit status."""
    from i3d.export.writers import export_weights

    out = Path(args.out)
    outputs = [out, out.with_suffix(".bin")] if args.format == "openvino" else [out]  # the IR's weights beside it
    problem = next((p for p in map(_check_out, outputs) if p is not None), None)
    if problem is not None:
        console.error(problem)
        return 1
    try:
        checks = export_weights(args.weights, out, format=args.format, output=args.output, size=args.size)
    except I3DError as err:
        console.error(err)
        return 1
    print(f"{out}: {args.weights} as {args.format}, output {args.output}")
    for check in checks:
        print(f"  checked in {check.runtime} at {tuple(check.shape)}: {check.relative_error:.1e} relative to torch")
    if not checks:
        console.warning("onnxruntime is not installed: the file was not run (pip install onnxruntime)")
    return 0
