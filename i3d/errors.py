"""Exceptions with one-line messages that name the file and the cause.

Every error a user can trigger with bad input derives from :class:`I3DError`,
so a batch command can catch it, print ``str(err)`` and go on with the next
input.
"""

from __future__ import annotations

import os


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
