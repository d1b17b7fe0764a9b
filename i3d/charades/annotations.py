"""Charades annotations: the official CSVs, the classes file and the old JSON split.

The official files (``Charades_v1_train.csv``, ``Charades_v1_test.csv``,
``Charades_v1_classes.txt``) come with the dataset; the JSON split
(``charades.json``) is the one the old PyTorch port of I3D trains from.
Every reader raises :class:`i3d.errors.InputError` naming the file, the line
and the cause on malformed input.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from i3d.charades.sizes import NUM_CLASSES
from i3d.errors import InputError, check_regular_file, shorten

Subset = Literal["training", "testing"]

# The evaluation needs no more than these of the official columns (id, subject,
# scene, quality, relevance, verified, script, objects, descriptions, actions,
# length); the others may be absent.
REQUIRED_COLUMNS = ("id", "actions", "length")

# Ids name frame folders and output files: letters, digits, "_" and "-" only,
# so that no id can be "..", hold a separator or start a hidden file. Official
# ids are five characters such as "46GP8"; the cap is a file name's limit.
VIDEO_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,255}")
# Class index 0 is written "c000" in the files.
_CLASS_CODE = re.compile(r"c(\d+)")

# The official file names end in "_train" / "_test".
_SUBSET_BY_FILE = {"train": "training", "test": "testing"}


@dataclass(frozen=True)
class Action:
    """One annotated action: class ``index`` (0-based) from ``start`` to ``end`` seconds."""

    index: int
    start: float
    end: float

    def covers(self, t: float) -> bool:
        """Whether time ``t`` (seconds) lies in ``[start, end]``, ends included, as the official scripts test it."""
        return self.start <= t <= self.end


@dataclass(frozen=True)
class Video:
    """One Charades video.

    Attributes:
        id: the video id, e.g. ``"46GP8"``; validated by :func:`validate_video_id`.
        length: duration in seconds.
        actions: the annotated actions in file order (empty for some videos).
        subset: ``"training"``, ``"testing"`` or ``None`` when the source does
            not say.
        subject, scene, quality, relevance, verified, script, objects,
        descriptions: the remaining CSV columns, as written in the file
        (``""`` when absent).
    """

    id: str
    length: float
    actions: tuple[Action, ...] = ()
    subset: Subset | None = None
    subject: str = ""
    scene: str = ""
    quality: str = ""
    relevance: str = ""
    verified: str = ""
    script: str = ""
    objects: str = ""
    descriptions: str = ""

    @property
    def classes(self) -> frozenset[int]:
        """Indices of the classes that occur anywhere in the video."""
        return frozenset(a.index for a in self.actions)


@dataclass(frozen=True)
class ClassInfo:
    """A class of the classes file: ``index`` 0..156, ``code`` ``"c000"``, ``name``."""

    index: int
    code: str
    name: str


@dataclass
class _Where:
    """File and line for error messages."""

    path: str
    line: int | None = None

    def error(self, cause: str) -> InputError:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        return InputError(where, cause)


def read_text(path: str | os.PathLike[str]) -> str:
    """The text of a UTF-8 file (a leading byte-order mark dropped).

    Raises:
        InputError: naming the file when it cannot be read or is not UTF-8.
    """
    name = os.fspath(path)
    check_regular_file(path)
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except OSError as err:
        raise InputError(name, f"cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise InputError(name, f"not UTF-8 text: {err.reason} at byte {err.start}") from None


def validate_video_id(video_id: str, path: str | os.PathLike[str] = "<video id>", line: int | None = None) -> str:
    """Return ``video_id`` if it is safe to use as a file or folder name.

    Raises:
        InputError: naming ``path`` (and ``line``) when the id holds anything
            but ASCII letters, digits, ``_`` and ``-``, or is empty or too long.
    """
    if not isinstance(video_id, str) or VIDEO_ID_PATTERN.fullmatch(video_id) is None:
        raise _Where(os.fspath(path), line).error(
            f"invalid video id {shorten(repr(video_id))} (allowed: letters, digits, '_' and '-', 1 to 255 characters)"
        )
    return video_id


def parse_class_code(code: str, num_classes: int = NUM_CLASSES) -> int:
    """``"c092"`` -> ``92``. Raises ``ValueError`` on anything else or an index out of range."""
    m = _CLASS_CODE.fullmatch(code)
    if m is None:
        raise ValueError(f"bad class {shorten(repr(code))} (expected c followed by digits, e.g. c092)")
    index = int(m.group(1))
    if index >= num_classes:
        raise ValueError(f"class {shorten(repr(code))} out of range (there are {num_classes} classes)")
    return index


def parse_actions(text: str, num_classes: int = NUM_CLASSES) -> tuple[Action, ...]:
    """Parse a CSV ``actions`` field, e.g. ``"c092 11.90 21.20;c147 0.00 12.60"``.

    An empty field means no actions. Raises ``ValueError`` with the cause.
    """
    actions = []
    for item in text.split(";"):
        parts = item.split()
        if not parts:
            # An empty field, or a stray ";" at the end.
            continue
        if len(parts) != 3:
            raise ValueError(f"bad action {shorten(repr(item.strip()))} (expected 'cNNN start end')")
        index = parse_class_code(parts[0], num_classes)
        start, end = _finite(parts[1], "start"), _finite(parts[2], "end")
        actions.append(Action(index, start, end))
    return tuple(actions)


def _finite(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{what} {shorten(repr(text))} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{what} {shorten(repr(text))} is not finite")
    return value


def _subset_from_name(path: Path) -> Subset | None:
    stem = path.stem.lower()
    for key, subset in _SUBSET_BY_FILE.items():
        if stem.endswith("_" + key):
            return subset  # type: ignore[return-value]
    return None


def read_csv(
    path: str | os.PathLike[str],
    subset: Subset | None = None,
    num_classes: int = NUM_CLASSES,
) -> list[Video]:
    """Read an official Charades CSV (``Charades_v1_train.csv`` / ``_test.csv``).

    Args:
        path: the CSV; quoted fields may hold commas and line breaks.
        subset: recorded in each :class:`Video`; by default ``"training"`` for
            a file named ``*_train.csv``, ``"testing"`` for ``*_test.csv``,
            else ``None``.
        num_classes: class codes must lie in ``c000 .. c{num_classes-1}``.

    Returns:
        The videos in file order (the order that breaks ties in the evaluation).

    Raises:
        InputError: ``"<path>:<line>: <cause>"`` for a missing column, a row
            with the wrong number of fields, a bad id, action or length, or a
            repeated id.
    """
    path = Path(path)
    name = os.fspath(path)
    if subset is None:
        subset = _subset_from_name(path)
    check_regular_file(path)
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as err:
        raise InputError(name, f"cannot read: {err.strerror or err}") from None
    videos: list[Video] = []
    seen: dict[str, int | None] = {}
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
        except (csv.Error, UnicodeDecodeError) as err:
            raise _Where(name, 1).error(f"bad CSV header: {err}") from None
        if header is None:
            raise InputError(name, "empty file (expected a header line)")
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise _Where(name, 1).error(f"header lacks column(s) {', '.join(missing)}")
        column = {h: i for i, h in enumerate(header)}
        line = reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as err:
                raise _Where(name, line).error(f"bad CSV: {err}") from None
            where = _Where(name, line)
            # A quoted field may span lines: the next record starts after this one ends.
            line = reader.line_num + 1
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise where.error(f"{len(row)} fields, the header has {len(header)}")
            video = _video_from_row(row, column, subset, num_classes, where)
            if video.id in seen:
                raise where.error(f"video id {shorten(video.id)!r} repeated (first on line {seen[video.id]})")
            seen[video.id] = where.line
            videos.append(video)
    return videos


def _video_from_row(
    row: Sequence[str], column: dict[str, int], subset: Subset | None, num_classes: int, where: _Where
) -> Video:
    def get(key: str) -> str:
        return row[column[key]] if key in column else ""

    video_id = validate_video_id(get("id").strip(), where.path, where.line)
    try:
        actions = parse_actions(get("actions"), num_classes)
    except ValueError as err:
        raise where.error(f"video {video_id}: {err}") from None
    length_text = get("length").strip()
    try:
        length = _finite(length_text, "length")
    except ValueError as err:
        raise where.error(f"video {video_id}: {err}") from None
    if length < 0:
        raise where.error(f"video {video_id}: negative length {shorten(repr(length_text))}")
    return Video(
        id=video_id,
        length=length,
        actions=actions,
        subset=subset,
        subject=get("subject"),
        scene=get("scene"),
        quality=get("quality"),
        relevance=get("relevance"),
        verified=get("verified"),
        script=get("script"),
        objects=get("objects"),
        descriptions=get("descriptions"),
    )


def read_classes(path: str | os.PathLike[str]) -> list[ClassInfo]:
    """Read ``Charades_v1_classes.txt``: lines ``c000 Holding some clothes``, in index order.

    Raises:
        InputError: naming the line when a line is not ``cNNN name`` or its
            code is not the next index.
    """
    name = os.fspath(path)
    text = read_text(path)
    classes: list[ClassInfo] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        code, _, label = raw.strip().partition(" ")
        m = _CLASS_CODE.fullmatch(code)
        if m is None or not label.strip():
            raise _Where(name, number).error(f"expected 'cNNN class name', got {shorten(repr(raw.strip()))}")
        if int(m.group(1)) != len(classes):
            raise _Where(name, number).error(f"class {code} out of order (expected c{len(classes):03d})")
        classes.append(ClassInfo(len(classes), code, label.strip()))
    if not classes:
        raise InputError(name, "no classes")
    return classes


def read_split_json(path: str | os.PathLike[str], num_classes: int = NUM_CLASSES) -> list[Video]:
    """Read the old PyTorch port's split file.

    The file is ``{id: {"subset": "training" | "testing", "duration": seconds,
    "actions": [[class_index, start, end], ...]}}``.

    Returns:
        The videos in file order.

    Raises:
        InputError: naming the file and the video (or the JSON line) at fault.
    """
    name = os.fspath(path)
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise _Where(name, err.lineno).error(f"bad JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise InputError(name, "expected a JSON object {video id: {...}}")
    videos = []
    for video_id, entry in data.items():
        validate_video_id(video_id, name)
        try:
            videos.append(_video_from_json(video_id, entry, num_classes))
        except (ValueError, TypeError, KeyError) as err:
            raise InputError(name, f"video {video_id}: {err}") from None
    return videos


def _video_from_json(video_id: str, entry: object, num_classes: int) -> Video:
    if not isinstance(entry, dict):
        raise ValueError("expected an object with subset, duration and actions")
    subset = entry["subset"]
    if subset not in ("training", "testing"):
        raise ValueError(f"subset {shorten(repr(subset))} is neither 'training' nor 'testing'")
    length = _number(entry["duration"], "duration")
    if length < 0:
        raise ValueError(f"negative duration {length}")
    actions = []
    for item in entry["actions"]:
        if not isinstance(item, list) or len(item) != 3:
            raise ValueError(f"bad action {shorten(repr(item))} (expected [class, start, end])")
        index = item[0]
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_classes:
            raise ValueError(f"bad class {shorten(repr(index))} (expected an integer 0..{num_classes - 1})")
        actions.append(Action(index, _number(item[1], "start"), _number(item[2], "end")))
    return Video(id=video_id, length=length, actions=tuple(actions), subset=subset)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} {shorten(repr(value))} is not a finite number")
    return float(value)


def class_labels(videos: Iterable[Video], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Video-level multi-hot labels, ``(N, num_classes)`` bool, rows in ``videos`` order."""
    videos = list(videos)
    labels = np.zeros((len(videos), num_classes), dtype=bool)
    for row, video in enumerate(videos):
        for action in video.actions:
            labels[row, action.index] = True
    return labels


