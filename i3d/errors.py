"""Exceptions with one-line messages that name the file and the cause.

Every error a user can trigger with bad input derives from :class:`I3DError`,
so a batch command can catch it, print ``str(err)`` and go on with the next
input.
"""

from __future__ import annotations

import os
import stat


class I3DError(Exception):
    """Base class: ``str(err)`` is a complete one-line message."""


class InputError(I3DError):
    """An input file (video, frame folder, array, CSV, ...) is unusable.

    The message reads ``"<path>: <cause>"``.
    """

    def __init__(self, path: str | os.PathLike[str], cause: str) -> None:
        self.path = os.fspath(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class VideoError(InputError):
    """A video, frame folder or frame array cannot be decoded as asked."""


class WeightsError(I3DError):
    """A checkpoint cannot be found, downloaded, verified or loaded."""


class CheckpointError(InputError):
    """A checkpoint file is malformed (bad index, crc mismatch, truncation, ...)."""


# Values echoed from files (ids, tokens, class lines) are cut to this many
# characters, so that a malformed file cannot flood the terminal: a 5 MB "id"
# becomes one readable line.
SHOWN_CHARS = 80


def shorten(text: object, limit: int = SHOWN_CHARS) -> str:
    """``str(text)``, cut to ``limit`` characters with ``...`` and its full length when longer.

    For error messages that echo a value read from a file::

        >>> shorten("x" * 1000, 10)
        'xxxxxxx... (1000 characters)'
    """
    text = str(text)
    if len(text) <= limit:
        return text
    ellipsis = "..."
    return f"{text[: max(limit - len(ellipsis), 0)]}{ellipsis} ({len(text)} characters)"


def check_regular_file(path: str | os.PathLike[str]) -> None:
    """Raise :class:`InputError` when ``path`` exists but is a FIFO, socket or device.

    Reading one of those can block forever (a FIFO with no writer) or never
    end (``/dev/zero``), so files named by the user are refused before they
    are opened. A missing file is left to the reader, whose ``open`` names the
    cause; folders are the caller's business.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return
    kinds = (
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    )
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    raise InputError(path, f"is {kind}, not a regular file")
