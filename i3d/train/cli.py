"""``i3d train``: fine-tune I3D on Charades frames, a thin layer over :mod:`i3d.train.loop`.

``add_train_arguments(parser)`` / ``run_train(args) -> int`` are wired into
``i3d.cli``. Under ``torchrun`` every process runs the same command; rank 0
prints and writes, except errors: every process prints its own, as
``rank K: ...``, since some happen on one process only. Exit status: 0 done,
1 unusable input or failed run (one line on stderr), 2 bad flags.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import torch

from i3d import console
from i3d.argtypes import device, natural_int, positive_float, positive_int, regular_file
from i3d.charades.annotations import Subset, Video, read_csv, read_split_json
from i3d.charades.datasets import CharadesClips, CharadesVideos, source_path
from i3d.errors import I3DError
from i3d.runtime import PRECISIONS, default_device
from i3d.train.checkpoint import CHECKPOINT_NAME
from i3d.train.distributed import World, barrier, broadcast_object, device_for, process_group, world_from_env
from i3d.train.loop import DEFAULT_VAL_CHUNK_FRAMES, Trainer, TrainOptions
from i3d.train.recipe import CHARADES_RECIPE, Recipe
from i3d.video.flow import FlowEngine, default_workers
from i3d.weights import REGISTRY, inception_i3d, resolve_checkpoint

__all__ = ["add_train_arguments", "run_train"]

# Loader processes per training process, unless told: enough to keep a GPU
# fed with JPEG decoding, never more than the machine has.
_MAX_DEFAULT_WORKERS = 8
_NO_WEIGHTS = "none"
# How many missing ids an error or warning names.
_IDS_SHOWN = 3


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Flags of ``i3d train``."""
    r = CHARADES_RECIPE
    data = p.add_argument_group("data")
    data.add_argument(
        "--root",
        required=True,
        type=Path,
        metavar="FRAMES",
        help="folder of frame folders ROOT/ID/ID-000001.jpg (Charades_v1_rgb; Charades_v1_flow with --stream flow)",
    )
    data.add_argument(
        "--csv",
        required=True,
        type=regular_file,
        metavar="FILE",
        help="training videos: Charades_v1_train.csv, or the PyTorch port's charades.json (its 'training' videos)",
    )
    data.add_argument(
        "--val-csv",
        type=regular_file,
        metavar="FILE",
        help="validation videos, scored with the official classification mAP: Charades_v1_test.csv, or "
        "charades.json (its 'testing' videos); default: no validation",
    )
    data.add_argument("--stream", choices=("rgb", "flow"), default="rgb", help="input modality (default: rgb)")
    data.add_argument("--video-ext", metavar="EXT", help="read video files ROOT/ID.EXT (e.g. .mp4), not frame folders")
    flow = r.preprocess("flow")
    data.add_argument(
        "--flow-dir",
        type=Path,
        metavar="DIR",
        help="flow of the video files (--stream flow --video-ext): DIR/ID.npy, else TV-L1 runs for every clip "
        "(training clips start at random frames and never fill DIR); precompute it with 'i3d flow --format npy "
        f"--fps {flow.fps:g} --short-side {flow.resize_short_side} --out DIR ROOT/*.mp4' ({flow.fps:g}, not "
        "i3d flow's default, Kinetics' 25: the cache must match the frames)",
    )

    recipe = p.add_argument_group("recipe (defaults: the PyTorch port's Charades fine-tuning)")
    recipe.add_argument(
        "--weights",
        metavar="NAME|PATH",
        help=f"starting weights: registry name, .pt/.safetensors file, or '{_NO_WEIGHTS}' for a random start "
        f"(default: {r.rgb_weights} or {r.flow_weights}); the classifier is replaced by a {r.num_classes}-class one",
    )
    recipe.add_argument(
        "--steps", type=positive_int, default=r.max_steps, metavar="N", help=f"optimizer steps ({r.max_steps})"
    )
    recipe.add_argument(
        "--batch",
        type=positive_int,
        default=r.batch_size,
        metavar="N",
        help=f"clips per forward pass over all processes, a multiple of their number (default: {r.batch_size})",
    )
    recipe.add_argument(
        "--accumulate",
        type=positive_int,
        default=r.accumulation_steps,
        metavar="K",
        help=f"forward passes per optimizer step (default: {r.accumulation_steps}, "
        f"so {r.clips_per_step} clips a step with the default --batch)",
    )
    recipe.add_argument(
        "--lr", type=positive_float, default=r.learning_rate, help=f"initial learning rate ({r.learning_rate})"
    )
    recipe.add_argument(
        "--clip-frames",
        type=positive_int,
        default=r.clip_frames,
        metavar="N",
        help=f"frames per training clip (default: {r.clip_frames})",
    )
    recipe.add_argument(
        "--crop",
        type=positive_int,
        default=r.crop,
        metavar="PX",
        help=f"side of the square crop, at most {r.preprocess('rgb').resize_short_side} (default: {r.crop})",
    )

    run = p.add_argument_group("run")
    run.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output: checkpoint.pt, train.jsonl, model.safetensors"
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue from DIR/checkpoint.pt if there is one (else start); without it, a checkpoint there is an error",
    )
    run.add_argument(
        "--seed", type=natural_int, default=0, help="run seed: clip sampling, augmentation, dropout (default: 0)"
    )
    run.add_argument(
        "--workers",
        type=natural_int,
        metavar="N",
        help="loader processes per training process (default: the CPUs this process may use, shared among "
        f"the node's training processes, at most {_MAX_DEFAULT_WORKERS})",
    )
    run.add_argument(
        "--device",
        type=device,
        help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda:$LOCAL_RANK if available, else cpu)",
    )
    run.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32: exact (default); tf32; bf16 or fp16: autocast (fp16 with gradient scaling, CUDA only)",
    )
    run.add_argument(
        "--checkpoint-every", type=positive_int, default=100, metavar="N", help="steps between checkpoints (100)"
    )
    run.add_argument(
        "--val-every",
        type=natural_int,
        default=0,
        metavar="N",
        help="steps between validations; 0: only at the end (default: 0)",
    )
    run.add_argument("--log-every", type=positive_int, default=10, metavar="N", help="steps per log line (10)")
    run.add_argument(
        "--val-chunk",
        type=positive_int,
        default=DEFAULT_VAL_CHUNK_FRAMES,
        metavar="N",
        help=f"frames per network call in validation: bounds memory, not the result ({DEFAULT_VAL_CHUNK_FRAMES})",
    )


