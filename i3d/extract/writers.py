"""Output formats: where an output goes, how it is written, how it is checked.

Every output is a data file and a JSON sidecar next to it, one pair per
(input, stream, format)::

    OUT/<name>.<stream>.<format>          e.g. OUT/a/b.mp4.rgb.npy
    OUT/<name>.<stream>.<format>.json     its sidecar

``<name>`` is the input's output name (:func:`i3d.video.listing.output_names`).
The data file is written under a temporary name, flushed to disk, read
back and checked against the SHA-256 of what was written, then renamed into
place; the sidecar, which records that SHA-256 and the byte size, is
written last (the same way), so an output is complete exactly when its
sidecar parses and the file has the recorded size (and, with ``verify``,
the recorded checksum).

All formats reach the disk through plain ``write`` calls (``.npy`` row by
row, the others serialized in memory first): a full disk is an ``OSError``
(``ENOSPC``) at the write, never a signal from a memory-mapped page or a
crash inside a library.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from i3d.atomic import atomic_path, fsync_dir, open_atomic
from i3d.errors import InputError
from i3d.extract.choices import FORMATS, LAYOUTS
from i3d.weights.hashing import sha256

__all__ = [
    "FORMATS",
    "LAYOUTS",
    "Features",
    "OutputPaths",
    "output_paths",
    "read_sidecar",
    "is_complete",
    "check_output",
    "save_features",
    "write_npy_rows",
    "write_sidecar",
    "verify_outputs",
]

# Settings recorded since a later version, with the value every output made
# before them has: such an output is still reused when they match.
_LATER_SETTINGS = {"crops": 1, "num_clips": None}


@dataclass
class Features:
    """One video's features for one stream.

    ``data`` is ``(rows, C)`` for ``pooled`` and ``logits``, ``(rows, C, H, W)``
    for a trunk endpoint; ``times[j]`` is the ``[start, end)`` seconds that
    row ``j`` covers; ``meta`` is what the JSON sidecar holds.
    """

    data: np.ndarray
    times: np.ndarray  # (rows, 2)
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OutputPaths:
    data: Path
    sidecar: Path
    layout: str = "i3d"


def output_paths(out_dir: str | os.PathLike[str], name: str, stream: str, fmt: str, layout: str = "i3d") -> OutputPaths:
    """The data file and sidecar of input ``name``'s ``stream`` in ``fmt``;
    with the ``port`` layout, ``OUT/<name>.npy`` (one stream per folder)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    data = Path(out_dir) / (f"{name}.{stream}.{fmt}" if layout == "i3d" else f"{name}.{fmt}")
    return OutputPaths(data, data.with_name(data.name + ".json"), layout)


def _stored_shape(path: Path, fmt: str) -> tuple[int, ...]:
    if fmt == "npy":
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, _, _ = read_header(f)
        return tuple(shape)
    if fmt == "npz":
        with np.load(path) as z:
            return tuple(z["features"].shape)
    if fmt == "safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "np") as f:
            return tuple(f.get_slice("features").get_shape())
    import h5py

    with h5py.File(path, "r") as f:
        return tuple(f["features"].shape)


