"""``argparse`` types for numeric flags, shared by the subcommands' parsers.

Each raises :class:`argparse.ArgumentTypeError`, which argparse reports as a
usage error (exit status 2) naming the flag.
"""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "natural_int", "positive_float", "shard_spec"]


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


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{value} is not a finite number > 0")
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
