"""``argparse`` types shared by the subcommands' parsers: numbers, files read and written, devices.

Each raises :class:`argparse.ArgumentTypeError`, which argparse reports as a
usage error (exit status 2) naming the flag. None imports anything heavy at
module import, so that ``i3d --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import TYPE_CHECKING

from i3d.errors import I3DError, check_regular_file

if TYPE_CHECKING:
    import torch

__all__ = [
    "positive_int",
    "natural_int",
    "positive_float",
    "finite_float",
    "frame_rate",
    "shard_spec",
    "regular_file",
    "output_file",
    "device",
]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not >= 1")
    return value


def natural_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not >= 0")
    return value


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} is not a finite number > 0")
    return value


def finite_float(text: str) -> float:
    """A finite number (not ``nan`` or ``inf``, which ``float`` accepts)."""
    value = _float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def frame_rate(text: str) -> float:
    """A frame rate: a number > 0 and at most :data:`i3d.video.timing.MAX_FPS`."""
    from i3d.video.timing import MAX_FPS

    value = positive_float(text)
    if value > MAX_FPS:
        raise argparse.ArgumentTypeError(f"{value:g} frames per second is more than the {MAX_FPS} allowed")
    return value


def shard_spec(text: str) -> tuple[int, int]:
    """``I/N``: part ``I`` (0-based) of ``N``, as ``(I, N)``."""
    try:
        index, count = (int(v) for v in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} does not look like I/N") from None
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"{text}: need 0 <= I < N")
    return index, count


def regular_file(text: str) -> Path:
    """A file to read: refused when it is a FIFO, socket or device, which could block forever.

    A missing file passes: the reader's own error names it, as for any file
    that cannot be opened.
    """
    try:
        check_regular_file(text)
    except I3DError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return Path(text)


def output_file(text: str) -> Path:
    """A file to write, checked before any work (:func:`i3d.atomic.check_output_file`):
    a regular file or a new name in an existing, writable folder; a device
    node, FIFO, socket, folder or symbolic link is refused."""
    from i3d.atomic import check_output_file

    try:
        return check_output_file(text)
    except I3DError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def device(text: str) -> torch.device:
    """A torch device this process can use (:func:`i3d.runtime.resolve_device`), e.g. ``cpu``, ``cuda:1``."""
    from i3d.runtime import resolve_device  # imports torch: only when the flag is given

    try:
        return resolve_device(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
