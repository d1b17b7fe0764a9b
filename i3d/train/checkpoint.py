"""Training checkpoints: everything a run needs to go on exactly where it stopped.

A checkpoint is a ``torch.save`` file that holds only tensors, plain
containers, numbers and strings, so it loads with
``torch.load(weights_only=True)`` and loading one cannot run code::

    {"format": "i3d-train", "version": 1,
     "step": int,                  # optimizer steps done
     "seed": int, "world_size": int,
     "recipe": {...},              # Recipe.to_dict()
     "model": {name: tensor},      # without DistributedDataParallel's "module."
     "optimizer": {...}, "scheduler": {...}, "scaler": {...},
     "validation": [{"step": int, "map": float | None, ...}, ...]}

There are no random-number-generator states to store: every random draw of a
run is seeded by the run seed and the draw's place in the run (see
:mod:`i3d.train.data` and :mod:`i3d.train.loop`).

Files are written to a temporary file in the same folder, flushed to disk,
then renamed over the old one, so a crash leaves the previous checkpoint.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from i3d.atomic import atomic_path
from i3d.errors import CheckpointError

__all__ = [
    "CHECKPOINT_NAME",
    "FORMAT",
    "VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "plain_scheduler_state",
    "restore_scheduler_state",
]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = "i3d-train"
VERSION = 1
REQUIRED_KEYS = ("step", "seed", "world_size", "recipe", "model", "optimizer", "scheduler", "scaler", "validation")


def plain_scheduler_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A scheduler's ``state_dict`` with ``MultiStepLR``'s ``Counter`` of milestones as a plain dict."""
    return {k: dict(v) if isinstance(v, Counter) else v for k, v in state.items()}


def restore_scheduler_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`plain_scheduler_state` for ``MultiStepLR``."""
    state = dict(state)
    if isinstance(state.get("milestones"), dict):
        state["milestones"] = Counter(state["milestones"])
    return state


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``state`` (see the module docstring) atomically to ``path``."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **state}
    path.parent.mkdir(parents=True, exist_ok=True)
    # fsync: on disk before the rename, so that a power cut cannot leave the
    # new name pointing at an incomplete file.
    with atomic_path(path, fsync=True) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint without running code (``weights_only=True``), tensors on the CPU.

    Raises:
        CheckpointError: ``"<path>: <cause>"`` for a missing or unreadable
            file, pickled objects, or a file that is not a training checkpoint
            of this version.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(path, "not a checkpoint (not a torch.save archive; truncated or another kind of file)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            path, f"refused to load: it holds pickled objects, which could run code ({_unpickler_cause(err)})"
        ) from None
    except Exception as err:  # torch.load raises many types on a damaged file
        first = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(path, f"not a readable checkpoint ({type(err).__name__}: {first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(path, "not an i3d training checkpoint")
    if state.get("version") != VERSION:
        raise CheckpointError(path, f"checkpoint version {state.get('version')!r}, this i3d reads {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(path, f"checkpoint lacks {', '.join(missing)}")
    return state


def _unpickler_cause(err: pickle.UnpicklingError) -> str:
    """The one line of torch's long weights-only message that names what was refused."""
    m = re.search(r"WeightsUnpickler error:\s*([^\n]+)", str(err))
    return m.group(1).strip() if m else type(err).__name__
