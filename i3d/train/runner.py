"""``i3d train``'s work once its config is resolved (:func:`i3d.train.cli.resolve_config`): check it, build the
data and the model, and fit, or fit a linear probe on extracted features.

:func:`i3d.train.cli.run_train` imports this module when it runs, so that
the parser (:mod:`i3d.train.cli`) imports no torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from i3d.errors import I3DError, InputError
from i3d.runtime import Placement
from i3d.train.checkpoint import CHECKPOINT_NAME
from i3d.train.config import (
    CONFIG_NAME,
    LOCATION,
    MAX_DEFAULT_WORKERS,
    NO_WEIGHTS,
    RESUMABLE,
    differences,
    load_config,
    merge,
    recipe_of,
    starting_weights,
    write_config,
)
from i3d.train.data import INIT_STREAM, derive_seed, seeded
from i3d.train.distributed import World, barrier, broadcast_object, device_for, process_group
from i3d.train.export import ModelInput
from i3d.train.loop import Trainer, TrainOptions
from i3d.train.loss import ClipObjective
from i3d.train.probe import run_probe
from i3d.train.recipe import Recipe
from i3d.train.sources import charades_data, clip_data, clip_preprocess, cpu_share, video_lists
from i3d.video.flow import FlowEngine
from i3d.weights import REGISTRY, inception_i3d, resolve_checkpoint

__all__ = ["run"]


def run(config: dict[str, dict[str, Any]], args: argparse.Namespace, world: World) -> int:
    """Train as ``config`` says (``args``: ``--resume``, ``--force-config``, ``--no-plots``); the exit status.

    Raises:
        I3DError, ValueError, OSError: an unusable input or a failed run.
    """
    if config["data"]["features"]:
        return _run_probe(config, world)
    # One TV-L1 pool for every validation video; it starts only if flow is computed from video files.
    with FlowEngine(cpu_share(), engine=config["data"]["flow_engine"]) as val_flow:
        _train(config, args, world, val_flow)
    return 0


def _default_workers() -> int:
    """Loader processes: this process's share of the CPUs, at most ``MAX_DEFAULT_WORKERS``."""
    return min(cpu_share(), MAX_DEFAULT_WORKERS)


