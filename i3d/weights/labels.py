"""Class names: shipped with the package for every registered label set.

``predict`` never downloads a label file: Kinetics-400 and Kinetics-600
names are package data (see ``i3d/weights/data/README.md``); Charades
classes are ``c000`` .. ``c156`` unless a classes file is given.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from i3d.errors import WeightsError
from i3d.weights.bundled import data_file
from i3d.weights.cache import cache_dir
from i3d.weights.http import download

if TYPE_CHECKING:
    from i3d.weights.entries import WeightsEntry

__all__ = ["read_labels", "categories", "saved_class_names", "CLASSES_KEY", "CLASSES_NAME"]

# Where a model file made by `i3d train` keeps its class names (see
# i3d.train.export): a JSON list in the safetensors metadata, and a
# classes.txt beside the file for people and tools that do not read it.
CLASSES_KEY = "i3d.classes"
CLASSES_NAME = "classes.txt"

# Charades_v1_classes.txt lines read "c000 Holding some clothes": a 4-character
# code, a space, the name.
_CHARADES_CODE = 4


def _is_charades_line(line: str) -> bool:
    return len(line) > _CHARADES_CODE + 1 and line[0] == "c" and line[1:_CHARADES_CODE].isdigit() and line[4] == " "


def read_labels(path: str | os.PathLike[str], num_classes: int | None = None) -> list[str]:
    """Class names, one per line; Charades' ``c000 Holding some clothes``
    lines keep their text after the code.

    Raises:
        WeightsError: unreadable, not a regular file (a FIFO would block),
            not UTF-8, or not ``num_classes`` names.
    """
    path = Path(path)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise WeightsError(f"{path}: cannot read labels (not a regular file)")
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise WeightsError(f"{path}: cannot read labels ({err})") from None
    lines = [line for line in lines if line]
    if lines and all(_is_charades_line(line) for line in lines):
        lines = [line[_CHARADES_CODE + 1 :] for line in lines]
    if num_classes is not None and len(lines) != num_classes:
        raise WeightsError(f"{path}: has {len(lines)} labels, the model has {num_classes} classes")
    return lines


def categories(entry: WeightsEntry, *, progress: bool = True) -> list[str]:
    """The class names of ``entry``, from the package (no network) for the
    registered entries."""
    if entry.labels is None:
        return [f"c{i:03d}" for i in range(entry.num_classes)]
    if entry.labels.bundled is not None:
        return read_labels(data_file(entry.labels.bundled), entry.num_classes)
    # An entry made by the caller with its own label file: fetched like weights.
    path = download(entry.labels, cache_dir() / "labels" / entry.labels.name, progress=progress)
    return read_labels(path, entry.num_classes)


def saved_class_names(path: str | os.PathLike[str]) -> list[str] | None:
    """The class names saved with a model file (its safetensors metadata,
    else ``classes.txt`` beside it), or ``None`` if it has none."""
    import json

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), "pt") as f:
                metadata = f.metadata() or {}
        except (SafetensorError, OSError) as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None
        if CLASSES_KEY in metadata:
            try:
                names = json.loads(metadata[CLASSES_KEY])
            except ValueError:
                names = None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise WeightsError(f"{path}: metadata {CLASSES_KEY} is not a JSON list of strings")
            return names
    sidecar = path.with_name(CLASSES_NAME)
    if sidecar.is_file():
        return read_labels(sidecar)
    return None
