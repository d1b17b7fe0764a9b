"""Loading a state dict into a model, strictly, with one error that says everything.

Every missing, unexpected, mis-shaped and non-floating key is listed at
once; kernels of the wrong rank are named; floating weights of another
precision are converted with a :class:`WeightsWarning`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch

from i3d.errors import WeightsError

__all__ = ["WeightsWarning", "load_weights", "model_shape", "FIRST_CONV_WEIGHT", "LOGITS_WEIGHT"]

FIRST_CONV_WEIGHT = "Conv3d_1a_7x7.conv3d.weight"  # (64, in_channels, 7, 7, 7)
LOGITS_WEIGHT = "logits.conv3d.weight"  # (num_classes, 1024, 1, 1, 1)
_KERNEL_RANK = 5  # (Cout, Cin, kT, kH, kW)
_SHOWN = 8  # keys listed in an error before "... (N in all)"


class WeightsWarning(UserWarning):
    """Weights that load, but not as stored (e.g. float16 widened to float32)."""


def _listing(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (f", ... ({len(keys)} in all)" if len(keys) > _SHOWN else "")


def model_shape(state: Mapping[str, torch.Tensor], source: str) -> tuple[int, int]:
    """``(in_channels, num_classes)`` of an I3D state dict, from its first and
    last kernels.

    Raises:
        WeightsError: a kernel is missing or is not ``(Cout, Cin, kT, kH, kW)``.
    """
    for key in (FIRST_CONV_WEIGHT, LOGITS_WEIGHT):
        if key not in state:
            raise WeightsError(f"{source}: not an I3D state dict (no {key})")
        if state[key].dim() != _KERNEL_RANK:
            raise WeightsError(f"{source}: {key} has shape {tuple(state[key].shape)}, expected (Cout, Cin, kT, kH, kW)")
    return state[FIRST_CONV_WEIGHT].shape[1], state[LOGITS_WEIGHT].shape[0]


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``model.load_state_dict(state, strict=True)`` with one error that names
    every missing, unexpected, mis-shaped and non-floating key.

    Floating weights of another precision (float16, bfloat16, float64) are
    converted to the model's with a :class:`WeightsWarning`; integer,
    boolean or complex values for floating parameters are refused, since
    casting them would silently change the model.
    """
    own = model.state_dict()
    optional = {k for k in own if k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(state) - optional)
    unexpected = sorted(set(state) - set(own))
    common = sorted(set(own) & set(state))
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in common if state[k].shape != own[k].shape
    ]
    floating = [k for k in common if own[k].is_floating_point()]
    not_float = [
        f"{k} ({str(state[k].dtype).removeprefix('torch.')})" for k in floating if not state[k].is_floating_point()
    ]
    problems = []
    for label, keys in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape mismatch", shapes),
        ("not floating point", not_float),
    ):
        if keys:
            problems.append(f"{label}: {_listing(keys)}")
    if problems:
        raise WeightsError(f"{source}: does not fit the model; " + "; ".join(problems))
    widened = sorted({str(state[k].dtype).removeprefix("torch.") for k in floating if state[k].dtype != own[k].dtype})
    if widened:
        target = str(next(iter(own.values())).dtype).removeprefix("torch.")
        warnings.warn(f"{source}: weights stored as {', '.join(widened)}, converted to {target}", WeightsWarning, 2)
    model.load_state_dict(state, strict=True)
