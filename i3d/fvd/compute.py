"""Statistics of many videos, streamed: read clips, embed them in batches, accumulate."""

from __future__ import annotations

import contextvars
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from i3d import console
from i3d.fvd.embedding import Embedder
from i3d.fvd.inputs import clip_batches, list_videos
from i3d.fvd.sampling import plan_clips, plan_digest, sampling_settings
from i3d.fvd.stats import Statistics
from i3d.progress import Progress
from i3d.sharding import shard_inputs

__all__ = ["compute_statistics"]

_T = TypeVar("_T")
# Batches read ahead of the network: enough to hide decoding behind a GPU.
READ_AHEAD = 2
_POLL_SECONDS = 0.1


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

    # The thread runs in a copy of this context, so that its error messages
    # speak as the running command (``i3d fvd stats: error: ...``).
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(produce,), name="i3d-fvd-read", daemon=True)
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
    on_error: Callable[[str], None] = console.error,
    progress: bool = False,
    role: str = "real",
    seed: int = 0,
    max_videos: int | None = None,
    step: int = 1,
) -> Statistics:
    """FVD statistics of the clips that ``embedder``'s protocol takes from ``inputs``
    (see :mod:`i3d.fvd.inputs` and :mod:`i3d.fvd.sampling`).

    Memory holds one batch of clips and the ``400 x 400`` sums, whatever the
    number of videos (plus 3.2 kB a video with ``keep_activations``).

    Args:
        num_frames: clip length (all frames if ``None``; clips of
            different lengths or sizes are embedded in separate batches).
        shard: ``(I, N)``: only every ``N``-th video from the ``I``-th; the
            statistics of all ``N`` shards merge into those of the whole.
        keep_activations: keep the embeddings too (for KVD).
        on_error: called with a one-line message for each video that cannot
            be read; the others go on.
        progress: report videos done on stderr (:class:`i3d.progress.Progress`:
            a status line on a terminal, a line every 30 s elsewhere).
        role, seed, max_videos, step: which clips the protocol takes
            (:func:`i3d.fvd.sampling.plan_clips`).
    """
    protocol = embedder.protocol
    plan = plan_clips(
        list_videos(inputs, on_error),
        protocol,
        role,
        num_frames,
        seed=seed,
        max_videos=max_videos,
        step=step,
        on_error=on_error,
    )
    items = shard_inputs(plan, *shard)
    meta = embedder.settings(num_frames)
    if protocol.name != "reference" or step != 1 or max_videos is not None:
        meta["clips"] = sampling_settings(protocol, role, seed=seed, max_videos=max_videos, step=step)
    stats = Statistics(keep_activations=keep_activations, meta=meta)
    stats.parts = [(plan_digest(plan), *shard)]
    bar = Progress(console.current_command(), None, unit="videos", quiet=not progress)
    bar.start("", len(items))
    try:
        for batch_items, clips in read_ahead(clip_batches(items, num_frames, embedder.batch_size, on_error)):
            stats.update(embedder(clips), indices=[item.index for item in batch_items])
            bar.advance(len(batch_items))
    finally:
        bar.clear()
    return stats
