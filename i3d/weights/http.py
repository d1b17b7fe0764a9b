"""Verified HTTP download with resume.

A download goes to ``<dest>.partial`` and resumes from there (an HTTP
``Range`` request) when a previous one was interrupted; only a file whose
git blob id matches is renamed to ``dest``, so ``dest`` is never partial
or corrupt.
"""

from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

from i3d import console
from i3d.atomic import check_replaceable
from i3d.errors import WeightsError
from i3d.progress import Progress
from i3d.weights.hashing import git_blob_sha1

if TYPE_CHECKING:
    from i3d.weights.sources import RemoteFile

__all__ = ["download", "DownloadError", "DOWNLOAD_BLOCK", "PARTIAL_SUFFIX"]

DOWNLOAD_BLOCK = 1 << 20  # bytes read per network call; also the progress step
DOWNLOAD_TIMEOUT_S = 60
PARTIAL_SUFFIX = ".partial"
_RANGE_NOT_SATISFIABLE = 416  # the partial file is already whole
_PARTIAL_CONTENT = 206


class DownloadError(WeightsError):
    """A file could not be fetched (network, server); ``dest`` is where it belongs."""

    def __init__(self, remote: RemoteFile, dest: Path, reason: str) -> None:
        self.remote = remote
        self.dest = dest
        self.reason = reason
        super().__init__(
            f"could not download {remote.url} ({reason}); to use it offline, place that file at {dest} "
            f"(git blob sha1 {remote.blob_sha1}, as `git hash-object FILE` prints it)"
        )


def download(remote: RemoteFile, dest: str | os.PathLike[str], *, progress: bool = True) -> Path:
    """Make ``dest`` a verified copy of ``remote``; return its path.

    A cached file is re-verified and used as is; one that does not verify is
    fetched again.

    Raises:
        DownloadError: the network or server failed (a later call resumes).
        WeightsError: the downloaded file has the wrong blob id (deleted).
    """
    dest = Path(dest)
    if dest.is_file():
        if git_blob_sha1(dest) == remote.blob_sha1:
            return dest
        check_replaceable(dest)  # a link is never replaced (nor unlinked)
        dest.unlink()  # corrupt or outdated: fetch again
    check_replaceable(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    try:
        _fetch(remote.url, partial, progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as err:
        raise DownloadError(remote, dest, _reason(err)) from None
    got = git_blob_sha1(partial)
    if got != remote.blob_sha1:
        partial.unlink()
        raise WeightsError(
            f"{remote.url}: downloaded file has git blob sha1 {got}, expected {remote.blob_sha1}; deleted it, try again"
        )
    check_replaceable(dest)  # made meanwhile?
    os.replace(partial, dest)
    return dest


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _fetch(url: str, partial: Path, progress: bool) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code != _RANGE_NOT_SATISFIABLE or not have:
            raise
        return
    with response:
        if have and response.status != _PARTIAL_CONTENT:
            have = 0  # the server ignored the range: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        desc = partial.name[: -len(PARTIAL_SUFFIX)]
        bar = Progress(console.current_command(), None, unit="bytes", quiet=not progress)
        bar.start(desc, total or 0, done=have)
        try:
            with open(partial, "ab" if have else "wb") as f:
                while block := response.read(DOWNLOAD_BLOCK):
                    f.write(block)
                    bar.advance(len(block))
        finally:
            bar.clear()
        if total is not None and partial.stat().st_size < total:
            raise OSError(f"connection closed after {partial.stat().st_size} of {total} bytes")
