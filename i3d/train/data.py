"""Training data as a reproducible, resumable stream of batches.

An epoch is a permutation of the training videos drawn from ``(seed,
epoch)`` by :class:`~torch.utils.data.distributed.DistributedSampler`, which
deals it out to the processes in turn; only whole global batches are used
(``len(dataset) // batch_size`` per epoch), so a global batch holds the same
clips whatever the number of processes. Each clip draws its start frame and
augmentation from a generator seeded by ``(seed, epoch, position in the
epoch)``, not from a generator that runs on, so that:

* the stream does not depend on the number of loader worker processes, nor
  on which worker reads which clip;
* a run resumed after ``n`` batches gets exactly the batches an
  uninterrupted run gets from batch ``n`` on, without reading the skipped ones.

A clip that cannot be read (a corrupt video or frame) stops the stream with
its one-line :class:`~i3d.errors.I3DError`, ``"<path>: <cause>"``, loader
workers or not. Skipping it instead would change the batches, and so the
run, in a way no seed reproduces; fix or drop the video and resume.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, default_collate
from torch.utils.data.distributed import DistributedSampler

from i3d.errors import I3DError

__all__ = ["ClipDataset", "ClipStream", "batches_per_epoch", "derive_seed", "clip_loader", "seeded"]

# Domain tags keep the seeds of different uses of one run seed apart.
DATA_STREAM = 0
DROPOUT_STREAM = 1
INIT_STREAM = 2  # the new layers' initial weights (i3d.train.cli)
WORKER_STREAM = 3  # the loader workers' own generators


class ClipDataset(Protocol):
    """What the trainer needs of a training set, e.g. :class:`i3d.charades.datasets.CharadesClips`.

    Item ``i`` is ``(clip, labels)``: ``(C, T, H, W)`` float network input and
    ``(num_classes, T)`` per-frame labels; all its randomness comes from the
    ``generator`` attribute as it is when the item is read.
    """

    generator: torch.Generator | None

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]: ...


def derive_seed(*keys: int) -> int:
    """A 63-bit seed mixed from non-negative integers (``numpy.random.SeedSequence``).

    Neighbouring keys give unrelated seeds, unlike ``seed + epoch``.
    """
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run the block with torch's default generators (the CPU's, and ``device``'s if CUDA) seeded
    by ``seed``, then restore them: what the block draws is a function of ``seed`` alone."""
    cuda = device is not None and device.type == "cuda"
    index = device.index if cuda and device.index is not None else 0
    with torch.random.fork_rng(devices=[index] if cuda else [], device_type="cuda" if cuda else "cpu"):
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.default_generators[index].manual_seed(seed)
        yield


def batches_per_epoch(num_clips: int, batch_size: int) -> int:
    """Whole global batches in one epoch; the remainder of the permutation is left out."""
    return num_clips // batch_size


class ClipStream(Sampler[tuple[int, int]]):
    """Endless ``(index, clip seed)`` pairs for one process, epoch after epoch.

    Args:
        num_clips: size of the training set.
        batch_size: global batch size (all processes).
        rank, world_size: this process and how many share the batches.
        seed: the run seed.
        start_batch: global batches to skip (those already trained on).

    Process ``rank`` gets, of each global batch of ``batch_size`` clips, the
    positions ``rank, rank + world_size, ...`` of the epoch's permutation.
    """

    def __init__(self, num_clips: int, batch_size: int, rank: int, world_size: int, seed: int, start_batch: int = 0):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by the number of processes {world_size}")
        if batches_per_epoch(num_clips, batch_size) < 1:
            raise ValueError(f"the training set has {num_clips} clips, fewer than one batch of {batch_size}")
        if start_batch < 0:
            raise ValueError(f"start_batch must be >= 0, got {start_batch}")
        self.num_clips = num_clips
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start_batch = start_batch

    @property
    def local_batch_size(self) -> int:
        return self.batch_size // self.world_size

    def epoch_indices(self, epoch: int) -> list[int]:
        """This process's dataset indices for ``epoch``, in order, whole batches only."""
        # DistributedSampler only reads len() of its dataset.
        sampler = DistributedSampler(
            range(self.num_clips), self.world_size, self.rank, shuffle=True, seed=self.seed, drop_last=True
        )
        sampler.set_epoch(epoch)
        used = batches_per_epoch(self.num_clips, self.batch_size) * self.local_batch_size
        return list(sampler)[:used]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        per_epoch = batches_per_epoch(self.num_clips, self.batch_size)
        epoch, batch = divmod(self.start_batch, per_epoch)
        skip = batch * self.local_batch_size
        while True:
            for local, index in enumerate(self.epoch_indices(epoch)[skip:], start=skip):
                position = self.rank + self.world_size * local
                yield index, derive_seed(DATA_STREAM, self.seed, epoch, position)
            epoch, skip = epoch + 1, 0


@dataclass(frozen=True)
class _Unreadable:
    """A clip's one-line error, carried as data.

    An exception raised in a loader worker comes back rebuilt from one
    argument, its traceback text: ``InputError(path, cause)`` cannot be, and
    arrives as a ``RuntimeError`` many lines long.
    """

    message: str


class _SeededClips(Dataset):
    """Reads item ``(index, seed)`` of ``clips`` with a generator seeded by ``seed``."""

    def __init__(self, clips: ClipDataset) -> None:
        self.clips = clips

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor] | _Unreadable:
        index, seed = key
        saved = self.clips.generator
        # The dataset reads its generator on each access; restore it so that a
        # dataset used in this process (no workers) is left as it was given.
        self.clips.generator = torch.Generator().manual_seed(seed)
        try:
            return self.clips[index]
        except I3DError as err:
            return _Unreadable(str(err))
        finally:
            self.clips.generator = saved


def _collate(items: Sequence[tuple[torch.Tensor, torch.Tensor] | _Unreadable]) -> Any:
    for item in items:
        if isinstance(item, _Unreadable):
            return item
    return default_collate(items)


class _ClipLoader(DataLoader):
    """A ``DataLoader`` that raises an unreadable clip's error in the training process."""

    def __iter__(self) -> Iterator[Any]:
        for batch in super().__iter__():
            if isinstance(batch, _Unreadable):
                raise I3DError(batch.message)
            yield batch


def clip_loader(
    clips: ClipDataset,
    stream: ClipStream,
    *,
    workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """An endless loader of this process's batches ``(clips (b, C, T, H, W), labels (b, K, T))``.

    ``workers`` processes read clips ahead; the batches are the same for any number.
    Iterating raises :class:`~i3d.errors.I3DError` with the one-line message
    of a clip that cannot be read (see the module docstring).
    """
    if not hasattr(clips, "generator"):
        raise TypeError(f"{type(clips).__name__} has no 'generator' attribute to draw its randomness from")
    # The workers' own seeds (torch, random, numpy) come from this generator,
    # not from the global one: nothing a worker draws escapes the run seed.
    workers_seed = derive_seed(WORKER_STREAM, stream.seed, stream.rank, stream.start_batch)
    return _ClipLoader(
        _SeededClips(clips),
        batch_size=stream.local_batch_size,
        sampler=stream,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=pin_memory,
        drop_last=True,
        generator=torch.Generator().manual_seed(workers_seed),
    )
