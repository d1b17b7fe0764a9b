"""``i3d train``: fine-tune I3D on Charades or any labelled videos, a thin layer over :mod:`i3d.train.loop`.

``add_train_arguments(parser)`` / ``run_train(args) -> int`` are wired into
``i3d.cli``. Settings come from the defaults, a ``--config`` TOML file and
the flags, in that order (:mod:`i3d.train.config`); the resolved config is
written to ``OUT/config.toml``. Under ``torchrun`` every process runs the
same command; rank 0 prints and writes, except errors: every process prints
its own, as ``rank K: ...``, since some happen on one process only. Exit
status: 0 done, 1 unusable input or failed run (one line on stderr), 2 bad flags.
"""

from __future__ import annotations

import argparse
import os
from functools import partial
from typing import Any

from i3d import console
from i3d.argtypes import finite_float, natural_int, positive_float, positive_int, regular_file
from i3d.choices import FLOW_ENGINES
from i3d.errors import I3DError, InputError
from i3d.flags import add_crop, add_device, add_fps, add_precision, add_short_side, add_weights
from i3d.train.choices import BROKEN_POLICIES, DATASET_FORMATS
from i3d.train.config import (
    BUILTIN_CONFIGS,
    DEFAULTS,
    MAX_DEFAULT_WORKERS,
    NO_WEIGHTS,
    load_config,
    merge,
    recipe_of,
    starting_weights,
)
from i3d.train.recipe import CHARADES_RECIPE, SCHEDULES, RecipeError
from i3d.video.presets import CHARADES_FLOW

__all__ = ["add_train_arguments", "run_train", "resolve_config"]

# Flag destination -> (table, setting) of the config, and the setting's flag.
_FLAGS: dict[str, tuple[str, str]] = {}
_OPTIONS: dict[tuple[str, str], str] = {}


