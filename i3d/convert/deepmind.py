"""DeepMind's ``kinetics-i3d`` TensorFlow variables -> :class:`~i3d.model.InceptionI3d` state dict.

Variable names are ``[<scope>/]<unit>/<leaf>``: the scope is
``RGB/inception_i3d`` or ``Flow/inception_i3d`` in the four Kinetics-400
releases and empty in the Kinetics-600 one.  Units and leaves map as::

    Conv3d_1a_7x7, Conv3d_2b_1x1, Conv3d_2c_3x3     -> same name
    Mixed_XX/Branch_0/Conv3d_0a_1x1                  -> Mixed_XX.b0
    Mixed_XX/Branch_1/Conv3d_0a_1x1, .../Conv3d_0b_3x3 -> Mixed_XX.b1a, .b1b
    Mixed_XX/Branch_2/Conv3d_0a_1x1, .../Conv3d_0b_3x3 -> Mixed_XX.b2a, .b2b
    Mixed_5b/Branch_2/Conv3d_0a_3x3 (DeepMind's name) -> Mixed_5b.b2b
    Mixed_XX/Branch_3/Conv3d_0b_1x1                  -> Mixed_XX.b3b
    Logits/Conv3d_0c_1x1                             -> logits

    conv_3d/w (kT, kH, kW, Cin, Cout) -> conv3d.weight (Cout, Cin, kT, kH, kW)
    conv_3d/b (Cout,)                 -> conv3d.bias
    batch_norm/beta                   -> bn.bias
    batch_norm/gamma                  -> bn.weight (ones when absent: the
                                         release trained without a scale)
    batch_norm/moving_mean            -> bn.running_mean
    batch_norm/moving_variance        -> bn.running_var

BatchNorm vectors are stored as ``(C,)`` in the Kinetics-400 releases and as
``(1, 1, 1, 1, C)`` in the Kinetics-600 one.  Any other variable (optimizer
slots such as ``.../w/Momentum``, ``global_step``) is not part of the model
and is ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from i3d.convert.crc32c import crc32c, unmask
from i3d.convert.state_file import check_output_path, save_state_dict
from i3d.convert.tf_checkpoint import SUPPORTED_DTYPES, CheckpointReader
from i3d.errors import CheckpointError

STEM_UNITS = ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3")
BRANCH_UNITS = {
    "Branch_0/Conv3d_0a_1x1": "b0",
    "Branch_1/Conv3d_0a_1x1": "b1a",
    "Branch_1/Conv3d_0b_3x3": "b1b",
    "Branch_2/Conv3d_0a_1x1": "b2a",
    "Branch_2/Conv3d_0b_3x3": "b2b",
    "Branch_3/Conv3d_0b_1x1": "b3b",
}
# The release names Mixed_5b's second branch-2 convolution "0a_3x3", not "0b_3x3".
MISNAMED_UNITS = {"Mixed_5b/Branch_2/Conv3d_0a_3x3": "Mixed_5b.b2b"}
LOGITS_UNIT = ("Logits/Conv3d_0c_1x1", "logits")
LEAVES = {
    "conv_3d/w": "conv3d.weight",
    "conv_3d/b": "conv3d.bias",
    "batch_norm/beta": "bn.bias",
    "batch_norm/gamma": "bn.weight",
    "batch_norm/moving_mean": "bn.running_mean",
    "batch_norm/moving_variance": "bn.running_var",
}
_MIXED_BLOCK = re.compile(r"Mixed_\d[a-z]")
# TF kernel (kT, kH, kW, Cin, Cout) -> PyTorch (Cout, Cin, kT, kH, kW), and back.
_KERNEL_TO_TORCH = (4, 3, 0, 1, 2)
_KERNEL_TO_TF = (2, 3, 4, 1, 0)
_TF_FLOAT32 = 1  # DataType enum of float32
_KERNEL_RANK = 5
_FIRST_CONV = "Conv3d_1a_7x7.conv3d.weight"
_LOGITS_BIAS = "logits.conv3d.bias"
_NUM_BATCHES_TRACKED = "num_batches_tracked"
_SHOWN = 6  # names listed in an error before "... (N in all)"


@dataclass(frozen=True)
class DeepMindVariable:
    """Where one model variable of the checkpoint goes."""

    scope: str  # "RGB/inception_i3d", "Flow/inception_i3d" or ""
    key: str  # state-dict key, e.g. "Mixed_3b.b1b.conv3d.weight"


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert_checkpoint` did: ``tensors`` state-dict entries
    written, ``ignored`` checkpoint variables that are not model weights."""

    source: Path
    destination: Path
    scope: str
    in_channels: int
    num_classes: int
    tensors: int
    ignored: tuple[str, ...]


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOWN else "")


