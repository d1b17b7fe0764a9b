"""Which inputs a run (or a shard of it) takes, and their output names.

The input model and the naming rule are those of every command
(:mod:`i3d.video.listing`); the sharding of a batch is :mod:`i3d.sharding`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from i3d.sharding import distributed_shard, shard_inputs
from i3d.video.listing import check_collisions, expand_inputs, output_names, source_name

__all__ = ["expand_inputs", "output_names", "port_names", "check_collisions", "shard_inputs", "distributed_shard"]


def port_names(inputs: Sequence[str]) -> dict[str, str]:
    """Names of the ``port`` layout: the video id (file stem or folder name),
    as the PyTorch port named its feature files; two inputs of one id are
    refused by :func:`check_collisions`."""
    return {i: source_name(i) for i in inputs}
