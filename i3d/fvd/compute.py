"""Statistics of many videos, streamed: read clips, embed them in batches, accumulate."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable

from i3d.fvd.embed import Embedder
from i3d.fvd.inputs import clip_batches, list_videos, shard_videos
from i3d.fvd.stats import Statistics

__all__ = ["compute_statistics"]


def _print_error(message: str) -> None:
    print(f"i3d: error: {message}", file=sys.stderr)


def compute_statistics(
    inputs: Iterable[str | os.PathLike[str]],
    embedder: Embedder,
    *,
    num_frames: int | None = None,
    shard: tuple[int, int] = (0, 1),
    keep_activations: bool = False,
    on_error: Callable[[str], None] = _print_error,
    progress: bool = False,
) -> Statistics:
    """FVD statistics of every video in ``inputs`` (see :mod:`i3d.fvd.inputs`).

    Memory holds one batch of clips and the ``400 x 400`` sums, whatever the
    number of videos (plus 3.2 kB a video with ``keep_activations``).

    Args:
        num_frames: clip length: the first ``num_frames`` frames of each
            video (all of them if ``None``; clips of different lengths or
            sizes are embedded in separate batches).
        shard: ``(I, N)``: only every ``N``-th video from the ``I``-th; the
            statistics of all ``N`` shards merge into those of the whole.
        keep_activations: keep the embeddings too (for KVD).
        on_error: called with a one-line message for each video that cannot
            be read; the others go on.
    """
    items = shard_videos(list_videos(inputs, on_error), *shard)
    stats = Statistics(keep_activations=keep_activations, meta=embedder.settings(num_frames))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(items), unit="video", desc="fvd", file=sys.stderr)
    for batch_items, clips in clip_batches(items, num_frames, embedder.batch_size, on_error):
        stats.update(embedder(clips), indices=[item.index for item in batch_items])
        if bar is not None:
            bar.update(len(batch_items))
    if bar is not None:
        bar.close()
    return stats