def parse_variable(name: str) -> DeepMindVariable | None:
    """Map one DeepMind variable name; ``None`` for variables that are not model weights.

    Raises:
        ValueError: the name ends like a weight (``conv_3d/w``,
            ``batch_norm/beta``, ...) but its unit is not part of I3D.
    """
    parts = name.split("/")
    leaf = LEAVES.get("/".join(parts[-2:]))
    if leaf is None:
        return None
    unit = parts[:-2]
    if unit and unit[-1] in STEM_UNITS:
        depth, module = 1, unit[-1]
    elif "/".join(unit[-2:]) == LOGITS_UNIT[0]:
        depth, module = 2, LOGITS_UNIT[1]
    elif len(unit) >= 3 and _MIXED_BLOCK.fullmatch(unit[-3]) and "/".join(unit[-2:]) in BRANCH_UNITS:
        depth, module = 3, f"{unit[-3]}.{BRANCH_UNITS['/'.join(unit[-2:])]}"
    elif "/".join(unit[-3:]) in MISNAMED_UNITS:
        depth, module = 3, MISNAMED_UNITS["/".join(unit[-3:])]
    else:
        raise ValueError(f"{name!r} looks like a weight but names no I3D unit")
    return DeepMindVariable(scope="/".join(unit[:-depth]), key=f"{module}.{leaf}")


@dataclass(frozen=True)
class VariableSplit:
    """A checkpoint's variable names sorted by :func:`split_variables`."""

    weights: dict[str, str]  # TF name -> state-dict key
    ignored: tuple[str, ...]  # not model weights, or weights of another scope
    scope: str  # the model's scope, "" for none


def split_variables(names: Iterable[str], scope: str | None = None) -> VariableSplit:
    """Sort checkpoint variable names into one model's weights and the rest.

    Args:
        names: the checkpoint's variable names.
        scope: keep only weights under this scope (``"RGB"``,
            ``"Flow/inception_i3d"``, ``""``, ...); needed only when the
            checkpoint holds more than one model.

    Raises:
        ValueError: an unknown unit, several scopes and no ``scope`` given,
            no weights at all, or two variables that map to the same key.
    """
    parsed = {}
    ignored = []
    for name in names:
        variable = parse_variable(name)
        if variable is None:
            ignored.append(name)
        else:
            parsed[name] = variable
    scopes = sorted({variable.scope for variable in parsed.values()})
    if not scopes:
        raise ValueError("no I3D weights among the variables")
    if scope is None:
        if len(scopes) > 1:
            raise ValueError(f"the checkpoint holds several models, scopes {scopes}; choose one")
        chosen = scopes[0]
    else:
        matches = [s for s in scopes if s == scope.strip("/") or s.startswith(scope.strip("/") + "/")]
        if len(matches) != 1:
            raise ValueError(f"scope {scope!r} matches {len(matches)} of the checkpoint's scopes {scopes}")
        chosen = matches[0]
    weights: dict[str, str] = {}
    owner: dict[str, str] = {}
    for name, variable in parsed.items():
        if variable.scope != chosen:
            ignored.append(name)
        elif variable.key in owner:
            raise ValueError(f"{owner[variable.key]!r} and {name!r} both map to {variable.key}")
        else:
            owner[variable.key] = name
            weights[name] = variable.key
    return VariableSplit(weights, tuple(sorted(ignored)), chosen)


