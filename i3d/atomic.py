"""Atomic file output: a temporary file in the same folder, then ``os.replace``.

Every file the package writes goes through here, so that a reader (or a
resumed run) never sees a half-written file: either the old content or the
new, whole. :func:`atomic_dir` does the same for a folder of files.

What an output may replace (:func:`check_output_file`): a regular file or
nothing. ``os.replace`` swaps the name itself, so a device node (``/dev/null``
given as ``--out``), a FIFO, a socket or a folder would otherwise be replaced
for everyone, and a symbolic link replaced while its target stays as it was.
Such an output is refused, in one line naming the path and what it is,
before anything is written. Symbolic links are refused rather than written
through: a link planted in an output folder would otherwise send a write
anywhere its owner can reach (the attack that the kernel's
``protected_symlinks`` guards against in ``/tmp``); give the target's own path
instead. Folders on the way to the output may be links.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from i3d.errors import I3DError

# Read and write for everyone the umask lets through, as open() would create it
# (tempfile.mkstemp would make it private to the owner).
_NEW_FILE_MODE = 0o666
_NAME_TRIES = 100


class OutputError(I3DError, OSError):
    """An output cannot be written: not a regular file, a missing or read-only folder.

    An :class:`OSError` too, so that every writer's handling of failed writes
    (a full disk, a read-only folder) covers it.
    """


_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def check_replaceable(path: str | os.PathLike[str], *, folder: bool = False) -> None:
    """Raise :class:`OutputError` unless ``path`` is missing or a regular file
    (with ``folder``: missing or a folder), never following a final link.

    For writers that rename a file into place themselves (downloads).
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({err.strerror or err})") from None
    if stat.S_ISLNK(mode):
        raise OutputError(
            f"{path}: is a symbolic link (to {os.readlink(path)}); outputs never write through links: "
            "give the target's own path"
        )
    if stat.S_ISDIR(mode) if folder else stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    wanted = "a folder" if folder else "a regular file"
    raise OutputError(f"{path}: is {kind}; an output replaces only {wanted} or makes a new one")


def check_output_file(path: str | os.PathLike[str]) -> Path:
    """Check, before any work, that an output file can be made at ``path``.

    ``path`` must be a regular file (replaced whole) or not exist yet, in an
    existing folder where files can be made; a device node, FIFO, socket,
    folder or symbolic link is refused (see the module docstring).

    Raises:
        OutputError: one line naming ``path`` and the cause.
    """
    path = Path(path)
    check_replaceable(path)
    folder = path.parent
    if not folder.is_dir():
        cause = "is not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"{path}: cannot write: its folder {folder} {cause}")
    try:
        fd, probe = _create_temporary(path)
    except OSError as err:
        raise OutputError(f"{path}: cannot write in {folder} ({err.strerror or err})") from None
    os.close(fd)
    probe.unlink()
    return path


def _create_temporary(path: Path) -> tuple[int, Path]:
    check_replaceable(path)
    for _ in range(_NAME_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _NEW_FILE_MODE), tmp
        except FileExistsError:
            continue
        except FileNotFoundError:
            raise OutputError(f"{path}: cannot write: its folder {path.parent} does not exist") from None
    raise FileExistsError(f"{path}: no free temporary name after {_NAME_TRIES} tries")


def remove_stale(path: str | os.PathLike[str]) -> None:
    """Delete the temporary files a killed writer of ``path`` left behind.

    Call it only where no other process writes ``path`` at the same time
    (for example, on the one shard that owns it).
    """
    path = Path(path)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike[str], *, fsync: bool = False) -> Iterator[Path]:
    """A temporary path next to ``path`` for writers that want a file name
    (``safetensors``, ``h5py``, ``np.save``); on success it replaces ``path``.

    With ``fsync`` the data reaches the disk before the rename, so that a
    power cut cannot leave the name pointing at an incomplete file.
    """
    path = Path(path)
    fd, tmp = _create_temporary(path)
    os.close(fd)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        check_replaceable(path)  # made meanwhile?
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def open_atomic(path: str | os.PathLike[str], binary: bool = False) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success it replaces ``path``.

    On an exception the temporary file is removed and ``path`` is untouched,
    so a reader never sees a half-written file.
    """
    fd, tmp = _create_temporary(Path(path))
    try:
        if binary:
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        with f:
            yield f
        check_replaceable(Path(path))  # made meanwhile?
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _create_temporary_dir(path: Path) -> Path:
    # ".tmpdir", not ".tmp": remove_stale() unlinks files and must not meet a folder.
    for _ in range(_NAME_TRIES):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmpdir")
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: no free temporary folder name after {_NAME_TRIES} tries")


@contextmanager
def atomic_dir(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary folder next to ``path`` to fill; on success it takes ``path``'s place.

    An existing folder at ``path`` is moved aside, the new one renamed into
    place, then the old one deleted: a reader sees the old folder, the new
    one, or (between the two renames) none, never a mix. If the new folder
    cannot be moved in, the old one is put back. On an exception the
    temporary folder is removed and ``path`` is untouched.
    """
    path = Path(path)
    check_replaceable(path, folder=True)
    tmp = _create_temporary_dir(path)
    try:
        yield tmp
        check_replaceable(path, folder=True)  # made meanwhile?
        if path.is_dir():
            old = path.with_name(f".{path.name}.{secrets.token_hex(6)}.old")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename in folder ``path`` durable (where the OS allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on folders; the rename is still atomic
    finally:
        os.close(fd)


class OutputLock:
    """An exclusive OS lock on ``path`` (``fcntl.flock`` on a hidden lock
    file next to it) held while ``path`` is being made.

    The kernel drops the lock when its process dies, however it dies, so a
    lock that cannot be taken always has a live owner, and the temporary
    files of an output whose lock is ours belong to a dead run
    (:func:`remove_stale` may delete them). The lock file is removed on
    :meth:`release`; :meth:`acquire` checks that the file it locked is still
    the one under the name, so that a run that opened it just before the
    removal retries instead of locking a removed file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        path = Path(path)
        self.path = path.with_name(f".{path.name}.lock")
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if free; ``False`` if another live process holds it."""
        import fcntl

        while True:
            # O_NOFOLLOW: a link planted under the lock's name is not followed (ELOOP).
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, _NEW_FILE_MODE)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fd = fd
                return True
            os.close(fd)  # removed by its previous owner meanwhile: lock the new one

    def clear_stale(self) -> None:
        """Remove the lock file of a dead owner: a run killed between
        finishing ``path`` and :meth:`release` leaves it, and a resume skips
        a complete output without taking its lock. A live owner's lock (and
        one that cannot be opened, such as a planted link) stays.
        """
        if not os.path.lexists(self.path):
            return
        try:
            if self.acquire():
                self.release()
        except OSError:
            pass  # not ours to remove: the next run that makes ``path`` reports it

    def release(self) -> None:
        if self._fd is not None:
            # Removed while still locked: whoever opens the name next gets a new file.
            Path(self.path).unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create the output folder ``path`` if needed and check, before any
    work, that files can be made in it.

    Raises:
        OutputError: one line: not a folder, cannot be created, read-only.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: is not a folder (the output must be a folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        # An unnamed file (O_TMPFILE on Linux): a kill at any moment leaves
        # nothing behind; elsewhere the name is unlinked as it is made.
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise OutputError(f"{out}: cannot write in the output folder ({err.strerror or err})") from None
    return out
