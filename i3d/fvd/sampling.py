"""Which clips a protocol takes from a list of videos, and how many.

:func:`plan_clips` turns the videos of the input (:func:`i3d.fvd.inputs.list_videos`)
into the clips one side (``real`` or ``gen``) of a protocol embeds, in order:

* ``first``: the first ``T`` frames (at ``step``) of each video;
* ``random-start``: a uniformly random start per video, drawn when the clip
  is read (:func:`i3d.fvd.inputs.clip_frames`), from ``(seed, position)``;
* ``random-clip``: clips drawn without replacement among all clips of all
  videos (every start), so that a video counts by its length, as a shuffled
  loader over torchvision's ``VideoClips`` draws them (VideoGPT).

then at most ``max_videos`` of them (the first ones: StyleGAN-V's datasets
discard videos too short for a clip before they are counted), cycled up to
``max_videos`` where the protocol repeats (cd-fvd's fake set). Every clip's ``index`` is its position in
the plan, so shards and KVD's order follow it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from i3d.errors import I3DError
from i3d.fvd.inputs import VideoItem, _Arrays, video_length
from i3d.fvd.protocols import Protocol

__all__ = ["plan_clips", "plan_digest", "sampling_settings"]


def _clips_in(length: int, frames: int, step: int) -> int:
    """Starts of a ``frames``-frame clip at ``step`` in ``length`` frames: none below
    ``frames * step`` frames, else ``0 .. length - frames * step + step - 1`` (see ``clip_frames``)."""
    return length - frames * step + step if length >= frames * step else 0


def _lengths(items: Sequence[VideoItem], on_error: Callable[[str], None]) -> list[int]:
    arrays, lengths = _Arrays(), []
    for item in items:
        try:
            lengths.append(video_length(item, arrays))
        except I3DError as err:
            on_error(str(err))
            lengths.append(0)
    return lengths


def plan_clips(
    items: Sequence[VideoItem],
    protocol: Protocol,
    role: str,
    num_frames: int | None,
    *,
    seed: int = 0,
    max_videos: int | None = None,
    step: int = 1,
    on_error: Callable[[str], None],
) -> list[VideoItem]:
    """The clips ``protocol`` embeds for ``role`` (see the module docstring).

    Args:
        max_videos: the cap (default: the protocol's for ``role``).
        step: frames between the clip's frames (StyleGAN-V's subsample factor).
        on_error: told about each video left out because it cannot be read
            or is too short, when the plan needs its length.
    """
    kind = protocol.clips[role]
    cap = protocol.max_videos[role] if max_videos is None else max_videos
    if kind != "first" and num_frames is None:
        raise ValueError(f"the {protocol.name} protocol draws clips: give their length (--num-frames)")
    if kind == "random-clip":
        counts = np.array([_clips_in(n, num_frames, step) for n in _lengths(items, on_error)], dtype=np.int64)
        total = int(counts.sum())
        chosen = np.random.default_rng(seed).choice(total, size=min(cap or total, total), replace=False)
        ends = np.cumsum(counts)
        owners = np.searchsorted(ends, chosen, side="right")
        starts = chosen - (ends[owners] - counts[owners])
        plan = [replace(items[o], start=int(s), step=step) for o, s in zip(owners, starts)]
    else:
        plan = list(items)
        if cap is not None and len(plan) > cap and num_frames is not None:
            lengths, kept = _lengths(plan, on_error), []
            for item, length in zip(plan, lengths):
                if _clips_in(length, num_frames, step) > 0:
                    kept.append(item)
                elif length:
                    on_error(f"{item.name}: has {length} frames, fewer than the {num_frames * step} a clip needs")
            plan = kept
        start = None if kind == "random-start" else 0
        plan = [replace(i, start=start, step=step, seed=seed) for i in plan[:cap]]
    if protocol.repeat[role] and cap is not None and plan:
        plan = [plan[k % len(plan)] for k in range(cap)]
    return [replace(item, index=k) for k, item in enumerate(plan)]


def plan_digest(plan: Sequence[VideoItem]) -> str:
    """A hash of the planned clips (video and frames): shards of one plan share it."""
    h = hashlib.sha256()
    for item in plan:
        h.update(f"{item.name}\0{item.start}\0{item.step}\0{item.seed}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:16]


def sampling_settings(protocol: Protocol, role: str, *, seed: int, max_videos: int | None, step: int) -> dict:
    """How the clips were chosen, stored with the statistics (``meta["clips"]``)."""
    kind = protocol.clips[role]
    return {
        "role": role,
        "sampling": kind,
        "step": step,
        "max_videos": protocol.max_videos[role] if max_videos is None else max_videos,
        "repeat": protocol.repeat[role],
        "seed": None if kind == "first" else seed,
    }
