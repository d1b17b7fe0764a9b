"""The trained model as a file other commands read: ``model.safetensors`` with its class names.

The weights are a plain safetensors state dict, which
:func:`i3d.weights.load_state_dict_file` (and so ``i3d predict --weights``,
``i3d extract --weights`` and :func:`i3d.weights.inception_i3d`) reads as
any other. The class names travel twice:

* in the file's metadata, key ``"i3d.classes"``: a JSON list of strings in
  class-index order (``safetensors.safe_open(path, "pt").metadata()``);
* in ``classes.txt`` next to it, one name per line (for people and tools
  that do not read safetensors metadata). A name cannot hold a line break
  (:func:`i3d.train.datasets.check_class_names`).

The input the model was trained on travels in the metadata too, key
``"i3d.input"``: a JSON object ``{"modality", "fps", "short_side", "crop",
"clip_frames"}`` (:class:`ModelInput`), which ``i3d eval accuracy`` uses
unless told otherwise.

:func:`read_class_names` reads the names from the metadata, else the
``classes.txt`` next to the file; :func:`read_model_input` the input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from i3d.atomic import atomic_path, open_atomic
from i3d.errors import WeightsError
from i3d.train.datasets import check_class_names
from i3d.video.presets import Preprocess
from i3d.weights.labels import CLASSES_KEY, CLASSES_NAME
from i3d.weights.labels import saved_class_names as read_class_names

__all__ = [
    "CLASSES_KEY",
    "CLASSES_NAME",
    "INPUT_KEY",
    "ModelInput",
    "save_model",
    "read_class_names",
    "read_model_input",
]

INPUT_KEY = "i3d.input"


@dataclass(frozen=True)
class ModelInput:
    """What a trained model's clips were made of: its preprocessing and clip length."""

    preprocess: Preprocess
    clip_frames: int

    def to_json(self) -> dict[str, Any]:
        p = self.preprocess
        return {
            "modality": p.modality,
            "fps": p.fps,
            "short_side": p.resize_short_side,
            "crop": p.crop,
            "clip_frames": self.clip_frames,
        }

    @classmethod
    def from_json(cls, value: Any) -> ModelInput:
        """The inverse of :meth:`to_json`; ``ValueError`` on anything else."""
        if not isinstance(value, dict) or value.get("modality") not in ("rgb", "flow"):
            raise ValueError("not an object with modality rgb or flow")
        fps = value.get("fps")
        numbers = [value.get(k) for k in ("short_side", "crop", "clip_frames")]
        if fps is not None and not (isinstance(fps, (int, float)) and 0 < fps < float("inf")):
            raise ValueError(f"fps {fps!r} is not a positive number")
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in numbers):
            raise ValueError("short_side, crop and clip_frames must be positive integers")
        short_side, crop, clip_frames = numbers
        preprocess = Preprocess(value["modality"], None if fps is None else float(fps), short_side, crop)
        return cls(preprocess, clip_frames)


def save_model(
    state: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    model_input: ModelInput | None = None,
) -> Path:
    """Write ``state`` to ``path`` (``.safetensors``) with ``classes`` and ``model_input`` in its
    metadata, and ``classes.txt``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    metadata = {}
    if classes is not None:
        check_class_names(classes, path)
        metadata[CLASSES_KEY] = json.dumps(list(classes))
    if model_input is not None:
        metadata[INPUT_KEY] = json.dumps(model_input.to_json())
    if classes is not None:
        with open_atomic(path.with_name(CLASSES_NAME)) as f:
            f.write("".join(f"{name}\n" for name in classes))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata or None)
    return path


def read_model_input(path: str | os.PathLike[str]) -> ModelInput | None:
    """The input saved with a model file by :func:`save_model`, or ``None`` if it has none.

    Raises:
        WeightsError: an unreadable file, or a malformed record.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None
    if INPUT_KEY not in metadata:
        return None
    try:
        return ModelInput.from_json(json.loads(metadata[INPUT_KEY]))
    except ValueError as err:
        raise WeightsError(f"{path}: metadata {INPUT_KEY} is malformed ({err})") from None
