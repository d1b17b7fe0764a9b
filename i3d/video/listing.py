"""Which inputs a command reads, and the names its outputs get.

One input model for every command that reads videos (``predict``,
``extract``, ``flow``). Each command-line item is one of:

* a video file (anything FFmpeg decodes) or a DeepMind ``.npy`` array;
* a frame folder (``ID/ID-000001.jpg`` or ``.png``, RGB or flow);
* a ``.txt``/``.lst`` file listing inputs, one per line (``#`` comments,
  UTF-8; relative paths are taken from the working directory);
* a folder, searched **recursively**: its video files and frame folders,
  in sorted order (a frame folder is an input, its contents are not
  searched); hidden entries, the command's own output folders and arrays
  that i3d wrote (a ``.npy`` with a ``.npy.json`` sidecar) are skipped, so
  that ``--out`` inside the input folder never feeds a rerun its outputs;
* a glob pattern (``vids/*.mp4``, ``vids/**/*.mp4``), for shells that do
  not expand it, or when quoted.

A folder or pattern that matches nothing is an error naming what was
searched. A path that does not exist is kept, to be reported as a failed
input with the others; so are FIFOs and device files, which are never
opened (:func:`check_source`).

Output names (:func:`output_names`): each input's path relative to the
deepest folder holding every input, file extension kept: inputs
``vids/a/b.mp4``, ``vids/c/b.mp4`` and ``vids/a__b.mp4`` are named
``a/b.mp4``, ``c/b.mp4`` and ``a__b.mp4``. Distinct files have distinct
absolute paths, hence distinct names; :func:`check_collisions` still checks
the whole list (before any work) for names that differ only in case, which
a case-insensitive file system would store as one file.
"""

from __future__ import annotations

import glob
import itertools
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path

from i3d.errors import I3DError, InputError

__all__ = [
    "source_name",
    "VIDEO_SUFFIXES",
    "FRAME_SUFFIXES",
    "LIST_SUFFIXES",
    "NoInputs",
    "NameCollision",
    "is_frame_folder",
    "read_list",
    "expand_inputs",
    "check_source",
    "output_names",
    "check_collisions",
]

VIDEO_SUFFIXES = frozenset(".mp4 .avi .mkv .webm .mov .gif .m4v .mpg .mpeg .flv .wmv .ts .3gp .npy".split())
LIST_SUFFIXES = frozenset({".txt", ".lst"})
# Frame images of a frame folder (one kind per folder): JPEG as Charades ships
# them, or lossless PNG.
FRAME_SUFFIXES = ("jpg", "png")
_FRAME_NAME = re.compile(rf"-0*1x?\.({'|'.join(FRAME_SUFFIXES)})$")
_GLOB_MAGIC = re.compile(r"[*?[]")


class NoInputs(I3DError):
    """A folder or pattern of the command line matches no input."""


class NameCollision(I3DError):
    """Two inputs would be written under one output name."""


def _special_kind(mode: int) -> str | None:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return None


def check_source(path: str | os.PathLike[str]) -> None:
    """Refuse, without opening it, an input that is not a regular file or a
    folder: reading a FIFO or a device blocks or never ends.

    Raises:
        InputError: ``"<path>: is a FIFO, not a video file or folder"``.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return  # missing or unreadable: the reader says so in its own words
    kind = _special_kind(mode)
    if kind is not None:
        raise InputError(path, f"is {kind}, not a video file or folder")


def is_frame_folder(path: Path) -> bool:
    """A folder of Charades-style frames (``*-000001.jpg`` or ``*-000001x.jpg``; or ``.png``)."""
    try:
        return path.is_dir() and any(_FRAME_NAME.search(p.name) for p in path.iterdir())
    except OSError:
        return False


def read_list(path: str | os.PathLike[str]) -> list[str]:
    """The inputs a ``.txt``/``.lst`` file lists: one per line, blank lines
    and ``#`` comments skipped.

    Raises:
        InputError: the file is not readable, not a regular file, or not UTF-8.
    """
    check_source(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise InputError(path, f"cannot read the input list ({err.strerror or err})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise InputError(path, f"line {line}: not UTF-8 text (byte 0x{data[err.start]:02x})") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _is_input(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES) or is_frame_folder(path)


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(path)


def _inside(path: str, folders: Iterable[str]) -> bool:
    """Whether real path ``path`` is one of ``folders`` (real paths) or under one."""
    return any(path == f or path.startswith(f.rstrip(os.sep) + os.sep) for f in folders)


def _is_output(path: Path) -> bool:
    """An array that i3d wrote (features, flow): it has a ``NAME.npy.json``
    sidecar. DeepMind's input arrays have none."""
    return path.suffix.lower() == ".npy" and path.with_name(path.name + ".json").is_file()


def _below(folders: frozenset[str], root: str | os.PathLike[str]) -> frozenset[str]:
    """The ``folders`` that a search of ``root`` must skip: those that do not
    hold ``root`` (``--out`` equal to the searched folder leaves it searched)."""
    real = _real(root)
    return frozenset(f for f in folders if not _inside(real, [f]))


