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
"clip_frames"}`` (:class:`ModelInput`, :mod:`i3d.weights.model_input`),
which :func:`i3d.network.load_network` takes as the model's preprocessing
(``i3d predict``, ``i3d extract``, ``i3d eval accuracy``) unless told otherwise.

:func:`read_class_names` reads the names from the metadata, else the
``classes.txt`` next to the file; :func:`read_model_input` the input.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from i3d.atomic import atomic_path, open_atomic
from i3d.train.datasets import check_class_names
from i3d.weights.labels import CLASSES_KEY, CLASSES_NAME
from i3d.weights.labels import saved_class_names as read_class_names
from i3d.weights.model_input import INPUT_KEY, ModelInput, read_model_input

__all__ = [
    "CLASSES_KEY",
    "CLASSES_NAME",
    "INPUT_KEY",
    "ModelInput",
    "save_model",
    "read_class_names",
    "read_model_input",
]


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
