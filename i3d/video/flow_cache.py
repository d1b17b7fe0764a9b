"""The flow cache: TV-L1 flow stored beside its source's record, reused while they match.

:func:`i3d.video.inputs.open_input` reads and fills it (``flow_dir``);
``i3d flow`` (:func:`i3d.video.inputs.compute_flow`) writes outputs that it
reuses under their plain names. The files themselves are
:mod:`i3d.video.flow`'s (``NAME.npy`` or a folder of JPEG pairs).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from i3d.atomic import open_atomic
from i3d.choices import DEFAULT_FLOW_ENGINE, FlowFormat
from i3d.errors import VideoError
from i3d.video.flow import find_flow_output, flow_output_path
from i3d.video.listing import source_name
from i3d.video.readers import FlowArrayReader, FrameFolderReader, VideoReader

__all__ = [
    "CACHE_FORMAT",
    "FLOW_SETTINGS_VERSION",
    "flow_cache_key",
    "flow_source_record",
    "flow_record_path",
    "write_flow_record",
    "find_cache",
    "open_cache",
    "FlowCacheEntry",
]

# Flow cache format open_input writes: float16 keeps flow exact to ~0.01 px,
# so a cached clip gives the same input as a freshly computed one.
CACHE_FORMAT: FlowFormat = "npy"
# Hex digits of the path digest in a cache key: 64 bits, no collision in practice.
CACHE_KEY_DIGITS = 16
# Changes when the flow computed from the same frames would change (TV-L1 settings, rounding).
FLOW_SETTINGS_VERSION = 1

# An entry is keyed by its source's absolute path (two videos never share
# one, whatever their names) and valid only while a record next to it,
# written after the flow, matches the source: path, size, modification time
# and the settings that made the flow. Anything else is recomputed.


def flow_cache_key(path: str | os.PathLike[str]) -> str:
    """The cache name of ``path``'s flow: ``NAME.<16 hex digits of the
    SHA-256 of its absolute path>``, NAME being :func:`source_name`."""
    digest = hashlib.sha256(os.path.abspath(path).encode("utf-8", "surrogateescape")).hexdigest()
    return f"{source_name(path)}.{digest[:CACHE_KEY_DIGITS]}"


def flow_source_record(
    path: str | os.PathLike[str], fps: float | None, short_side: int, frames: int, engine: str = DEFAULT_FLOW_ENGINE
) -> dict:
    """What a flow cache entry (or an ``i3d flow`` output) of ``path`` was
    made from: a different record means a different flow. The engine is part
    of it: flow made by the other engine is recomputed, never reused."""
    info = os.stat(path)
    size = len(os.listdir(path)) if os.path.isdir(path) else info.st_size  # a folder: its number of frames
    return {
        "source": os.path.abspath(path),
        "size": size,
        "mtime_ns": info.st_mtime_ns,
        "fps": fps,
        "short_side": short_side,
        "frames": frames,
        "flow": FLOW_SETTINGS_VERSION,
        "engine": engine,
    }


def flow_record_path(entry: Path) -> Path:
    """The source record of a flow output (``NAME.npy`` or folder ``NAME``)."""
    return entry.with_name(entry.name + ".json")


def write_flow_record(entry: Path, record: dict) -> None:
    with open_atomic(flow_record_path(entry)) as f:
        json.dump(record, f, indent=1)


def _matches(entry: Path, record: dict) -> bool:
    try:
        return json.loads(flow_record_path(entry).read_text(encoding="utf-8")) == record
    except (OSError, ValueError):
        return False


def find_cache(folder: Path, path: str, record: dict) -> Path | None:
    """A valid entry for ``path``: its own (keyed), or one that ``i3d flow``
    wrote under its plain name with a matching record."""
    for name in (flow_cache_key(path), source_name(path)):
        entry = find_flow_output(folder, name)
        if entry is not None and _matches(entry, record):
            return entry
    return None


@dataclass
class FlowCacheEntry:
    """The entry ``open_input`` fills for one source: valid once its record is written."""

    folder: Path
    name: str
    record: dict

    @property
    def entry(self) -> Path:
        return flow_output_path(self.folder, self.name, CACHE_FORMAT)

    def forget(self) -> None:
        flow_record_path(self.entry).unlink(missing_ok=True)

    def record_source(self) -> None:
        write_flow_record(self.entry, self.record)


def open_cache(path: Path, rgb: VideoReader | FrameFolderReader) -> FlowArrayReader | FrameFolderReader:
    """Open stored flow for ``rgb`` and check that it matches its frames."""
    stored: FlowArrayReader | FrameFolderReader
    if path.suffix == ".npy":
        stored = FlowArrayReader(path, fps=rgb.fps)
    else:
        stored = FrameFolderReader(path, source_fps=rgb.rate)
        if stored.kind != "flow":
            raise VideoError(path, "flow cache entry holds RGB frames")
    if stored.num_frames != rgb.num_frames or tuple(stored.frame_size) != tuple(rgb.frame_size):
        (height, width), (want_height, want_width) = stored.frame_size, rgb.frame_size
        raise VideoError(
            path,
            f"flow cache holds {stored.num_frames} fields of {width}x{height}, the video gives "
            f"{rgb.num_frames} of {want_width}x{want_height} at {rgb.fps:g} fps; delete it to recompute",
        )
    return stored
