"""Splitting a batch of inputs across processes and nodes: ``--shard I/N``, ``--shard auto``, torchrun.

One rule for every batch command: part ``I`` of ``N`` takes every ``N``-th
input from ``I``, after duplicates are dropped, so that the parts are
disjoint, balanced in number and the same on every node. Imports nothing
heavy: a parser may use it.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

from i3d.argtypes import shard_spec

__all__ = ["shard_inputs", "parse_shard", "auto_shard", "distributed_shard"]

T = TypeVar("T", bound=Hashable)


def shard_inputs(inputs: Sequence[T], index: int, count: int) -> list[T]:
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


def auto_shard(env: Mapping[str, str]) -> tuple[int, int]:
    """``(index, count)`` of this task from Slurm's or torchrun's environment."""
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        return int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))


def parse_shard(text: str | None, env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``(index, count)`` of ``--shard`` (``None``: the whole batch; ``auto``: from ``env``, default the
    process's environment).

    Raises:
        ValueError: a malformed value, naming ``--shard``.
    """
    if text is None:
        return 0, 1
    if text == "auto":
        try:
            index, count = auto_shard(dict(os.environ) if env is None else env)
        except ValueError:
            raise ValueError("--shard auto: the Slurm or torchrun variables are not integers") from None
        if not 0 <= index < count:
            raise ValueError(f"--shard auto: task {index} of {count} from the environment")
        return index, count
    try:
        return shard_spec(text)
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"--shard {err}") from None
