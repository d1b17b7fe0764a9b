"""State-dict files: ``.safetensors`` and ``.pt``, read without running code, written atomically.

Safety: a checkpoint never executes code. ``.safetensors`` files hold only
tensors; ``.pt`` files are read with ``torch.load(..., weights_only=True)``,
which refuses any pickle that would construct something other than tensors
and plain containers. Keys that are not names and values that are not
tensors are refused with one line naming the file.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from i3d.atomic import atomic_path
from i3d.errors import WeightsError

__all__ = ["load_state_dict_file", "save_state_dict", "check_output_path", "STATE_SUFFIXES"]

STATE_SUFFIXES = (".safetensors", ".pt")
_DATA_PARALLEL_PREFIX = "module."
_SHOWN = 8  # keys listed in an error before "... (N in all)"


def _listing(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (f", ... ({len(keys)} in all)" if len(keys) > _SHOWN else "")


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or ``.pt`` without running code.

    ``module.`` prefixes (``DataParallel`` checkpoints) are stripped, and a
    ``{"state_dict": ...}`` wrapper is unwrapped.

    Raises:
        WeightsError: missing or unreadable file, a pickle that is not plain
            tensors, keys that are not strings, values that are not tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise WeightsError(
                f"{path}: refused to load: the file is not plain tensors and unpickling it could run code ({first})"
            ) from None
        except Exception as err:  # torch.load raises many types on junk input
            raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from None
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise WeightsError(f"{path}: holds a {type(state).__name__}, not a state dict")
    not_names = [repr(k) for k in state if not isinstance(k, str)]
    if not_names:
        raise WeightsError(f"{path}: keys must be parameter names, found {_listing(not_names)}")
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise WeightsError(f"{path}: holds values that are not tensors under {_listing(not_tensors)}")
    return {k.removeprefix(_DATA_PARALLEL_PREFIX): v for k, v in state.items()}


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a state-dict output: a ``.safetensors`` or ``.pt`` file name, not a folder.

    Raises:
        WeightsError: another suffix, or an existing folder.
    """
    path = Path(path)
    if path.is_dir() or str(path).endswith(os.sep):
        raise WeightsError(f"{path}: is a folder; give a file name ending in .safetensors or .pt")
    if path.suffix not in STATE_SUFFIXES:
        raise WeightsError(f"{path}: output must end in .safetensors or .pt")
    return path


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    """Write ``.safetensors`` or ``.pt`` (by suffix) atomically: never half written.

    Raises:
        WeightsError: a bad output name, or the write failed (the cause named).
    """
    path = check_output_path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            if path.suffix == ".safetensors":
                from safetensors.torch import save_file

                save_file(tensors, str(tmp))
            else:
                torch.save(tensors, tmp)
    except OSError as err:
        raise WeightsError(f"{path}: cannot write ({err.strerror or err})") from None
    return path
