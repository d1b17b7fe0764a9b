"""The training data stream: reproducible, resumable, the same for any number of processes and workers."""

from __future__ import annotations

from itertools import islice

import pytest
import torch

from i3d.errors import I3DError, VideoError
from i3d.train.data import ClipStream, batches_per_epoch, clip_loader, derive_seed


class RandomClips:
    """Items drawn from the ``generator`` attribute, as CharadesClips draws its clips."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.generator: torch.Generator | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        clip = torch.full((1, 2, 1, 1), float(index)) + torch.rand((1, 2, 1, 1), generator=self.generator)
        return clip, torch.zeros(3, 2)


def global_batches(n: int, batch: int, world: int, count: int, start: int = 0) -> list[set[tuple[int, int]]]:
    """The first ``count`` global batches, as sets of (index, seed), put together from every rank."""
    local = batch // world
    streams = [ClipStream(n, batch, r, world, seed=7, start_batch=start) for r in range(world)]
    per_rank = [list(islice(stream, count * local)) for stream in streams]
    return [set().union(*(items[k * local : (k + 1) * local] for items in per_rank)) for k in range(count)]


def test_global_batches_do_not_depend_on_the_number_of_processes():
    single = global_batches(10, 4, 1, 6)
    assert global_batches(10, 4, 2, 6) == single
    assert global_batches(10, 4, 4, 6) == single


def test_epochs_are_permutations_of_whole_batches():
    per_epoch = batches_per_epoch(10, 4)
    assert per_epoch == 2
    batches = global_batches(10, 4, 1, 3 * per_epoch)
    epochs = [set().union(*batches[e * per_epoch : (e + 1) * per_epoch]) for e in range(3)]
    for epoch in epochs:
        assert len({index for index, _ in epoch}) == 8  # 10 // 4 whole batches, no repeats
    orders = [[index for b in batches[e * per_epoch : (e + 1) * per_epoch] for index, _ in sorted(b)] for e in range(3)]
    assert len({tuple(o) for o in orders}) > 1
    seeds = {seed for epoch in epochs for _, seed in epoch}
    assert len(seeds) == 24  # every clip of every epoch gets its own augmentation


def test_a_resumed_stream_continues_the_uninterrupted_one():
    straight = list(islice(ClipStream(10, 4, 1, 2, seed=3), 40))
    for start in (1, 2, 5):
        resumed = list(islice(ClipStream(10, 4, 1, 2, seed=3, start_batch=start), 40 - 2 * start))
        assert resumed == straight[2 * start :]


def test_loader_batches_do_not_depend_on_workers():
    def first_batches(workers: int) -> list[torch.Tensor]:
        loader = clip_loader(RandomClips(7), ClipStream(7, 2, 0, 1, seed=1), workers=workers)
        return [clips for clips, _ in islice(loader, 5)]

    in_process = first_batches(0)
    with_workers = first_batches(2)
    assert all(torch.equal(a, b) for a, b in zip(in_process, with_workers, strict=True))
    assert in_process[0].shape == (2, 1, 2, 1, 1)


def test_the_dataset_generator_is_left_as_given():
    clips = RandomClips(4)
    mine = torch.Generator()
    clips.generator = mine
    next(iter(clip_loader(clips, ClipStream(4, 2, 0, 1, seed=0))))
    assert clips.generator is mine


def test_seeds_are_mixed():
    seeds = {derive_seed(0, 1, e, p) for e in range(10) for p in range(10)}
    assert len(seeds) == 100 and all(0 <= s < 2**63 for s in seeds)
    assert derive_seed(1, 2) != derive_seed(2, 1)


def test_impossible_streams_are_refused():
    with pytest.raises(ValueError, match="not divisible"):
        ClipStream(10, 3, 0, 2, seed=0)
    with pytest.raises(ValueError, match="fewer than one batch"):
        ClipStream(3, 4, 0, 1, seed=0)
    with pytest.raises(TypeError, match="generator"):
        clip_loader([(torch.zeros(1), torch.zeros(1))] * 4, ClipStream(4, 2, 0, 1, seed=0))


class UnreadableClips(RandomClips):
    """Clip 3 is a corrupt video."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if index == 3:
            raise VideoError("/data/BAD01.mp4", "corrupt stream near 1.20 s (Invalid data)")
        return super().__getitem__(index)


@pytest.mark.parametrize("workers", [0, 2])
def test_an_unreadable_clip_is_a_one_line_error(workers):
    loader = clip_loader(UnreadableClips(4), ClipStream(4, 2, 0, 1, seed=0), workers=workers)
    with pytest.raises(I3DError) as info:
        for _ in islice(loader, 2):  # one epoch: every clip
            pass
    assert str(info.value) == "/data/BAD01.mp4: corrupt stream near 1.20 s (Invalid data)"
