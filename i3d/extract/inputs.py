"""Which inputs a run (or a shard of it) takes, and their output names.

The input model and the naming rule are those of every command
(:mod:`i3d.video.listing`); this adds the sharding of a batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from i3d.video.inputs import source_name
from i3d.video.listing import check_collisions, expand_inputs, output_names

__all__ = ["expand_inputs", "output_names", "port_names", "check_collisions", "shard_inputs", "distributed_shard"]


def port_names(inputs: Sequence[str]) -> dict[str, str]:
    """Names of the ``port`` layout: the video id (file stem or folder name),
    as the PyTorch port named its feature files; two inputs of one id are
    refused by :func:`check_collisions`."""
    return {i: source_name(i) for i in inputs}


def shard_inputs(inputs: Sequence[str], index: int, count: int) -> list[str]:
    """Part ``index`` of ``count`` disjoint parts that together cover
    ``inputs``: every ``count``-th input, starting at ``index``, after the
    duplicates are dropped (deterministic, balanced in number)."""
    if not 0 <= index < count:
        raise ValueError(f"shard index must be in [0, {count}), got {index}")
    unique = list(dict.fromkeys(inputs))
    return unique[index::count]


def distributed_shard() -> tuple[int, int]:
    """``(rank, world_size)`` from torchrun's environment, else ``(0, 1)``."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
