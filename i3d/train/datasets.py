"""Labelled video lists for training on any dataset: class folders, plain CSV, Kinetics' CSV.

Every reader returns a :class:`VideoList`: the videos (a file or a frame
folder each, with their class indices and an optional time range) and the
class names in their index order. Nothing is decoded here; the pre-flight
index (:func:`i3d.train.clips.index_videos`) opens every video once.

Layouts (``ROOT`` is ``--root``):

* **class folders** (UCF101, HMDB51): ``ROOT/CLASS/VIDEO.mp4`` (any
  suffix in :data:`VIDEO_SUFFIXES`) or ``ROOT/CLASS/VIDEO/`` frame folders
  with frames ``VIDEO-000001.jpg``, ... (the frame-folder layout of
  :class:`i3d.video.readers.FrameFolderReader`). Classes are the sorted
  folder names. An optional split file lists the videos to use, one
  ``CLASS/VIDEO.mp4`` per line, optionally followed by a number (UCF101's
  ``trainlist01.txt`` has the class number there; it is ignored: the
  folder names the class).
* **plain CSV**: a header ``video,label`` with optional ``start,end``
  columns (seconds into the video); ``video`` is a path relative to
  ``ROOT``, ``label`` a class name, or several separated by ``;`` for
  multi-label data (any row with ``;`` makes the list multi-label).
* **Kinetics CSV** (``label,youtube_id,time_start,time_end,split``, extra
  columns ignored, e.g. ``is_cc``): the videos are found anywhere under
  ``ROOT`` by file stem, ``{youtube_id}_{time_start:06d}_{time_end:06d}``
  (the name the common Kinetics downloaders give a trimmed clip) or else
  ``{youtube_id}``; either is taken as the already trimmed 10 s clip. The
  ``split`` column is not used: pass the file of the split you want.

Class names and their order come from a classes file (one name per line)
when one is given, else from the sorted labels (folder names). A malformed
line is an :class:`~i3d.errors.InputError` naming the file and the line,
``"FILE: line N: cause"``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from i3d.charades.annotations import read_text
from i3d.errors import InputError
from i3d.train.choices import DATASET_FORMATS
from i3d.video import listing

__all__ = [
    "DATASET_FORMATS",
    "VIDEO_SUFFIXES",
    "LabelledVideo",
    "VideoList",
    "read_classes",
    "check_class_names",
    "read_class_folders",
    "read_video_csv",
    "read_kinetics_csv",
    "read_video_list",
    "detect_format",
    "read_flip_map",
]

# Video files a class folder may hold (the inputs of every command, less
# DeepMind's preprocessed .npy arrays, which are not videos to draw clips
# from); anything else in it is ignored.
VIDEO_SUFFIXES = listing.VIDEO_SUFFIXES - {".npy"}
LABEL_SEPARATOR = ";"
KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end")
# Kinetics downloaders name a clip by id and its 6-digit zero-padded start and end seconds.
KINETICS_TRIMMED_NAME = "{youtube_id}_{start:06d}_{end:06d}"


@dataclass(frozen=True)
class LabelledVideo:
    """One video of a dataset.

    Attributes:
        path: the video file or frame folder.
        labels: class indices (one for single-label data).
        start, end: the part of the video to use, in seconds (``None``: its start / end).
        key: the video as the list names it (relative path or Kinetics id),
            for matching features and reports.
    """

    path: Path
    labels: tuple[int, ...]
    start: float | None = None
    end: float | None = None
    key: str = ""


@dataclass(frozen=True)
class VideoList:
    """A dataset's videos and classes; ``multi_label`` selects BCE and mAP over softmax and accuracy."""

    videos: tuple[LabelledVideo, ...]
    classes: tuple[str, ...]
    multi_label: bool
    source: str

    def __post_init__(self) -> None:
        check_class_names(self.classes, self.source)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, videos: Iterable[LabelledVideo]) -> VideoList:
        return VideoList(tuple(videos), self.classes, self.multi_label, self.source)


class _Lines:
    """Errors that name a file and a line."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def error(self, line: int, cause: str) -> InputError:
        return InputError(self.path, f"line {line}: {cause}")


def read_classes(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Class names, one per non-empty line, in index order; duplicates are an error."""
    where = _Lines(path)
    names: dict[str, int] = {}
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in names:
            raise where.error(number, f"class {name!r} is listed twice (first on line {names[name]})")
        names[name] = number
    if not names:
        raise InputError(where.path, "no class names")
    return tuple(names)


