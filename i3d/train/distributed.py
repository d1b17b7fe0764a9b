"""Processes that train together: ``torchrun`` environment, process group, collectives.

Under ``torchrun`` every process gets ``RANK`` (0 .. ``WORLD_SIZE`` - 1 over
all nodes), ``WORLD_SIZE`` and ``LOCAL_RANK`` (its index on its node, which
picks its GPU), plus ``MASTER_ADDR`` / ``MASTER_PORT`` for the rendezvous.
Without them a run is a single process and every collective here is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from i3d.errors import I3DError

__all__ = [
    "World",
    "world_from_env",
    "device_for",
    "process_group",
    "broadcast_object",
    "gather_objects",
    "broadcast_buffers",
    "barrier",
]


@dataclass(frozen=True)
class World:
    """This process's place among those training together."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes logs, checkpoints and the model."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def current(cls) -> World:
        """The initialized process group's world (``LOCAL_RANK`` from the environment), else a single process."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise I3DError(f"environment variable {name}={text!r} is not an integer") from None


def world_from_env() -> World:
    """``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` as ``torchrun`` sets them (a single process when unset)."""
    world = World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if world.world_size < 1 or not 0 <= world.rank < world.world_size or world.local_rank < 0:
        raise I3DError(
            f"inconsistent torchrun environment: RANK={world.rank} WORLD_SIZE={world.world_size} "
            f"LOCAL_RANK={world.local_rank}"
        )
    return world


def device_for(device: torch.device, world: World) -> torch.device:
    """``device`` with the process's GPU index (``LOCAL_RANK``) filled in when it has none."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", world.local_rank)
    return device


@contextmanager
def process_group(device: torch.device) -> Iterator[World]:
    """Join the processes of ``torchrun`` for the duration of the block.

    NCCL connects the processes on CUDA, Gloo on the CPU. With ``WORLD_SIZE``
    unset or 1, or with a process group already initialized (then left
    open), nothing is set up.
    """
    world = world_from_env()
    if not world.distributed or dist.is_initialized():
        yield World.current()
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
        # Binding the process to its GPU lets NCCL set up its communicator for that device.
        options = {"backend": "nccl", "device_id": device}
    else:
        options = {"backend": "gloo"}
    dist.init_process_group(init_method="env://", rank=world.rank, world_size=world.world_size, **options)
    try:
        yield world
    finally:
        dist.destroy_process_group()


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every process (pickled between processes of this run only)."""
    if not world.distributed:
        return obj
    box = [obj if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every process's ``obj``, in rank order, on every process."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: nn.Module, world: World) -> None:
    """Give every process rank 0's buffers (BatchNorm statistics).

    DistributedDataParallel averages gradients, so parameters agree, but each
    process updates its running statistics from its own clips; the model
    that rank 0 saves is the one every process should hold.
    """
    if not world.distributed:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