def _check_resume(config: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    """``--resume`` goes on only with the run's own config, unless forced."""
    saved_path = Path(config["run"]["out"]) / CONFIG_NAME
    if not (args.resume and (Path(config["run"]["out"]) / CHECKPOINT_NAME).exists() and saved_path.exists()):
        return
    # The defaults fill in what an older file lacks (a setting added since).
    changed = differences(config, merge(load_config(saved_path)), ignore=RESUMABLE | {LOCATION})
    if changed and not args.force_config:
        raise InputError(
            saved_path,
            "the run was made with other settings (now vs then: " + "; ".join(changed) + "); "
            "resume with the same settings, or pass --force-config",
        )


def _train(config: dict, args: argparse.Namespace, world: World, val_flow: FlowEngine) -> None:
    data, run = config["data"], config["run"]
    generic = data["format"] != "charades"
    lists = video_lists(data, warn=world.is_main) if generic else None
    if lists is not None:
        config["recipe"]["num_classes"] = lists[0].num_classes
    recipe = recipe_of(config)
    device = device_for(Placement.resolve(run["device"] or None, run["precision"]).device, world)
    _check(data, recipe, run, device, world)
    _check_resume(config, args)
    workers = run["workers"] if run["workers"] is not None else _default_workers()
    if generic:
        assert lists is not None
        train_data, validator = clip_data(config, recipe, lists, world, workers)
        extra: dict[str, Any] = {
            "objective": ClipObjective(lists[0].multi_label, recipe.label_smoothing),
            "classes": lists[0].classes,
        }
    else:
        train_data, validator = charades_data(config, recipe, world, val_flow)
        extra = {}
    extra["model_input"] = ModelInput(clip_preprocess(data, recipe), recipe.clip_frames)
    options = TrainOptions(
        out=run["out"],
        resume=args.resume,
        seed=run["seed"],
        workers=workers,
        device=device,
        precision=run["precision"],
        checkpoint_every=run["checkpoint_every"],
        val_every=run["val_every"],
        log_every=run["log_every"],
        val_chunk_frames=run["val_chunk"],
        force_config=args.force_config,
        plots=not args.no_plots,
    )
    with process_group(device) as world:
        model = _model(config, recipe, world, args.resume)
        trainer = Trainer(model, train_data, recipe, options, validator, **extra)
        out = Path(run["out"])
        # Not over the config of a run that fit() will refuse to touch (a checkpoint without --resume).
        if world.is_main and (args.resume or not (out / CHECKPOINT_NAME).exists()):
            write_config(config, out / CONFIG_NAME)
        trainer.fit()


def _run_probe(config: dict, world: World) -> int:
    if not world.is_main:
        return 0
    data, recipe = config["data"], recipe_of(config)
    if data["format"] == "charades":
        raise I3DError("--features needs a class-folder, CSV or Kinetics dataset (--format folders|csv|kinetics)")
    train, val = video_lists(data)
    out = Path(config["run"]["out"])
    run_probe(
        data["features"],
        train,
        val,
        out,
        stream=data["stream"],
        label_smoothing=recipe.label_smoothing,
        weight_decay=recipe.weight_decay,
    )
    config["recipe"]["num_classes"] = train.num_classes
    write_config(config, out / CONFIG_NAME)
    return 0


def _check(data: dict, recipe: Recipe, run: dict, device: torch.device, world: World) -> None:
    """Refuse, before any work, what cannot run."""
    if data["hflip"] not in ("on", "off"):
        raise I3DError(f"data.hflip = {data['hflip']!r}: expected 'on' or 'off' (--hflip)")
    if data["flip_label_map"] is not None and (data["hflip"] == "off" or data["format"] == "charades"):
        raise I3DError("--flip-label-map needs --hflip on and a dataset other than Charades")
    if data["format"] == "charades":
        short_side = recipe.preprocess(data["stream"]).resize_short_side
    else:
        short_side = data["short_side"]
    if recipe.crop > short_side:
        raise I3DError(f"--crop {recipe.crop} is larger than the frames' short side {short_side}")
    if recipe.batch_size % world.world_size:
        raise I3DError(f"--batch {recipe.batch_size} is not divisible by the {world.world_size} processes")
    if data["root"] is not None and not Path(data["root"]).is_dir():
        raise I3DError(f"{data['root']}: no such folder")


def _model(config: dict, recipe: Recipe, world: World, resume: bool = False) -> torch.nn.Module:
    """The network to train; its starting weights are not read when a checkpoint will replace them."""
    stream = config["data"]["stream"]
    channels = 3 if stream == "rgb" else 2
    out = Path(config["run"]["out"])
    # Rank 0's view: the other processes may not see its output folder, and all must agree.
    resuming = broadcast_object(resume and (out / CHECKPOINT_NAME).exists(), world)
    weights = starting_weights(config)
    if resuming or weights == NO_WEIGHTS:
        weights = None
    elif weights in REGISTRY and world.distributed:
        # One download per cache: rank 0 first (a cache shared by all nodes),
        # then the first process of each node (a cache per node), then the rest.
        for turn in (world.is_main, world.local_rank == 0):
            if turn:
                resolve_checkpoint(weights, progress=False)
            barrier(world)
    # The new classifier (every layer, from no weights) is drawn from the run
    # seed: two runs with one seed start from the same weights on every process.
    with seeded(derive_seed(INIT_STREAM, config["run"]["seed"])):
        return inception_i3d(
            weights=weights,
            num_classes=recipe.num_classes,
            in_channels=channels,
            dropout_keep_prob=recipe.dropout_keep_prob,
        )