def _pattern_root(pattern: str) -> str:
    """The folder a glob pattern searches: its leading parts without magic."""
    parts = Path(pattern).parts
    fixed = list(itertools.takewhile(lambda part: not _GLOB_MAGIC.search(part), parts))
    return os.path.join(*fixed) if fixed else "."


def _search(folder: Path, exclude: frozenset[str] = frozenset()) -> list[str]:
    """Video files and frame folders under ``folder``, recursively, sorted;
    hidden entries (temporaries, ``.git``) and the folders ``exclude`` (real
    paths) skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not _inside(_real(Path(root) / d), exclude))
        here = Path(root)
        for d in list(dirs):
            if is_frame_folder(here / d):
                found.append(str(here / d))
                dirs.remove(d)  # its frames are not inputs of their own
        found.extend(
            str(here / f)
            for f in files
            if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_SUFFIXES and not _is_output(here / f)
        )
    return sorted(found)


def expand_inputs(
    items: Iterable[str | os.PathLike[str]],
    *,
    ids: Iterable[str] | None = None,
    exclude: Iterable[str | os.PathLike[str] | None] = (),
) -> list[str]:
    """Turn command-line items into the list of inputs, in order (see the
    module docstring), each input once (the first spelling of a path kept).

    With ``ids`` (e.g. the ids of a Charades CSV) each item is a frame root
    and ``ITEM/ID`` is taken for every id. Folder searches and patterns
    never enter the folders ``exclude`` (a command's own output folders:
    ``--out`` inside the input folder must not make a rerun read its own
    features or flow as inputs); ``None`` entries are ignored.

    Raises:
        NoInputs: a folder or pattern matches nothing (the message names
            it), or there are no items.
        InputError: an input list cannot be read.
    """
    out: list[str] = []
    ids = list(ids) if ids is not None else None
    skip = frozenset(_real(folder) for folder in exclude if folder is not None)
    items = list(items)
    for item in items:
        path = Path(item)
        text = os.fspath(item)
        if ids is not None:
            out.extend(str(path / i) for i in ids)
        elif path.suffix.lower() in LIST_SUFFIXES and (path.is_file() or path.exists()):
            out.extend(read_list(path))
        elif path.is_dir() and not is_frame_folder(path):
            found = _search(path, _below(skip, path))
            if not found:
                raise NoInputs(f"{text}: no video files or frame folders in it or its subfolders")
            out.extend(found)
        elif not path.exists() and _GLOB_MAGIC.search(text):
            found = [
                p
                for p in sorted(glob.glob(text, recursive=True))
                if (_is_input(Path(p)) or (Path(p).exists() and not Path(p).is_dir()))
                and not _inside(_real(p), _below(skip, _pattern_root(text)))
                and not _is_output(Path(p))
            ]
            if not found:
                raise NoInputs(f"{text}: the pattern matches no video files or frame folders")
            out.extend(found)
        else:
            out.append(text)
    if not out:
        raise NoInputs("no inputs given" if not items else f"no inputs in {', '.join(map(os.fspath, items))}")
    seen: dict[str, str] = {}
    for path in out:
        seen.setdefault(os.path.abspath(path), path)
    return list(seen.values())


def source_name(path: str | os.PathLike[str]) -> str:
    """The name outputs of ``path`` are stored under: a folder's name, a file's stem.

    ``clips/a.mp4`` and ``frames/a/`` are both ``"a"``: the ``NAME`` of
    :func:`compute_flow`'s outputs and of the ``flow_dir`` cache.
    """
    path = os.fspath(path)
    return os.path.basename(os.path.normpath(path)) if os.path.isdir(path) else Path(path).stem


def output_names(inputs: Iterable[str], *, keep_suffix: bool = True) -> dict[str, str]:
    """An output name per input: its path relative to the deepest folder
    holding every input (``/``-separated). ``keep_suffix=False`` drops a
    video file's extension (flow frame folders are named by video id).

    Computed on the whole input list, so that every shard agrees; distinct
    absolute paths give distinct names (with ``keep_suffix``).
    """
    inputs = list(inputs)
    if not inputs:
        return {}
    absolute = {i: os.path.abspath(i) for i in inputs}
    root = os.path.commonpath([os.path.dirname(a) for a in absolute.values()])
    names = {}
    for i, a in absolute.items():
        name = Path(os.path.relpath(a, root)).as_posix()
        if not keep_suffix and Path(name).suffix.lower() in VIDEO_SUFFIXES:
            name = name[: -len(Path(name).suffix)]
        names[i] = name
    return names


def check_collisions(names: dict[str, str]) -> None:
    """Refuse two inputs whose output names are equal, or equal but for
    case (one file on a case-insensitive file system).

    Raises:
        NameCollision: naming both inputs and the name.
    """
    first: dict[str, str] = {}
    for path, name in names.items():
        other = first.setdefault(name.casefold(), path)
        if other != path:
            raise NameCollision(
                f"{other} and {path} would both be written as {name!r} "
                f"({'equal' if names[other] == name else 'equal but for case'}); rename one or run them apart"
            )
