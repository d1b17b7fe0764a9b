"""A linear probe: a classifier trained on features ``i3d extract`` wrote, in seconds on the CPU.

Features are found by globbing ``FEATURES_DIR/**/*.npy``; each must have its
JSON sidecar, ``X.json`` or ``X.npy.json`` next to it (an ``.npy`` without
one is an incomplete output and is skipped), whose ``"video"`` names the
input and ``"stream"`` the modality (only the run's ``stream`` is used).
The features must be per-row vectors ``(rows, C)`` (``--layer pooled`` or
``logits``); a video's vector is the mean of its rows.

Labels come from the same dataset spec as training (class folders, CSV or
Kinetics CSV): a dataset video takes the features whose sidecar names its
path (the path under ``--root``); else the one feature file whose video
path ends with the list's relative path (``CLASS/VIDEO.mp4``, the CSV's
``video``, a Kinetics clip's name); else the one whose video has the same
file stem (name without extension; a folder's name). Ambiguous matches
count as none. Videos without
features are reported and left out.

The probe is ``Linear(C, num_classes)`` trained full-batch with L-BFGS on
the recipe's objective (softmax cross-entropy with label smoothing, or
binary cross-entropy for multi-label data) plus ``weight_decay * |W|^2``,
from zeros, so the result does not depend on a seed. It is saved as
``probe.safetensors`` in the layout of I3D's classifier
(``logits.conv3d.weight`` ``(K, C, 1, 1, 1)``, ``logits.conv3d.bias``) with
the class names (:mod:`i3d.train.export`), and scored like training's
validation (``train.jsonl``, ``confusion.json``, plots).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from i3d import console
from i3d.atomic import open_atomic
from i3d.errors import I3DError, InputError
from i3d.train.datasets import LabelledVideo, VideoList
from i3d.train.export import save_model
from i3d.train.loss import ClipObjective
from i3d.train.plots import CONFUSION_JSON, plot_run
from i3d.train.runlog import RunLog
from i3d.train.validation import score_targets

__all__ = ["PROBE_NAME", "FeatureSet", "find_features", "match_features", "train_probe", "run_probe"]

PROBE_NAME = "probe.safetensors"
PROBE_LOG = "train.jsonl"
# L-BFGS iterations: a convex problem of a few thousand unknowns converges well within them.
PROBE_ITERATIONS = 200
# How many videos without features a warning names.
_SHOWN = 5


@dataclass(frozen=True)
class FeatureSet:
    """Feature vectors ``(N, C)`` of the videos of a list that have them, with their targets."""

    vectors: np.ndarray
    targets: np.ndarray  # (N,) class indices or (N, K) multi-hot
    videos: tuple[LabelledVideo, ...]
    missing: tuple[LabelledVideo, ...]


def _sidecar(npy: Path) -> Path | None:
    for candidate in (npy.with_suffix(".json"), npy.with_name(npy.name + ".json")):
        if candidate.is_file():
            return candidate
    return None


def find_features(folder: str | os.PathLike[str], stream: str = "rgb") -> dict[str, Path]:
    """``{video path as its sidecar gives it: .npy}`` of every complete ``stream`` output under ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "no such folder")
    found: dict[str, Path] = {}
    for npy in sorted(folder.rglob("*.npy")):
        sidecar = _sidecar(npy)
        if sidecar is None:
            continue
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as err:
            raise InputError(sidecar, f"not a readable JSON sidecar ({err})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("video"), str):
            raise InputError(sidecar, "sidecar names no video (no 'video' string)")
        if meta.get("stream", stream) != stream:
            continue
        video = meta["video"]
        if video in found:
            raise InputError(npy, f"a second feature file for {video} (the other: {found[video]})")
        found[video] = npy
    if not found:
        raise InputError(folder, f"no {stream} features (.npy with a JSON sidecar) under it")
    return found


def _stem(path: str) -> str:
    name = os.path.basename(os.path.normpath(path))
    return os.path.splitext(name)[0] if "." in name else name


def _vector(npy: Path) -> np.ndarray:
    try:
        rows = np.load(npy, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(npy, f"not a readable .npy ({err})") from None
    if rows.ndim != 2 or rows.shape[0] < 1:
        raise InputError(npy, f"features of shape {rows.shape}; a probe needs rows of vectors (--layer pooled)")
    return np.asarray(rows, dtype=np.float64).mean(axis=0)


def match_features(videos: VideoList, features: dict[str, Path]) -> FeatureSet:
    """The features of each video of ``videos`` (see the module docstring)."""
    by_path = {os.path.abspath(v): p for v, p in features.items()}
    by_stem: dict[str, list[Path]] = {}
    for video, npy in features.items():
        by_stem.setdefault(_stem(video), []).append(npy)
    # The list's relative path (e.g. CLASS/VIDEO.mp4) as the tail of the sidecar's path.
    lengths = {len(PurePosixPath(v.key).parts) for v in videos.videos if v.key}
    by_tail: dict[tuple[str, ...], list[Path]] = {}
    for video, npy in features.items():
        parts = PurePosixPath(video.replace("\\", "/")).parts
        for n in lengths:
            if len(parts) >= n:
                by_tail.setdefault(parts[-n:], []).append(npy)
    vectors, targets, used, missing = [], [], [], []
    for video in videos.videos:
        npy = by_path.get(os.path.abspath(video.path))
        for candidates in (
            by_tail.get(PurePosixPath(video.key).parts, []) if video.key else [],
            by_stem.get(_stem(os.fspath(video.path)), []),
        ):
            if npy is None and len(candidates) == 1:
                npy = candidates[0]
        if npy is None:
            missing.append(video)
            continue
        vectors.append(_vector(npy))
        if videos.multi_label:
            target = np.zeros(videos.num_classes, dtype=np.float32)
            target[list(video.labels)] = 1
            targets.append(target)
        else:
            targets.append(video.labels[0])
        used.append(video)
    dims = {v.shape for v in vectors}
    if len(dims) > 1:
        raise I3DError(f"features of different sizes {sorted(dims)}: made with different layers?")
    matrix = np.stack(vectors).astype(np.float32) if vectors else np.zeros((0, 0), np.float32)
    return FeatureSet(matrix, np.asarray(targets), tuple(used), tuple(missing))


def train_probe(
    features: FeatureSet, num_classes: int, objective: ClipObjective, weight_decay: float
) -> torch.nn.Linear:
    """Fit ``Linear(C, num_classes)`` (see the module docstring)."""
    x = torch.from_numpy(features.vectors).double()
    y = torch.from_numpy(features.targets)
    probe = torch.nn.Linear(x.shape[1], num_classes).double()
    torch.nn.init.zeros_(probe.weight)
    torch.nn.init.zeros_(probe.bias)
    optimizer = torch.optim.LBFGS(probe.parameters(), lr=1, max_iter=PROBE_ITERATIONS, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logits = probe(x).unsqueeze(2)  # (N, K, 1): one time step, as the objectives expect
        loss = objective(logits, y)[0] + weight_decay * probe.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return probe.float()


def _scores(probe: torch.nn.Linear, features: FeatureSet) -> np.ndarray:
    with torch.no_grad():
        return probe(torch.from_numpy(features.vectors)).numpy()


def run_probe(
    features_dir: str | os.PathLike[str],
    train: VideoList,
    val: VideoList | None,
    out: str | os.PathLike[str],
    *,
    stream: str = "rgb",
    label_smoothing: float = 0.0,
    weight_decay: float = 0.0,
    echo: bool = True,
    warn: Callable[[str], None] | None = None,
) -> dict:
    """Train and score a probe; writes ``out/probe.safetensors``, ``train.jsonl`` and plots.

    Returns the last validation record (on ``val``, else on ``train``).
    """
    say = warn or console.warning
    out = Path(out)
    found = find_features(features_dir, stream)
    train_set = match_features(train, found)
    if train_set.missing:
        shown = ", ".join(v.key or str(v.path) for v in train_set.missing[:_SHOWN])
        say(f"{len(train_set.missing)} training videos have no features in {features_dir}, left out ({shown})")
    if len(train_set.videos) == 0:
        raise I3DError(f"{features_dir}: none of the {len(train.videos)} training videos has features")
    objective = ClipObjective(train.multi_label, label_smoothing)
    log = RunLog(out / PROBE_LOG, echo, keep_until=None, tensorboard=False)
    try:
        log.write(
            {"event": "start", "step": 0, "probe": True, "videos": len(train_set.videos), "classes": train.num_classes},
            f"linear probe on {len(train_set.videos)} videos' {train_set.vectors.shape[1]}-d features, "
            f"{train.num_classes} classes",
        )
        started = time.perf_counter()
        probe = train_probe(train_set, train.num_classes, objective, weight_decay)
        evaluated = match_features(val, found) if val is not None else train_set
        if val is not None and evaluated.missing:
            say(f"{len(evaluated.missing)} validation videos have no features, left out")
        metrics, confusion = score_targets(_scores(probe, evaluated), evaluated.targets, train.multi_label)
        record = {
            "event": "val",
            "step": PROBE_ITERATIONS,
            "on": "validation" if val is not None else "training",
            **metrics,
            "videos": len(evaluated.videos),
            "skipped": len(evaluated.missing),
            "seconds": time.perf_counter() - started,
        }
        summary = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, float))
        log.write(record, f"probe on {record['on']} videos: {summary} ({len(evaluated.videos)} videos)")
        state = {
            "logits.conv3d.weight": probe.weight.detach()[:, :, None, None, None],
            "logits.conv3d.bias": probe.bias,
        }
        path = save_model(state, out / PROBE_NAME, train.classes)
        if confusion is not None:
            with open_atomic(out / CONFUSION_JSON) as f:
                json.dump({"step": PROBE_ITERATIONS, "classes": list(train.classes), "confusion": confusion}, f)
        log.file.flush()
        for plot in plot_run(out, PROBE_LOG):
            log.write({"event": "plot", "step": PROBE_ITERATIONS, "path": str(plot)})
        log.write({"event": "end", "step": PROBE_ITERATIONS, "model": str(path)}, f"probe written to {path}")
    finally:
        log.close()
    return record
