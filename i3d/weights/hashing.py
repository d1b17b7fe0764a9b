"""File digests: sha256, and git blob ids (what upstream trees publish)."""

from __future__ import annotations

import hashlib
import os

READ_BLOCK = 1 << 20  # bytes hashed per read


def _digest(path: str | os.PathLike[str], h: hashlib._Hash) -> str:
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            h.update(block)
    return h.hexdigest()


def git_blob_sha1(path: str | os.PathLike[str]) -> str:
    """The git blob id of a file: ``sha1(b"blob <size>\\0" + data)``.

    ``git hash-object FILE`` prints the same id.
    """
    return _digest(path, hashlib.sha1(b"blob %d\0" % os.path.getsize(path)))


def sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file, in hex (``sha256sum FILE``)."""
    return _digest(path, hashlib.sha256())
