"""Flags that several commands share, each defined once: ``--device``, ``--precision``, ``--backend``, ``--weights``,
``--quiet``, the preprocessing overrides ``--fps``, ``--short-side``, ``--crop``, and the inputs of predict and extract.

Each ``add_*`` takes the function that adds a flag: a parser's (or group's)
``add_argument``, or a command's own wrapper of it (``i3d train`` maps every
flag to a config setting), and the keyword arguments in which that command's
flag differs (its help, its default). The flag's name and type live here.

``i3d fvd`` still defines its own; its flags move here when the FVD work
merges. Nothing here imports torch at module import, so that ``--help``
stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from i3d.argtypes import device, frame_rate, positive_int
from i3d.choices import BACKENDS, DEFAULT_BACKEND

__all__ = [
    "add_inputs",
    "add_device",
    "add_precision",
    "add_backend",
    "add_weights",
    "add_flow_weights",
    "add_quiet",
    "add_fps",
    "add_short_side",
    "add_crop",
    "add_overrides",
    "stream_weights",
    "prefetch_streams",
]

AddArgument = Callable[..., Any]

# The choices of --precision: i3d.runtime.PRECISIONS, written here so that
# a parser can be built without importing torch (tests check they agree).
PRECISIONS = ("fp32", "tf32", "bf16", "fp16")

DEVICE_HELP = "torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)"
PRECISION_HELP = "fp32: exact, DeepMind's numbers (default); tf32, bf16, fp16: faster on GPUs, ~1e-3 relative error"
BACKEND_HELP = (
    f"what runs the network (default: {DEFAULT_BACKEND}): torch, or openvino on the CPU in fp32 or bf16 "
    '(pip install "i3d[openvino]"; results agree within float rounding); openvino runs whole clips; longer '
    "inputs are cut into chunks in torch"
)
QUIET_HELP = (
    "no progress (frames done, frames/s, ETA: a status line on a terminal, a plain line every 30 s "
    "otherwise); errors and the summary are still printed"
)


def add_inputs(p: argparse.ArgumentParser, dest: str) -> None:
    """The ``INPUT`` arguments of an inference command (predict, extract), stored as ``dest``."""
    p.add_argument(
        dest,
        nargs="+",
        metavar="INPUT",
        help="video files, frame folders, DeepMind .npy arrays, folders (searched recursively), .txt lists of "
        "paths (one per line) or glob patterns",
    )


def add_device(add: AddArgument, help: str = DEVICE_HELP, **kwargs: Any) -> None:
    """``--device``: a torch device this process can use, checked when parsed (:func:`i3d.argtypes.device`)."""
    add("--device", type=device, help=help, **kwargs)


def add_precision(add: AddArgument, help: str = PRECISION_HELP, **kwargs: Any) -> None:
    """``--precision``: one of :data:`PRECISIONS` (no default here: inference commands give ``"fp32"``, train
    its config's)."""
    add("--precision", choices=PRECISIONS, help=help, **kwargs)


def add_backend(add: AddArgument, help: str = BACKEND_HELP, **kwargs: Any) -> None:
    """``--backend``: one of :data:`i3d.choices.BACKENDS`, checked against the device and precision when the
    network is placed (:class:`i3d.runtime.Placement`)."""
    add("--backend", choices=BACKENDS, default=DEFAULT_BACKEND, help=help, **kwargs)


def add_weights(add: AddArgument, help: str, **kwargs: Any) -> None:
    """``--weights``: a registry name or a checkpoint file."""
    add("--weights", help=help, **kwargs)


def add_flow_weights(add: AddArgument) -> None:
    """``--flow-weights``: the flow network's weights when both streams run."""
    add(
        "--flow-weights",
        default=None,
        help="the flow network's weights when both streams run: registry name or path (default: flow_imagenet)",
    )


def add_quiet(add: AddArgument, help: str = QUIET_HELP) -> None:
    """``--quiet``: no progress lines."""
    add("--quiet", action="store_true", help=help)


def add_fps(add: AddArgument, help: str, **kwargs: Any) -> None:
    """``--fps``: the rate videos are resampled to (:func:`i3d.argtypes.frame_rate`)."""
    add("--fps", type=frame_rate, help=help, **kwargs)


def add_short_side(add: AddArgument, help: str, **kwargs: Any) -> None:
    """``--short-side``: frames are resized so that their short side has this many pixels."""
    add("--short-side", type=positive_int, help=help, **kwargs)


def add_crop(add: AddArgument, help: str, **kwargs: Any) -> None:
    """``--crop``: side of the square centre crop."""
    add("--crop", type=positive_int, help=help, **kwargs)


def add_overrides(p: argparse.ArgumentParser) -> None:
    """``--fps``, ``--short-side``, ``--crop`` of an inference command: the weights' preprocessing unless given."""
    add_fps(
        p.add_argument,
        default=None,
        help="resample videos to this rate instead of the weights' (e.g. 10 or 15 to save time; features then "
        "cover more seconds per row and differ from DeepMind's)",
    )
    add_short_side(
        p.add_argument,
        default=None,
        help="resize frames so that their short side has this many pixels instead of the weights' (256)",
    )
    add_crop(
        p.add_argument,
        default=None,
        help="side of the centre crop instead of the weights' (224); any value changes the results",
    )


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The values of `--fps`, `--short-side` and `--crop` (:func:`add_overrides`, or :func:`add_fps`,
    :func:`add_short_side` and :func:`add_crop` with help of its own) as the Python API's keywords."""
    return {"fps": args.fps, "short_side": args.short_side, "crop": args.crop}


def add_stream_weights(p: argparse.ArgumentParser) -> None:
    """``--weights`` and ``--flow-weights`` of an inference command (predict, extract)."""
    add_weights(
        p.add_argument,
        help="weights of the network that runs: a registry name (see `i3d weights list`) or a .pt/.safetensors "
        "path (default: rgb_imagenet; with --stream flow, flow_imagenet)",
    )
    add_flow_weights(p.add_argument)


def stream_weights(args: argparse.Namespace) -> tuple[str, str]:
    """``(rgb, flow)`` weights; ``--stream flow --weights X`` means that X is
    the flow network."""
    from i3d.weights import DEFAULT_FLOW, DEFAULT_RGB

    if args.stream == "flow":
        return DEFAULT_RGB, args.flow_weights or args.weights or DEFAULT_FLOW
    return args.weights or DEFAULT_RGB, args.flow_weights or DEFAULT_FLOW


def prefetch_streams(args: argparse.Namespace, streams: tuple[str, ...]) -> None:
    """Fetch the registry weights of ``streams`` before any work: one error
    lists every missing file and names the flag that chose each.

    Raises:
        WeightsError: as :func:`i3d.weights.prefetch`.
    """
    import sys

    from i3d.weights import prefetch

    rgb, flow = stream_weights(args)
    flags = {}
    if "rgb" in streams:
        flags[rgb] = "--weights"
    if "flow" in streams:
        flags.setdefault(flow, "--flow-weights")  # with --stream flow, --weights works too
    prefetch(flags, progress=sys.stderr.isatty(), flags=flags)
