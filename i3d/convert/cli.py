"""``i3d convert CKPT OUT``: a thin layer over :func:`i3d.convert.deepmind.convert_checkpoint`
(DeepMind's TensorFlow checkpoints) and :mod:`i3d.weights` (``.pt`` and
``.safetensors`` files, read without running code and written again).

``add_convert_arguments(parser)`` / ``run_convert(args) -> int`` are wired
into ``i3d.cli``.  An unusable checkpoint prints its one-line error to stderr
and gives exit status 1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from i3d import console
from i3d.argtypes import output_file
from i3d.errors import I3DError


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``i3d convert``."""
    parser.add_argument(
        "checkpoint",
        metavar="CKPT",
        help="TensorFlow checkpoint prefix (path/to/model.ckpt) or its .index file (the .data-* files sit beside "
        "it), or a .pt/.safetensors file to convert between the two",
    )
    parser.add_argument(
        "output",
        metavar="OUT",
        nargs="?",
        type=output_file,
        help="converted weights to write: a .safetensors or .pt file",
    )
    parser.add_argument(
        "--scope",
        metavar="SCOPE",
        help="convert the model under this variable scope (e.g. RGB or Flow) when the checkpoint holds several",
    )
    parser.add_argument(
        "--list", action="store_true", help="print every variable's name, dtype and shape instead of converting"
    )


def run_convert(args: argparse.Namespace) -> int:
    """Run ``i3d convert``; returns the exit status."""
    # Imported here, not at the top, so that ``i3d convert --help`` needs neither numpy nor torch.
    from i3d.convert.deepmind import convert_checkpoint
    from i3d.convert.tf_checkpoint import CheckpointReader

    if args.output is None and not args.list:
        console.error("OUT is required unless --list is given")
        return 2
    try:
        if args.checkpoint.endswith((".pt", ".pth", ".safetensors")):
            if args.scope:
                console.error("--scope applies to TensorFlow checkpoints only")
                return 2
            return _resave(args.checkpoint, args.output, args.list)
        if args.list:
            for name, (dtype, shape) in CheckpointReader(args.checkpoint).variables().items():
                print(f"{name}\t{dtype}\t{list(shape)}")
            return 0
        report = convert_checkpoint(args.checkpoint, args.output, scope=args.scope)
    except I3DError as err:
        console.error(err)
        return 1
    scope = f"scope {report.scope!r}, " if report.scope else ""
    print(
        f"{report.destination}: {report.tensors} tensors ({scope}{report.in_channels} input channels, "
        f"{report.num_classes} classes); ignored {len(report.ignored)} non-model variables"
    )
    return 0


def _resave(source: str, output: Path | None, list_only: bool) -> int:
    """``.pt`` <-> ``.safetensors`` through the safe loader, or list its tensors."""
    from i3d.convert.state_file import load_state_dict_file, save_state_dict

    state = load_state_dict_file(source)
    if list_only:
        for name, tensor in state.items():
            print(f"{name}\t{str(tensor.dtype).removeprefix('torch.')}\t{list(tensor.shape)}")
        return 0
    assert output is not None  # run_convert checked
    save_state_dict(state, output)
    print(f"{output}: {len(state)} tensors")
    return 0