def _setting(group: Any, *flags: str, setting: tuple[str, str], **kwargs: Any) -> None:
    """A flag that overrides a config setting; its default is the config's (so ``None`` here)."""
    dest = f"{setting[0]}_{setting[1]}"
    _FLAGS[dest] = setting
    _OPTIONS[setting] = flags[0]
    if "choices" not in kwargs:
        kwargs.setdefault("metavar", setting[1].upper())
    group.add_argument(*flags, dest=dest, default=None, **kwargs)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``i3d train``."""
    data, recipe, run = DEFAULTS["data"], DEFAULTS["recipe"], DEFAULTS["run"]
    flow = CHARADES_FLOW
    p.add_argument(
        "--config",
        metavar="FILE|NAME",
        help=f"TOML file of settings that the flags override (see i3d/train/config.py), or a shipped one: "
        f"{', '.join(BUILTIN_CONFIGS)} (the defaults)",
    )
    g = p.add_argument_group("data")
    _setting(
        g,
        "--format",
        setting=("data", "format"),
        choices=DATASET_FORMATS,
        help="dataset layout: charades (Charades CSV/JSON and frame folders ROOT/ID/), folders (ROOT/CLASS/VIDEO.mp4 "
        "or ROOT/CLASS/VIDEO/ frame folders), csv (header video,label[,start,end]; labels ';'-separated for "
        "multi-label), kinetics (label,youtube_id,time_start,time_end,split) (default: told by the header of "
        f"--csv, else {data['format']})",
    )
    _setting(g, "--root", setting=("data", "root"), metavar="DIR", help="folder of the videos or frame folders")
    _setting(
        g,
        "--csv",
        "--train",
        setting=("data", "train"),
        type=regular_file,
        metavar="FILE",
        help="training list: Charades_v1_train.csv or the port's charades.json; a video,label CSV; a Kinetics CSV; "
        "or, for --format folders, a split file of CLASS/VIDEO lines (default there: every video under --root)",
    )
    _setting(
        g,
        "--val-csv",
        "--val",
        setting=("data", "val"),
        type=regular_file,
        metavar="FILE",
        help="validation list in the same format (Charades: Charades_v1_test.csv or charades.json, scored with the "
        "official mAP); default: no validation",
    )
    _setting(
        g,
        "--val-root",
        setting=("data", "val_root"),
        metavar="DIR",
        help="--format folders: class folders of the validation videos (without --val-csv)",
    )
    _setting(
        g,
        "--classes",
        setting=("data", "classes"),
        metavar="FILE",
        help="class names, one per line, in index order (default: the sorted labels or class folders)",
    )
    _setting(g, "--stream", setting=("data", "stream"), choices=("rgb", "flow"), help="input modality (default: rgb)")
    _setting(
        g,
        "--video-ext",
        setting=("data", "video_ext"),
        metavar="EXT",
        help="Charades: read video files ROOT/ID.EXT (e.g. .mp4), not frame folders",
    )
    _setting(
        g,
        "--flow-dir",
        setting=("data", "flow_dir"),
        metavar="DIR",
        help="flow of the video files (--stream flow --video-ext): DIR/ID.npy, else TV-L1 runs for every clip "
        "(training clips start at random frames and never fill DIR); precompute it with 'i3d flow --format npy "
        f"--fps {flow.fps:g} --short-side {flow.resize_short_side} --out DIR ROOT/*.mp4' ({flow.fps:g}, not "
        "i3d flow's default, Kinetics' 25: the cache must match the frames)",
    )
    _setting(
        g,
        "--flow-engine",
        setting=("data", "flow_engine"),
        choices=FLOW_ENGINES,
        help=f"TV-L1 engine for flow computed from video files: torch (OpenCV's algorithm in PyTorch) or opencv "
        f"(default: {data['flow_engine']})",
    )
    add_fps(
        partial(_setting, g, setting=("data", "fps")),
        help=f"other than Charades: frames per second clips are resampled to (default: {data['fps']:g})",
    )
    add_short_side(
        partial(_setting, g, setting=("data", "short_side")),
        metavar="PX",
        help=f"other than Charades: frames resized to this short side, then cropped (default: {data['short_side']})",
    )
    _setting(
        g,
        "--frame-fps",
        setting=("data", "frame_fps"),
        type=positive_float,
        help=f"other than Charades: the rate frame folders were extracted at (default: {data['frame_fps']:g})",
    )
    _setting(
        g,
        "--on-broken",
        setting=("data", "on_broken"),
        choices=BROKEN_POLICIES,
        help="a video that cannot be read (missing, corrupt, a gap in its frames), found by the pre-flight index "
        "before step 1: error stops there, skip leaves it out with a warning (default: error)",
    )
    _setting(
        g,
        "--hflip",
        setting=("data", "hflip"),
        choices=("on", "off"),
        help="mirror half the training clips left to right; off for classes that name a direction, e.g. "
        "Something-Something's 'pushing something from left to right' (default: on)",
    )
    _setting(
        g,
        "--flip-label-map",
        setting=("data", "flip_label_map"),
        type=regular_file,
        metavar="FILE",
        help="other than Charades, with --hflip on: CSV of label pairs that a mirrored clip swaps, one pair "
        "a line, e.g. 'left to right,right to left' (mmaction2's flip_label_map)",
    )
    _setting(
        g,
        "--features",
        setting=("data", "features"),
        metavar="DIR",
        help="train a linear probe on the features i3d extract wrote there (.npy + JSON sidecars, --layer pooled), "
        "labelled by the dataset list, instead of the network (see i3d/train/probe.py)",
    )

    g = p.add_argument_group("recipe (defaults: the PyTorch port's Charades fine-tuning)")
    add_weights(
        partial(_setting, g, setting=("model", "weights")),
        metavar="NAME|PATH",
        help=f"starting weights: registry name, .pt/.safetensors file, or '{NO_WEIGHTS}' for a random start "
        f"(default: {CHARADES_RECIPE.rgb_weights} or {CHARADES_RECIPE.flow_weights}, by --stream); the "
        "classifier is replaced by one for the dataset's classes, drawn from --seed",
    )
    _setting(
        g,
        "--steps",
        setting=("recipe", "max_steps"),
        type=positive_int,
        metavar="N",
        help=f"optimizer steps ({recipe['max_steps']})",
    )
    _setting(
        g,
        "--batch",
        setting=("recipe", "batch_size"),
        type=positive_int,
        metavar="N",
        help=f"clips per forward pass over all processes, a multiple of their number (default: {recipe['batch_size']})",
    )
    _setting(
        g,
        "--accumulate",
        setting=("recipe", "accumulation_steps"),
        type=positive_int,
        metavar="K",
        help=f"forward passes per optimizer step (default: {recipe['accumulation_steps']})",
    )
    _setting(
        g,
        "--lr",
        setting=("recipe", "learning_rate"),
        type=positive_float,
        help=f"initial learning rate, of the classifier (default: {recipe['learning_rate']})",
    )
    _setting(
        g,
        "--trunk-lr-scale",
        setting=("recipe", "trunk_lr_scale"),
        type=finite_float,
        metavar="X",
        help="the trunk's learning rate is --lr times this, e.g. 0.1 (default: 1)",
    )
    _setting(
        g,
        "--schedule",
        setting=("recipe", "schedule"),
        choices=SCHEDULES,
        help="steps: times lr_gamma at each of lr_milestones; cosine: half a cosine down to 0 at --steps "
        f"(default: {recipe['schedule']})",
    )
    _setting(
        g,
        "--milestones",
        setting=("recipe", "lr_milestones"),
        type=positive_int,
        nargs="+",
        metavar="STEP",
        help=f"--schedule steps: steps after which the rate drops (default: {' '.join(map(str, recipe['lr_milestones']))})",
    )
    _setting(
        g,
        "--warmup-steps",
        setting=("recipe", "warmup_steps"),
        type=natural_int,
        metavar="N",
        help="the learning rate grows linearly over these first steps (default: 0)",
    )
    _setting(
        g,
        "--freeze-until",
        setting=("recipe", "freeze_until"),
        metavar="ENDPOINT",
        help="do not train the trunk up to and including this endpoint, e.g. Mixed_4f (BatchNorm statistics kept)",
    )
    _setting(
        g,
        "--label-smoothing",
        setting=("recipe", "label_smoothing"),
        type=finite_float,
        metavar="S",
        help="label smoothing of the clip losses, in [0, 1) (default: 0)",
    )
    _setting(
        g,
        "--bn-momentum",
        setting=("recipe", "bn_momentum"),
        type=finite_float,
        metavar="M",
        help="BatchNorm running-average momentum while training, e.g. 0.1 for a short run from scratch "
        "(default: the model's, 0.01)",
    )
    _setting(
        g,
        "--weight-decay",
        setting=("recipe", "weight_decay"),
        type=finite_float,
        help=f"SGD weight decay (default: {recipe['weight_decay']:g})",
    )
    _setting(
        g,
        "--clip-frames",
        setting=("recipe", "clip_frames"),
        type=positive_int,
        metavar="N",
        help=f"frames per training and validation clip (default: {recipe['clip_frames']})",
    )
    add_crop(
        partial(_setting, g, setting=("recipe", "crop")),
        metavar="PX",
        help=f"side of the square crop, at most the frames' short side (default: {recipe['crop']})",
    )
    _setting(
        g,
        "--val-clips",
        setting=("recipe", "val_clips"),
        type=positive_int,
        metavar="N",
        help="other than Charades: centre-cropped clips per validation video, evenly spaced, scores averaged "
        f"(default: {recipe['val_clips']})",
    )

    g = p.add_argument_group("run")
    _setting(
        g, "--out", setting=("run", "out"), metavar="DIR", help="output: checkpoint.pt, train.jsonl, model.safetensors"
    )
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue from DIR/checkpoint.pt if there is one (else start); without it, a checkpoint there is an "
        "error; a config that differs from DIR/config.toml is refused",
    )
    g.add_argument(
        "--force-config",
        action="store_true",
        help="with --resume: go on with settings that differ from the run's config.toml",
    )
    _setting(
        g,
        "--seed",
        setting=("run", "seed"),
        type=natural_int,
        help="run seed: the new classifier's initial weights, data order, clip sampling, augmentation, dropout, "
        "loader workers; one seed, one run, bit for bit on the CPU (default: 0)",
    )
    _setting(
        g,
        "--workers",
        setting=("run", "workers"),
        type=natural_int,
        metavar="N",
        help="loader processes per training process (default: the CPUs this process may use, shared among "
        f"the node's training processes, at most {MAX_DEFAULT_WORKERS})",
    )
    add_device(
        partial(_setting, g, setting=("run", "device")),
        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda:$LOCAL_RANK if available, else cpu)",
    )
    add_precision(
        partial(_setting, g, setting=("run", "precision")),
        help="fp32: exact (default); tf32; bf16 or fp16: autocast (fp16 with gradient scaling, CUDA only)",
    )
    _setting(
        g,
        "--checkpoint-every",
        setting=("run", "checkpoint_every"),
        type=positive_int,
        metavar="N",
        help=f"steps between checkpoints ({run['checkpoint_every']})",
    )
    _setting(
        g,
        "--val-every",
        setting=("run", "val_every"),
        type=natural_int,
        metavar="N",
        help="steps between validations; 0: only at the end (default: 0)",
    )
    _setting(
        g,
        "--log-every",
        setting=("run", "log_every"),
        type=positive_int,
        metavar="N",
        help=f"steps per log line ({run['log_every']})",
    )
    _setting(
        g,
        "--val-chunk",
        setting=("run", "val_chunk"),
        type=positive_int,
        metavar="N",
        help=f"Charades: frames per network call in validation: bounds memory, not the result ({run['val_chunk']})",
    )
    g.add_argument("--no-plots", action="store_true", help="no PNG plots at the end")


# ---- settings ---------------------------------------------------------------------------


def resolve_config(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Defaults, then ``--config``, then the flags given (see :mod:`i3d.train.config`)."""
    import torch  # only to recognise a checked --device; imported here so that --help imports no torch

    from i3d.train.datasets import detect_format  # imports numpy

    layers = [load_config(args.config)] if args.config else []
    flags: dict[str, dict[str, Any]] = {}
    for dest, (section, key) in _FLAGS.items():
        value = getattr(args, dest, None)
        if isinstance(value, (os.PathLike, torch.device)):
            value = str(value)  # as the config stores it (checked flags: paths, devices)
        if value is not None:
            flags.setdefault(section, {})[key] = value
    config = merge(*layers, flags)
    data = config["data"]
    told = any("format" in layer.get("data", {}) for layer in (*layers, flags))
    if not told and data["train"] is not None and os.path.isfile(data["train"]):  # else its reader says why
        data["format"] = detect_format(data["train"])
    try:
        recipe_of(config)
    except RecipeError as err:
        raise _named(err, flags, layers, args.config) from None
    for key in ("root", "train") if config["data"]["format"] == "charades" else ("root",):
        if config["data"][key] is None and not (key == "root" and config["data"]["features"]):
            flag = {"root": "--root", "train": "--csv"}[key]
            raise I3DError(f"{flag} is required (or data.{key} in the config)")
    if config["run"]["out"] is None:
        raise I3DError("--out is required (or run.out in the config)")
    config["model"]["weights"] = starting_weights(config)
    return config


def _named(err: RecipeError, flags: dict, layers: list[dict], config: str | None) -> I3DError:
    """A bad recipe value's error, naming the flag that gave it, else the config file and key."""
    setting = ("recipe", err.field)
    if err.field in flags.get("recipe", {}):
        return I3DError(f"{_OPTIONS.get(setting, err.field)}: {err}")
    if layers and err.field in layers[0].get("recipe", {}):
        return InputError(config, f"recipe.{err.field}: {err}")
    return I3DError(str(err))


def run_train(args: argparse.Namespace) -> int:
    """Run ``i3d train``; see :func:`add_train_arguments`."""
    # Imported here, not at the top, so that ``i3d train --help`` imports no torch.
    from i3d.train.distributed import world_from_env
    from i3d.train.runner import run

    try:
        world = world_from_env()
    except I3DError as err:
        console.error(str(err))
        return 1
    try:
        return run(resolve_config(args), args, world)
    except (I3DError, ValueError, OSError) as err:
        # Every process: an error may happen on one of them only.
        console.error(f"rank {world.rank}: {err}" if world.distributed else str(err))
        return 1