def frame_labels(video: Video, num_frames: int, fps: float, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Per-frame multi-hot labels, ``(num_classes, num_frames)`` float32.

    Frame ``f`` (0-based, file ``ID-{f+1:06d}.jpg``) shows time ``f / fps``;
    it is positive for a class when an action of that class has
    ``start <= f / fps <= end``, ends included as in the official scripts.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    labels = np.zeros((num_classes, num_frames), dtype=np.float32)
    times = np.arange(num_frames, dtype=np.float64) / fps
    for action in video.actions:
        labels[action.index, (action.start <= times) & (times <= action.end)] = 1.0
    return labels


def localization_times(length: float, samples: int) -> np.ndarray:
    """The official localization time points ``(j - 1) / samples * length``, ``j = 1..samples``; ``(samples,)`` float64.

    The arithmetic is done in the official order so that a time point equal
    to an action boundary compares the same way.
    """
    return (np.arange(samples, dtype=np.float64) / samples) * length


def localization_labels(video: Video, samples: int, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Labels of the official localization frames, ``(samples, num_classes)`` bool.

    Frame ``j`` (1-based) is positive for a class when an action of that
    class has ``start <= (j - 1) / samples * length <= end``. A video without
    actions gives all-negative frames.
    """
    times = localization_times(video.length, samples)
    labels = np.zeros((samples, num_classes), dtype=bool)
    for action in video.actions:
        labels[(action.start <= times) & (times <= action.end), action.index] = True
    return labels
