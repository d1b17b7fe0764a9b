"""Statistics of many videos, streamed: read clips, embed them in batches, accumulate."""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from i3d import console
from i3d.fvd.embed import Embedder
from i3d.fvd.inputs import clip_batches, list_videos, shard_videos
from i3d.fvd.stats import Statistics

__all__ = ["compute_statistics"]

_T = TypeVar("_T")
# Batches read ahead of the network: enough to hide decoding behind a GPU.
READ_AHEAD = 2
_POLL_SECONDS = 0.1


def _print_error(message: str) -> None:
    console.error(message)


def read_ahead(items: Iterable[_T], depth: int = READ_AHEAD) -> Iterator[_T]:
    """``items``, produced by a background thread up to ``depth`` ahead.

    Decoding (FFmpeg, JPEG) and array copies release the GIL, so reading
    overlaps the network. An exception in the thread is raised here, in
    order; closing this generator stops the thread.
    """
    slots: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(message: tuple[str, object]) -> bool:
        while not stop.is_set():
            try:
                slots.put(message, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(("item", item)):
                    return
            put(("done", None))
        except BaseException as err:  # handed to the consumer, raised there
            put(("error", err))

    thread = threading.Thread(target=produce, name="i3d-fvd-read", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "done":
                return
            if kind == "error":
                raise value  # type: ignore[misc]
            yield value  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()


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
    for batch_items, clips in read_ahead(clip_batches(items, num_frames, embedder.batch_size, on_error)):
        stats.update(embedder(clips), indices=[item.index for item in batch_items])
        if bar is not None:
            bar.update(len(batch_items))
    if bar is not None:
        bar.close()
    return stats