def read_sidecar(paths: OutputPaths) -> dict | None:
    """The sidecar's metadata, or ``None`` if it is missing or unreadable."""
    try:
        meta = json.loads(paths.sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def check_output(paths: OutputPaths, fmt: str, settings: dict | None = None, *, verify: bool = False) -> bool:
    """Whether a complete, valid output exists: the sidecar parses, the data
    file has the recorded size and shape (and, with ``verify``, the recorded
    SHA-256; reading the whole file).

    Raises:
        InputError: the output is complete but was made with other
            ``settings`` (layer, mode, weights, ...) than these.
    """
    meta = read_sidecar(paths)
    if meta is None or "sha256" not in meta:  # older outputs without a checksum are redone
        return False
    try:
        complete = paths.data.stat().st_size == meta["bytes"] and _stored_shape(paths.data, fmt) == tuple(meta["shape"])
        if complete and verify:
            complete = sha256(paths.data) == meta["sha256"]
    except Exception:  # missing, truncated or foreign files all mean "redo"
        return False
    differ = [k for k, v in (settings or {}).items() if complete and meta.get(k, _LATER_SETTINGS.get(k)) != v]
    if differ:
        got = ", ".join(f"{k} {meta.get(k)!r}" for k in differ)
        raise InputError(paths.data, f"made with other settings ({got}); use another --out or delete it")
    return complete


def is_complete(
    out_dir: str | os.PathLike[str],
    name: str,
    stream: str,
    fmt: str,
    settings: dict | None = None,
    *,
    verify: bool = False,
) -> bool:
    """:func:`check_output` of input ``name``'s ``stream`` in ``fmt`` under ``out_dir``."""
    return check_output(output_paths(out_dir, name, stream, fmt), fmt, settings, verify=verify)


def _write_checked(path: Path, blocks: Iterable[bytes]) -> tuple[int, str]:
    """Write ``blocks`` to ``path`` atomically; flush to disk, read back and
    compare the checksum before the rename. Returns ``(bytes, sha256)``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            for block in blocks:
                f.write(block)
                digest.update(block)
                size += len(block)
            f.flush()
            os.fsync(f.fileno())
        written = digest.hexdigest()
        if os.path.getsize(tmp) != size or sha256(tmp) != written:
            raise OSError(f"{path}: the data read back differs from the data written")
    fsync_dir(path.parent)
    return size, written


def write_npy_rows(path: Path, rows: Iterator[np.ndarray], count: int) -> tuple[tuple[int, ...], int, str]:
    """Write ``count`` float32 rows to ``.npy`` as they come, so that memory
    holds one chunk's rows, not the video's (spatial maps of an hour of video
    take gigabytes). Returns ``(shape, bytes, sha256)``.

    Raises:
        ValueError: the rows do not add up to ``count``.
        OSError: the file cannot be written (``ENOSPC``: the disk is full).
    """
    shape: list[tuple[int, ...]] = []

    def blocks() -> Iterator[bytes]:
        filled = 0
        for block in rows:
            block = np.ascontiguousarray(block, dtype=np.float32)
            if not shape:
                shape.append((count, *block.shape[1:]))
                header = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    header,
                    {
                        "descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)),
                        "fortran_order": False,
                        "shape": shape[0],
                    },
                )
                yield header.getvalue()
            if block.shape[1:] != shape[0][1:] or filled + len(block) > count:
                raise ValueError(f"the network gave rows of shape {block.shape}, expected {count} of {shape[0][1:]}")
            filled += len(block)
            yield block.tobytes()
        if filled != count:
            raise ValueError(f"the network gave {filled} rows, expected {count}")

    size, digest = _write_checked(path, blocks())
    return shape[0], size, digest


def _serialize(features: Features, fmt: str, meta: dict) -> bytes:
    array = np.ascontiguousarray(features.data, dtype=np.float32)
    times = np.ascontiguousarray(features.times, dtype=np.float64)
    buffer = io.BytesIO()
    if fmt == "npy":
        np.save(buffer, array)
    elif fmt == "npz":
        np.savez(buffer, features=array, times=times)
    elif fmt == "safetensors":
        from safetensors.numpy import save

        return save({"features": array, "times": times}, metadata={"i3d": json.dumps(meta)})
    else:
        import h5py

        with h5py.File(buffer, "w") as f:
            f["features"] = array
            f["times"] = times
            f.attrs["i3d"] = json.dumps(meta)
    return buffer.getvalue()


def save_features(features: Features, paths: OutputPaths, fmt: str) -> Path:
    """Write the data file, then the sidecar (see the module docstring)."""
    meta = dict(features.meta, format=fmt)
    size, digest = _write_checked(paths.data, [_serialize(features, fmt, meta)])
    write_sidecar(paths, dict(meta, shape=list(features.data.shape)), size, digest)
    return paths.data


def write_sidecar(paths: OutputPaths, meta: dict, size: int, sha256: str) -> None:
    """Last: its presence marks the output complete."""
    with open_atomic(paths.sidecar) as f:
        json.dump(dict(meta, bytes=size, sha256=sha256), f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(paths.sidecar.parent)


def _not_regular(path: Path) -> str | None:
    """Why ``path`` cannot be a feature file or sidecar (never following a
    final link), or ``None`` for a regular file; ``"missing"`` if absent."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return f"is a symbolic link (to {os.readlink(path)}), not a feature file"
    return "is a FIFO, socket, device or folder, not a regular file"


def verify_outputs(out_dir: str | os.PathLike[str]) -> Iterator[tuple[Path, str | None]]:
    """Check every output under ``out_dir`` against its sidecar: yields
    ``(data file, None)`` for a good one, ``(data file, what is wrong)``
    otherwise: missing, not a regular file (a symbolic link, whatever it
    points to, is not an output this package made), other size, other
    SHA-256, or a feature file without a sidecar (deleted, or its run was
    killed before writing it). Hidden files (temporaries, locks) are skipped.
    """
    out_dir = Path(out_dir)
    entries = [e for e in sorted(out_dir.rglob("*")) if not any(p[0] == "." for p in e.relative_to(out_dir).parts)]
    checked = set()
    for entry in entries:
        if entry.suffix != ".json" or _not_regular(entry) is not None:
            continue  # a link or special file named *.json is no sidecar of ours (and a FIFO would block)
        meta = read_sidecar(OutputPaths(entry.with_suffix(""), entry))
        if meta is None or "sha256" not in meta or "bytes" not in meta:
            continue  # not an output's sidecar (or one from before checksums)
        data = entry.with_name(entry.name[: -len(".json")])
        checked.add(data)
        yield data, _check_against(data, meta)
    suffixes = {f".{fmt}" for fmt in FORMATS}
    for entry in entries:
        if entry.suffix in suffixes and entry not in checked and not (entry.is_dir() and not entry.is_symlink()):
            problem = _not_regular(entry)
            yield entry, problem or "has no sidecar (deleted, or its run stopped before finishing it); rerun to redo"


def _check_against(data: Path, meta: dict) -> str | None:
    """What is wrong with ``data`` given its sidecar's ``meta``, or ``None``."""
    problem = _not_regular(data)
    if problem is not None:
        return problem
    size = data.stat().st_size
    if size != meta["bytes"]:
        return f"{size} bytes, the sidecar says {meta['bytes']}"
    if sha256(data) != meta["sha256"]:
        return "SHA-256 differs from the sidecar's"
    return None
