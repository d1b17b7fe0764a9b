"""The trained model as a file other commands read: ``model.safetensors`` with its class names.

The weights are a plain safetensors state dict, which
:func:`i3d.weights.load_state_dict_file` (and so ``i3d predict --weights``,
``i3d extract --weights`` and :func:`i3d.weights.inception_i3d`) reads as
any other. The class names travel twice:

* in the file's metadata, key ``"i3d.classes"``: a JSON list of strings in
  class-index order (``safetensors.safe_open(path, "pt").metadata()``);
* in ``classes.txt`` next to it, one name per line (for people and tools
  that do not read safetensors metadata).

:func:`read_class_names` reads the metadata, else the ``classes.txt`` next to the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from i3d.atomic import atomic_path, open_atomic
from i3d.weights.labels import CLASSES_KEY, CLASSES_NAME
from i3d.weights.labels import saved_class_names as read_class_names

__all__ = ["CLASSES_KEY", "CLASSES_NAME", "save_model", "read_class_names"]


def save_model(
    state: Mapping[str, torch.Tensor], path: str | os.PathLike[str], classes: Sequence[str] | None = None
) -> Path:
    """Write ``state`` to ``path`` (``.safetensors``) with ``classes`` in its metadata and ``classes.txt``."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    metadata = {CLASSES_KEY: json.dumps(list(classes))} if classes is not None else None
    if classes is not None:
        with open_atomic(path.with_name(CLASSES_NAME)) as f:
            f.write("".join(f"{name}\n" for name in classes))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path