def _read_videos(path: Path, subset: Subset) -> list[Video]:
    """An official CSV, or the port's JSON split (its ``subset`` videos)."""
    if path.suffix.lower() == ".json":
        return [v for v in read_split_json(path) if v.subset == subset]
    return read_csv(path)


def _present(videos: list[Video], args: argparse.Namespace, what: str, warn: bool) -> list[Video]:
    """The videos whose frames (or file) are under ``--root``; a warning names the others (the port skipped them)."""
    root = args.root
    found = [source_path(root, v.id, args.video_ext).exists() for v in videos]
    present = [v for v, ok in zip(videos, found) if ok]
    missing = [v.id for v, ok in zip(videos, found) if not ok]
    if not present:
        shown = ", ".join(missing[:_IDS_SHOWN])
        raise I3DError(f"{root}: none of the {len(videos)} {what} videos is there (e.g. {shown})")
    if missing and warn:
        shown = ", ".join(missing[:_IDS_SHOWN]) + (", ..." if len(missing) > _IDS_SHOWN else "")
        print(
            f"warning: {len(missing)} of {len(videos)} {what} videos are not in {root}, skipped ({shown})",
            file=sys.stderr,
        )
    return present


def _cpu_share() -> int:
    """The CPUs this process may use shared among the node's training processes."""
    local_processes = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)
    return max(default_workers() // local_processes, 1)


def _default_workers() -> int:
    """Loader processes: this process's share of the CPUs, at most ``_MAX_DEFAULT_WORKERS``."""
    return min(_cpu_share(), _MAX_DEFAULT_WORKERS)


def _error(message: str) -> None:
    console.error(message)


def run_train(args: argparse.Namespace) -> int:
    """Run ``i3d train``; see :func:`add_train_arguments`."""
    try:
        world = world_from_env()
    except I3DError as err:
        _error(str(err))
        return 1
    try:
        # One TV-L1 pool for every validation video; it starts only if flow is computed from video files.
        with FlowEngine(_cpu_share()) as val_flow:
            recipe = dataclasses.replace(
                CHARADES_RECIPE,
                max_steps=args.steps,
                batch_size=args.batch,
                accumulation_steps=args.accumulate,
                learning_rate=args.lr,
                clip_frames=args.clip_frames,
                crop=args.crop,
            )
            device = device_for(torch.device(args.device) if args.device else default_device(), world)
            _check(args, recipe, device, world)
            train_data, val_data = _datasets(args, recipe, world, val_flow)
            options = TrainOptions(
                out=args.out,
                resume=args.resume,
                seed=args.seed,
                workers=args.workers if args.workers is not None else _default_workers(),
                device=device,
                precision=args.precision,
                checkpoint_every=args.checkpoint_every,
                val_every=args.val_every,
                log_every=args.log_every,
                val_chunk_frames=args.val_chunk,
            )
            with process_group(device) as world:
                Trainer(_model(args, recipe, world), train_data, recipe, options, val_data).fit()
    except (I3DError, ValueError, OSError) as err:
        # Every process: an error may happen on one of them only.
        _error(f"rank {world.rank}: {err}" if world.distributed else str(err))
        return 1
    return 0


def _check(args: argparse.Namespace, recipe: Recipe, device: torch.device, world: World) -> None:
    """Refuse, before any work, what cannot run."""
    short_side = recipe.preprocess(args.stream).resize_short_side
    if recipe.crop > short_side:
        raise I3DError(f"--crop {recipe.crop} is larger than the frames' short side {short_side}")
    if recipe.batch_size % world.world_size:
        raise I3DError(f"--batch {recipe.batch_size} is not divisible by the {world.world_size} processes")
    if args.precision == "fp16" and device.type != "cuda":
        raise I3DError("--precision fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if not args.root.is_dir():
        raise I3DError(f"{args.root}: no such folder")


def _datasets(
    args: argparse.Namespace, recipe: Recipe, world: World, val_flow: FlowEngine
) -> tuple[CharadesClips, CharadesVideos | None]:
    """Training clips and validation videos of the videos present under ``--root``.

    Training clips compute flow (where they must) in the loader workers, one
    TV-L1 process each; validation shares ``val_flow``.
    """
    preprocess = recipe.preprocess(args.stream)
    sources = {"video_ext": args.video_ext, "num_classes": recipe.num_classes, "flow_dir": args.flow_dir}
    train = _present(_read_videos(args.csv, "training"), args, "training", world.is_main)
    train_data = CharadesClips(args.root, train, preprocess, recipe.clip_frames, **sources)
    if args.val_csv is None:
        return train_data, None
    val = _present(_read_videos(args.val_csv, "testing"), args, "validation", world.is_main)
    return train_data, CharadesVideos(args.root, val, preprocess, flow_engine=val_flow, **sources)


def _model(args: argparse.Namespace, recipe: Recipe, world: World) -> torch.nn.Module:
    """The network to train; its starting weights are not read when a checkpoint will replace them."""
    channels = recipe.preprocess(args.stream).channels
    # Rank 0's view: the other processes may not see its output folder, and all must agree.
    resuming = broadcast_object(args.resume and (args.out / CHECKPOINT_NAME).exists(), world)
    weights = args.weights or recipe.weights(args.stream)
    if resuming or weights == _NO_WEIGHTS:
        weights = None
    elif weights in REGISTRY and world.distributed:
        # One download per cache: rank 0 first (a cache shared by all nodes),
        # then the first process of each node (a cache per node), then the rest.
        for turn in (world.is_main, world.local_rank == 0):
            if turn:
                resolve_checkpoint(weights, progress=False)
            barrier(world)
    return inception_i3d(
        weights=weights,
        num_classes=recipe.num_classes,
        in_channels=channels,
        dropout_keep_prob=recipe.dropout_keep_prob,
    )
