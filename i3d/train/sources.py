"""From a resolved ``i3d train`` config to training data and validation.

* Charades (``data.format = "charades"``): the official CSV or the port's
  JSON split; videos missing under the root are skipped with a warning (as
  the port did), the others go through the pre-flight index.
* Class folders, plain CSV, Kinetics CSV: :mod:`i3d.train.datasets` lists,
  :func:`i3d.train.clips.index_videos`, training clips and clip validation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from i3d import console
from i3d.charades.annotations import Subset, Video, read_csv, read_split_json
from i3d.charades.datasets import CharadesClips, CharadesVideos, source_path
from i3d.errors import I3DError, InputError
from i3d.train.clips import TrainingClips, ValidationClips, index_videos
from i3d.train.datasets import LabelledVideo, VideoList, read_class_folders, read_flip_map, read_video_list
from i3d.train.distributed import World
from i3d.train.recipe import Recipe
from i3d.train.validation import ClipValidation, Validator
from i3d.video.flow import FlowEngine, default_workers
from i3d.video.presets import Preprocess
from i3d.video.readers import CHARADES_FPS

__all__ = [
    "read_videos",
    "charades_data",
    "video_lists",
    "clip_data",
    "clip_preprocess",
    "cpu_share",
    "warning_printer",
]

# How many missing ids an error or warning names.
_IDS_SHOWN = 3


def cpu_share() -> int:
    """The CPUs this process may use shared among the node's training processes."""
    local_processes = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    return max(default_workers() // local_processes, 1)


def warning_printer(world: World) -> Callable[[str], None]:
    """Rank 0 prints warnings (:func:`i3d.console.warning`); the others keep quiet."""
    return console.warning if world.is_main else (lambda message: None)


# ---- Charades ------------------------------------------------------------------------------


def read_videos(path: Path, subset: Subset) -> list[Video]:
    """An official CSV, or the port's JSON split (its ``subset`` videos)."""
    if Path(path).suffix.lower() == ".json":
        return [v for v in read_split_json(path) if v.subset == subset]
    return read_csv(path)


def _present(videos: list[Video], data: dict[str, Any], what: str, warn: bool) -> list[Video]:
    """The videos whose frames (or file) are under ``--root``; a warning names the others (the port skipped them)."""
    root = Path(data["root"])
    found = [source_path(root, v.id, data["video_ext"]).exists() for v in videos]
    present = [v for v, ok in zip(videos, found) if ok]
    missing = [v.id for v, ok in zip(videos, found) if not ok]
    if not present:
        shown = ", ".join(missing[:_IDS_SHOWN])
        raise I3DError(f"{root}: none of the {len(videos)} {what} videos is there (e.g. {shown})")
    if missing and warn:
        shown = ", ".join(missing[:_IDS_SHOWN]) + (", ..." if len(missing) > _IDS_SHOWN else "")
        console.warning(f"{len(missing)} of {len(videos)} {what} videos are not in {root}, skipped ({shown})")
    return present


def _readable(
    videos: list[Video], data: dict[str, Any], preprocess: Preprocess, what: str, world: World
) -> list[Video]:
    """The pre-flight index of Charades videos: the readable ones (or an error, by ``on_broken``)."""
    entries = [LabelledVideo(source_path(data["root"], v.id, data["video_ext"]), (), key=v.id) for v in videos]
    indexed = index_videos(
        entries,
        preprocess,
        source_fps=CHARADES_FPS,
        on_broken=data["on_broken"],
        what=what,
        workers=cpu_share(),
        warn=warning_printer(world),
    )
    keep = {item.video.key for item in indexed}
    return [v for v in videos if v.id in keep]


def charades_data(
    config: dict, recipe: Recipe, world: World, val_flow: FlowEngine
) -> tuple[CharadesClips, CharadesVideos | None]:
    """Training clips and validation videos of the readable videos under ``--root``.

    Training clips compute flow (where they must) in the loader workers, one
    TV-L1 process each; validation shares ``val_flow``.
    """
    data = config["data"]
    preprocess = recipe.preprocess(data["stream"])
    sources = {"video_ext": data["video_ext"], "num_classes": recipe.num_classes, "flow_dir": data["flow_dir"]}
    train = _present(read_videos(data["train"], "training"), data, "training", world.is_main)
    train = _readable(train, data, preprocess, "training", world)
    # Loader workers already read clips in parallel: one TV-L1 thread each, on
    # the CPU (a forked loader worker cannot use CUDA).
    train_flow = FlowEngine(workers=1, engine=data["flow_engine"], device="cpu")
    hflip = data["hflip"] == "on"
    train_data = CharadesClips(
        data["root"], train, preprocess, recipe.clip_frames, hflip=hflip, flow_engine=train_flow, **sources
    )
    if data["val"] is None:
        return train_data, None
    val = _present(read_videos(data["val"], "testing"), data, "validation", world.is_main)
    val = _readable(val, data, preprocess, "validation", world)
    return train_data, CharadesVideos(data["root"], val, preprocess, flow_engine=val_flow, **sources)


# ---- any dataset -------------------------------------------------------------------------------


def _check_classes(train: VideoList, folders: bool, warn: bool) -> None:
    """At least two classes with training videos; a warning names the classes without any."""
    counts = [0] * train.num_classes
    for video in train.videos:
        for label in video.labels:
            counts[label] += 1
    present = [name for name, n in zip(train.classes, counts) if n]
    if len(present) < 2:
        only = f"only {present[0]!r}" if present else "none"
        raise InputError(
            train.source, f"{only} of its {train.num_classes} class(es) has training videos; a classifier needs two"
        )
    empty = [name for name, n in zip(train.classes, counts) if not n]
    if empty and warn:
        shown = ", ".join(map(repr, empty[:_IDS_SHOWN])) + (", ..." if len(empty) > _IDS_SHOWN else "")
        where = "class folder(s) without videos" if folders else "class(es) without training videos"
        console.warning(f"{train.source}: {len(empty)} {where}, trained as never seen: {shown}")


def video_lists(data: dict[str, Any], warn: bool = True) -> tuple[VideoList, VideoList | None]:
    """The training and validation lists of a class-folder, CSV or Kinetics dataset.

    Raises:
        I3DError: fewer than two classes with training videos (``warn``: a
            warning names the classes without any).
    """
    train = read_video_list(data["format"], data["root"] or ".", data["train"], data["classes"])
    _check_classes(train, data["format"] == "folders" and data["train"] is None, warn)
    if data["val"] is not None:
        val = read_video_list(data["format"], data["root"] or ".", data["val"], train.classes)
    elif data["format"] == "folders" and data["val_root"] is not None:
        val = read_class_folders(data["val_root"], None, train.classes)
    else:
        return train, None
    if val.multi_label != train.multi_label and not train.multi_label:
        raise I3DError(f"{val.source}: multi-label validation videos for single-label training videos")
    return train, dataclasses.replace(val, multi_label=train.multi_label)


def clip_preprocess(data: dict[str, Any], recipe: Recipe) -> Preprocess:
    """The preprocessing of a config's clips (Charades: the recipe's preset)."""
    if data["format"] == "charades":
        return recipe.preprocess(data["stream"])
    return Preprocess(data["stream"], fps=data["fps"], resize_short_side=data["short_side"], crop=recipe.crop)


def clip_data(
    config: dict, recipe: Recipe, lists: tuple[VideoList, VideoList | None], world: World, workers: int
) -> tuple[TrainingClips, Validator | None]:
    data = config["data"]
    preprocess = clip_preprocess(data, recipe)
    common = {"source_fps": data["frame_fps"], "on_broken": data["on_broken"], "workers": cpu_share()}
    train, val = lists
    indexed = index_videos(train.videos, preprocess, what="training", warn=warning_printer(world), **common)
    flip_map = data["flip_label_map"]
    train_data = TrainingClips(
        indexed,
        train,
        preprocess,
        recipe.clip_frames,
        data["frame_fps"],
        hflip=data["hflip"] == "on",
        flipped_classes=read_flip_map(flip_map, train.classes) if flip_map is not None else None,
        flow_engine=data["flow_engine"],
    )
    if val is None:
        return train_data, None
    indexed = index_videos(val.videos, preprocess, what="validation", warn=warning_printer(world), **common)
    val_clips = ValidationClips(
        indexed,
        val,
        preprocess,
        recipe.clip_frames,
        data["frame_fps"],
        val_clips=recipe.val_clips,
        flow_engine=data["flow_engine"],
    )
    return train_data, ClipValidation(val_clips, workers)