def check_class_names(classes: Sequence[str], source: str | os.PathLike[str]) -> None:
    """Refuse names that ``classes.txt`` (one stripped name per line) cannot give back: a line
    break in a name, an empty name, spaces around one. ``source`` is where they came from.

    Raises:
        InputError: ``"SOURCE: class name 'a\\nb' holds a line break; ..."``.
    """
    for name in classes:
        lines = name.splitlines()  # every break str.splitlines knows, as read_labels reads the file
        if len(lines) > 1 or (lines and lines[0] != name):
            cause = "holds a line break"
        elif not name.strip():
            cause = "is empty"
        elif name != name.strip():
            cause = "has spaces around it"
        else:
            continue
        raise InputError(source, f"class name {name!r} {cause}; a class name is one line of text (classes.txt)")


def _class_index(classes: Sequence[str]) -> dict[str, int]:
    return {name: i for i, name in enumerate(classes)}


def _relative(text: str, where: _Lines, line: int) -> PurePosixPath:
    """A path inside the root: relative, no ``..``."""
    text = text.strip()
    if not text:
        raise where.error(line, "empty video path")
    path = PurePosixPath(text.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or os.path.isabs(text):
        raise where.error(line, f"video path {text!r} must be relative to the root, without '..'")
    return path


def _refuse_aliases(root: Path, folders: Sequence[str]) -> None:
    """Two class folders that are one folder (a symlink to another) would make one class two."""
    seen: dict[str, str] = {}
    for name in folders:
        real = os.path.realpath(root / name)
        if real in seen:
            first, link = (seen[real], name) if (root / name).is_symlink() else (name, seen[real])
            raise InputError(
                root / link, f"is a link to the class folder {first!r}: one class would count twice; remove the link"
            )
        seen[real] = name


def read_class_folders(
    root: str | os.PathLike[str],
    split: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
) -> VideoList:
    """``ROOT/CLASS/VIDEO.ext`` files and ``ROOT/CLASS/VIDEO/`` frame folders; see the module docstring."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "no such folder")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputError(root, "no class folders (expected ROOT/CLASS/VIDEO.mp4 or ROOT/CLASS/VIDEO/)")
    _refuse_aliases(root, folders)
    classes = tuple(classes) if classes is not None else tuple(folders)
    index = _class_index(classes)
    unknown = [f for f in folders if f not in index]
    if unknown:
        raise InputError(root, f"class folder {unknown[0]!r} is not in the class list")
    videos: list[LabelledVideo] = []
    if split is None:
        for name in folders:
            for entry in sorted((root / name).iterdir()):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir() or entry.suffix.lower() in VIDEO_SUFFIXES:
                    videos.append(LabelledVideo(entry, (index[name],), key=f"{name}/{entry.name}"))
    else:
        where = _Lines(split)
        seen: dict[str, int] = {}
        for number, line in enumerate(read_text(split).splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) > 2:
                raise where.error(number, f"expected 'CLASS/VIDEO [number]', got {len(fields)} fields")
            relative = _relative(fields[0], where, number)
            if len(relative.parts) != 2:
                raise where.error(number, f"expected CLASS/VIDEO, got {fields[0]!r}")
            if relative.parts[0] not in index:
                raise where.error(number, f"unknown class {relative.parts[0]!r}")
            key = relative.as_posix()
            if key in seen:
                raise where.error(number, f"{key} is listed twice (first on line {seen[key]})")
            seen[key] = number
            videos.append(LabelledVideo(root.joinpath(*relative.parts), (index[relative.parts[0]],), key=key))
    if not videos:
        raise InputError(split if split is not None else root, "no videos")
    return VideoList(tuple(videos), classes, False, os.fspath(split if split is not None else root))


def _csv_rows(path: str | os.PathLike[str]) -> tuple[_Lines, list[str], list[tuple[int, list[str]]]]:
    """The header and the non-empty rows with their line numbers."""
    where = _Lines(path)
    text = read_text(path)
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip().lower() for cell in row]
            else:
                rows.append((reader.line_num, [cell.strip() for cell in row]))
    except csv.Error as err:
        raise where.error(reader.line_num, f"not CSV ({err})") from None
    if header is None:
        raise InputError(where.path, "empty file, expected a header line")
    return where, header, rows


def _seconds(text: str, column: str, where: _Lines, line: int) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise where.error(line, f"{column} {text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise where.error(line, f"{column} {text!r} must be a finite number >= 0")
    return value


def _time_range(start: str, end: str, where: _Lines, line: int) -> tuple[float | None, float | None]:
    first, last = _seconds(start, "start", where, line), _seconds(end, "end", where, line)
    if first is not None and last is not None and last <= first:
        raise where.error(line, f"end {last:g} is not after start {first:g}")
    return first, last


def _labels(text: str, index: dict[str, int] | None, where: _Lines, line: int) -> tuple[str, ...] | tuple[int, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(LABEL_SEPARATOR)))
    if not text or any(not n for n in names):
        raise where.error(line, f"empty label in {text!r}")
    if index is None:
        return names
    for name in names:
        if name not in index:
            raise where.error(line, f"unknown class {name!r} (not in the class list)")
    return tuple(index[n] for n in names)


def read_video_csv(
    path: str | os.PathLike[str], root: str | os.PathLike[str], classes: Sequence[str] | None = None
) -> VideoList:
    """A ``video,label[,start,end]`` CSV; see the module docstring."""
    where, header, rows = _csv_rows(path)
    if header[:2] != ["video", "label"] or header[2:] not in ([], ["start", "end"]):
        raise where.error(1, f"header must be 'video,label' or 'video,label,start,end', got {','.join(header)!r}")
    index = _class_index(classes) if classes is not None else None
    parsed: list[tuple[PurePosixPath, tuple, float | None, float | None]] = []
    seen: dict[tuple, int] = {}
    for line, row in rows:
        if len(row) != len(header):
            raise where.error(line, f"expected {len(header)} fields ({','.join(header)}), got {len(row)}")
        video = _relative(row[0], where, line)
        labels = _labels(row[1], index, where, line)
        start, end = _time_range(*(row[2:] or ["", ""]), where, line)
        key = (video.as_posix(), start, end)
        if key in seen:
            raise where.error(line, f"{video} is listed twice (first on line {seen[key]})")
        seen[key] = line
        parsed.append((video, labels, start, end))
    if not parsed:
        raise InputError(where.path, "no videos")
    if classes is None:
        classes = tuple(sorted({name for _, labels, _, _ in parsed for name in labels}))
        index = _class_index(classes)
        parsed = [(v, tuple(index[n] for n in labels), s, e) for v, labels, s, e in parsed]
    multi = any(len(labels) > 1 for _, labels, _, _ in parsed)
    base = Path(root)
    videos = tuple(
        LabelledVideo(base.joinpath(*v.parts), tuple(labels), s, e, key=v.as_posix()) for v, labels, s, e in parsed
    )
    return VideoList(videos, tuple(classes), multi, os.fspath(path))


def _kinetics_seconds(text: str, column: str, where: _Lines, line: int) -> int:
    value = _seconds(text, column, where, line)
    if value is None or value != int(value):
        raise where.error(line, f"{column} {text!r} is not a whole number of seconds")
    return int(value)


def _files_by_stem(root: Path) -> dict[str, Path]:
    """Every video file and frame folder under ``root`` by its stem (a frame folder: its name)."""
    found: dict[str, Path] = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in dirs:
            found.setdefault(name, Path(folder) / name)
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix.lower() in VIDEO_SUFFIXES:
                found.setdefault(path.stem, path)
    return found


def read_kinetics_csv(
    path: str | os.PathLike[str], root: str | os.PathLike[str], classes: Sequence[str] | None = None
) -> VideoList:
    """Kinetics' own ``label,youtube_id,time_start,time_end,split`` CSV; see the module docstring.

    A row whose video is not under ``root`` gets the path of its trimmed
    name, ``ROOT/{youtube_id}_{start:06d}_{end:06d}.mp4``, which the
    pre-flight index then reports as missing.
    """
    where, header, rows = _csv_rows(path)
    missing = [c for c in KINETICS_COLUMNS if c not in header]
    if missing:
        raise where.error(1, f"header lacks {', '.join(missing)} (Kinetics: {','.join(KINETICS_COLUMNS)},split)")
    column = {name: header.index(name) for name in KINETICS_COLUMNS}
    index = _class_index(classes) if classes is not None else None
    parsed: list[tuple[str, tuple, str]] = []
    seen: dict[str, int] = {}
    for line, row in rows:
        if len(row) != len(header):
            raise where.error(line, f"expected {len(header)} fields, got {len(row)}")
        youtube_id = row[column["youtube_id"]]
        if not youtube_id or "/" in youtube_id or "\\" in youtube_id or youtube_id.startswith("."):
            raise where.error(line, f"invalid youtube_id {youtube_id!r}")
        start = _kinetics_seconds(row[column["time_start"]], "time_start", where, line)
        end = _kinetics_seconds(row[column["time_end"]], "time_end", where, line)
        if end <= start:
            raise where.error(line, f"time_end {end} is not after time_start {start}")
        trimmed = KINETICS_TRIMMED_NAME.format(youtube_id=youtube_id, start=start, end=end)
        if trimmed in seen:
            raise where.error(line, f"{trimmed} is listed twice (first on line {seen[trimmed]})")
        seen[trimmed] = line
        parsed.append((trimmed, _labels(row[column["label"]], index, where, line), youtube_id))
    if not parsed:
        raise InputError(where.path, "no videos")
    if classes is None:
        classes = tuple(sorted({name for _, labels, _ in parsed for name in labels}))
        index = _class_index(classes)
        parsed = [(t, tuple(index[n] for n in labels), y) for t, labels, y in parsed]
    files = _files_by_stem(Path(root))
    videos = []
    for trimmed, labels, youtube_id in parsed:
        video = files.get(trimmed) or files.get(youtube_id) or Path(root) / f"{trimmed}.mp4"
        videos.append(LabelledVideo(video, tuple(labels), key=trimmed))
    multi = any(len(v.labels) > 1 for v in videos)
    return VideoList(tuple(videos), tuple(classes), multi, os.fspath(path))


def read_flip_map(path: str | os.PathLike[str], classes: Sequence[str]) -> tuple[int, ...]:
    """The class of a mirrored clip of each class, from a CSV of label pairs, one pair a line:
    ``pushing something from left to right,pushing something from right to left`` swaps the two
    (as mmaction2's ``flip_label_map``); a class in no pair keeps its label.

    Raises:
        InputError: ``"FILE: line N: cause"`` for a line that is not two known, different classes,
            or a class in two pairs.
    """
    where = _Lines(path)
    index = _class_index(classes)
    flipped = list(range(len(classes)))
    paired: dict[str, int] = {}
    reader = csv.reader(io.StringIO(read_text(path)))
    try:
        for row in reader:
            pair = [cell.strip() for cell in row]
            if not any(pair):
                continue
            line = reader.line_num
            if len(pair) != 2 or pair[0] == pair[1]:
                raise where.error(line, f"expected two different labels 'LABEL,MIRRORED LABEL', got {row!r}")
            for name in pair:
                if name not in index:
                    raise where.error(line, f"unknown class {name!r}")
                if name in paired:
                    raise where.error(line, f"class {name!r} is already paired on line {paired[name]}")
                paired[name] = line
            a, b = index[pair[0]], index[pair[1]]
            flipped[a], flipped[b] = b, a
    except csv.Error as err:
        raise where.error(reader.line_num, f"not CSV ({err})") from None
    if not paired:
        raise InputError(where.path, "no label pairs")
    return tuple(flipped)


def detect_format(path: str | os.PathLike[str]) -> str:
    """The layout of a training list, from its name and header: ``charades`` (a ``.json`` split,
    or a CSV whose header has ``id``, ``actions`` and ``length``), ``csv`` (``video,label...``) or
    ``kinetics`` (``label,youtube_id,time_start,time_end...``).

    Raises:
        InputError: ``"FILE: line 1: ..."`` for a header of none of them, naming ``--format``.
    """
    from i3d.charades.annotations import REQUIRED_COLUMNS

    if Path(path).suffix.lower() == ".json":
        return "charades"
    where = _Lines(path)
    header: list[str] = []
    for row in csv.reader(io.StringIO(read_text(path))):
        header = [cell.strip().lower() for cell in row]
        if any(header):
            break
    if all(c in header for c in REQUIRED_COLUMNS):
        return "charades"
    if header[:2] == ["video", "label"]:
        return "csv"
    if all(c in header for c in KINETICS_COLUMNS):
        return "kinetics"
    raise where.error(
        1,
        f"cannot tell the dataset layout from the header {','.join(header)[:80]!r} (Charades: "
        f"{','.join(REQUIRED_COLUMNS)}; csv: video,label[,start,end]; Kinetics: {','.join(KINETICS_COLUMNS)}); "
        "pass --format",
    )


def read_video_list(
    format: str,
    root: str | os.PathLike[str],
    listing: str | os.PathLike[str] | None = None,
    classes: str | os.PathLike[str] | Sequence[str] | None = None,
) -> VideoList:
    """One reader by ``format`` (``folders``, ``csv`` or ``kinetics``); ``listing``
    is the split file or the CSV; ``classes`` a classes file or the names."""
    names = read_classes(classes) if isinstance(classes, (str, os.PathLike)) else classes
    if format == "folders":
        return read_class_folders(root, listing, names)
    if listing is None:
        raise ValueError(f"the {format} format needs a CSV file")
    if format == "csv":
        return read_video_csv(listing, root, names)
    if format == "kinetics":
        return read_kinetics_csv(listing, root, names)
    raise ValueError(f"unknown dataset format {format!r}; choose one of folders, csv, kinetics")
