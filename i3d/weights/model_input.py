"""The input a model was trained on, saved with it by ``i3d train``: :class:`ModelInput`.

It travels in a ``.safetensors`` file's metadata, key ``"i3d.input"``: a
JSON object ``{"modality", "fps", "short_side", "crop", "clip_frames"}``
(:func:`i3d.train.export.save_model` writes it). :func:`read_model_input`
reads it back; the loaders (:func:`i3d.weights.load_pretrained`, and so
:func:`i3d.network.load_network`) take its preprocessing as the model's own.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from i3d.errors import WeightsError
from i3d.video.presets import Preprocess

__all__ = ["INPUT_KEY", "ModelInput", "read_model_input"]

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
