"""The flags of the benchmarks that time one clip through the network,
defined once: the clip's length and frame size, the rounds, the threads.

    parser = argparse.ArgumentParser(...)
    add_clip_flags(parser, repeats=3, threads=2)
    args = parser.parse_args()
    set_threads(args)
"""

from __future__ import annotations

import argparse

import torch

CLIP_FRAMES = 64  # the clip: 1x3x64x224x224
CLIP_SIZE = 224


def add_clip_flags(parser: argparse.ArgumentParser, *, repeats: int = 3, threads: int | None = 2) -> None:
    """``--frames``, ``--size``, ``--repeats`` and ``--threads`` (``threads=None``: torch's own choice)."""
    parser.add_argument("--frames", type=int, default=CLIP_FRAMES, help=f"clip length (default: {CLIP_FRAMES})")
    parser.add_argument("--size", type=int, default=CLIP_SIZE, help=f"frame side in pixels (default: {CLIP_SIZE})")
    parser.add_argument(
        "--repeats", type=int, default=repeats, help=f"rounds; each case keeps its best (default: {repeats})"
    )
    default = "torch's choice" if threads is None else threads
    parser.add_argument(
        "--threads", type=int, default=threads, help=f"threads of torch and of every other runtime (default: {default})"
    )


def set_threads(args: argparse.Namespace) -> None:
    """Hold torch to ``--threads``, where given."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