def _vector(name: str, array: np.ndarray) -> np.ndarray:
    """``(C,)`` or ``(1, ..., 1, C)`` -> ``(C,)``."""
    if array.ndim == 0 or any(size != 1 for size in array.shape[:-1]):
        raise ValueError(f"{name!r}: expected a vector (C,) or (1, ..., 1, C), got shape {array.shape}")
    return array.reshape(-1)


def model_state_shapes(in_channels: int, num_classes: int) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``InceptionI3d(num_classes, in_channels=...).state_dict()``, built without allocating weights."""
    from i3d.model import InceptionI3d

    with torch.device("meta"):
        model = InceptionI3d(num_classes=num_classes, in_channels=in_channels)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def convert_deepmind(
    variables: Mapping[str, np.ndarray],
    *,
    scope: str | None = None,
    expected: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, torch.Tensor]:
    """Convert DeepMind's variables to an :class:`~i3d.model.InceptionI3d` state dict.

    Args:
        variables: name -> value as stored by TensorFlow (e.g.
            :meth:`CheckpointReader.read_all`); non-model variables are ignored
            (list them with :func:`split_variables`).
        scope: see :func:`split_variables`.
        expected: key -> shape the result must have exactly; default: the
            model's state dict for the input channels (first kernel's
            ``Cin``) and classes (logits bias) found in ``variables``.

    Returns:
        float32 tensors: every key of ``expected``, each from exactly one
        variable, with BatchNorm weights of ones where the checkpoint has no
        ``gamma`` and ``num_batches_tracked`` of 0.

    Raises:
        ValueError: unknown units, ambiguous scopes, duplicates, missing or
            unexpected keys, or wrong shapes; the message lists them.
    """
    state: dict[str, torch.Tensor] = {}
    for name, key in split_variables(variables, scope).weights.items():
        array = np.asarray(variables[name])
        if array.dtype.kind != "f":
            raise ValueError(f"{name!r}: weights must be floating point, got {array.dtype}")
        array = array.astype(np.float32, copy=False)
        if key.endswith("conv3d.weight"):
            if array.ndim != _KERNEL_RANK:
                raise ValueError(f"{name!r}: expected a (kT, kH, kW, Cin, Cout) kernel, got shape {array.shape}")
            array = array.transpose(_KERNEL_TO_TORCH)
        else:
            array = _vector(name, array)
        state[key] = torch.from_numpy(np.ascontiguousarray(array))
    for key in [k for k in state if k.endswith("bn.bias")]:
        unit = key[: -len("bias")]
        state.setdefault(unit + "weight", torch.ones_like(state[key]))
        state[unit + _NUM_BATCHES_TRACKED] = torch.zeros((), dtype=torch.long)

    if expected is None:
        if _FIRST_CONV not in state or _LOGITS_BIAS not in state:
            raise ValueError("missing the first convolution or the logits bias; cannot tell the model's shape")
        expected = model_state_shapes(in_channels=state[_FIRST_CONV].shape[1], num_classes=state[_LOGITS_BIAS].shape[0])
    problems = []
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(
        f"{key} {tuple(state[key].shape)} vs {tuple(expected[key])}"
        for key in set(expected) & set(state)
        if tuple(state[key].shape) != tuple(expected[key])
    )
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)):
        if keys:
            problems.append(f"{label}: {_listing(keys)}")
    if problems:
        raise ValueError("the variables do not fit the model; " + "; ".join(problems))
    return state


def convert_deepmind_checkpoint(path: str | os.PathLike[str], *, scope: str | None = None) -> dict[str, torch.Tensor]:
    """Read a DeepMind checkpoint (prefix or ``.index``) and convert it; see :func:`convert_deepmind`.

    Only the model's variables are read from the data file (and checksummed).

    Raises:
        CheckpointError: unreadable checkpoint or variables that do not fit
            the model; the message names the file and the cause.
    """
    return _convert(CheckpointReader(path), scope)[0]


def _convert(reader: CheckpointReader, scope: str | None) -> tuple[dict[str, torch.Tensor], VariableSplit]:
    try:
        split = split_variables(reader.variables(), scope)
        state = convert_deepmind(reader.read_all(split.weights), scope=scope)
    except ValueError as err:
        raise CheckpointError(reader.index_path, str(err)) from None
    return state, split


def convert_checkpoint(
    source: str | os.PathLike[str], destination: str | os.PathLike[str], *, scope: str | None = None
) -> ConversionReport:
    """Convert a DeepMind checkpoint to ``.safetensors`` or ``.pt`` (by suffix).

    The output is written to a temporary file beside it and renamed into
    place, so it is never left half written.

    Args:
        source: the checkpoint prefix (``.../model.ckpt``) or its ``.index``
            file; the ``.data-*`` files must sit beside it.
        destination: output path ending in ``.safetensors`` or ``.pt``.
        scope: see :func:`split_variables`.

    Raises:
        CheckpointError: unreadable or unsuitable checkpoint.
        WeightsError: unsupported output suffix, a folder, or a failed write.
    """
    check_output_path(destination)  # before the (slow) read
    reader = CheckpointReader(source)
    state, split = _convert(reader, scope)
    return ConversionReport(
        source=reader.prefix,
        destination=save_state_dict(state, destination),
        scope=split.scope,
        in_channels=state[_FIRST_CONV].shape[1],
        num_classes=state[_LOGITS_BIAS].shape[0],
        tensors=len(state),
        ignored=split.ignored,
    )


def verify_against_index(state: Mapping[str, torch.Tensor], index: str | os.PathLike[str]) -> int:
    """Check every tensor of ``state`` against the CRC-32C that DeepMind's
    ``.index`` records for it; returns the number of tensors checked.

    Each model variable of the index is taken from ``state``, put back in
    TensorFlow's layout (kernels ``(kT, kH, kW, Cin, Cout)``, vectors in the
    index's shape) as little-endian float32, and its CRC-32C compared with
    the (unmasked) checksum of the index. The keys the index does not cover
    must be BatchNorm scales of ones (the release trained without a scale)
    or ``num_batches_tracked``.

    Raises:
        CheckpointError: unreadable index (names the index).
        ValueError: missing, extra, mis-shaped, non-float32 or differing
            tensors; the message lists them (the caller names the file).
    """
    reader = CheckpointReader(index)
    split = split_variables(reader.variables())
    differing, missing = [], []
    for name, key in split.weights.items():
        entry = reader.entries[name]
        tensor = state.get(key)
        if tensor is None:
            missing.append(key)
            continue
        if entry.dtype_enum != _TF_FLOAT32 or tensor.dtype != torch.float32:
            differing.append(f"{key} ({str(tensor.dtype).removeprefix('torch.')}, index {entry.dtype})")
            continue
        array = tensor.detach().cpu().numpy()
        if key.endswith("conv3d.weight") and array.ndim == _KERNEL_RANK:
            array = array.transpose(_KERNEL_TO_TF)
        if array.size != int(np.prod(entry.shape, dtype=np.int64)):
            differing.append(f"{key} (shape {tuple(tensor.shape)}, index {entry.shape})")
            continue
        data = np.ascontiguousarray(array.reshape(entry.shape), dtype=SUPPORTED_DTYPES[_TF_FLOAT32])
        if crc32c(data) != unmask(entry.masked_crc32c):
            differing.append(f"{key} (crc32c differs from {name})")
    covered = set(split.weights.values())
    extra = []
    for key in sorted(set(state) - covered):
        if key.endswith(_NUM_BATCHES_TRACKED):
            continue
        if key.endswith("bn.weight") and key not in covered and bool(torch.all(state[key] == 1)):
            continue  # no gamma in the release: the scale is one
        extra.append(key)
    problems = [
        f"{label}: {_listing(keys)}"
        for label, keys in (("differ", differing), ("missing", missing), ("not in the release", extra))
        if keys
    ]
    if problems:
        raise ValueError(f"does not match DeepMind's checksums in {reader.index_path.name}; " + "; ".join(problems))
    return len(split.weights)
