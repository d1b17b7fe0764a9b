"""``i3d extract`` (features of videos into files) and ``i3d verify`` (their checksums)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from i3d import console
from i3d.argtypes import positive_int, regular_file
from i3d.errors import I3DError
from i3d.flags import (
    add_backend,
    add_device,
    add_inputs,
    add_overrides,
    add_precision,
    add_quiet,
    add_stream_weights,
    overrides,
    prefetch_streams,
    stream_weights,
)
from i3d.sharding import parse_shard

__all__ = ["add_extract_arguments", "run_extract", "add_verify_arguments", "run_verify"]


def _add_flow_engine(p: argparse.ArgumentParser) -> None:
    from i3d.video.cli import add_flow_engine_argument

    add_flow_engine_argument(p)


def add_extract_arguments(p: argparse.ArgumentParser) -> None:
    from i3d.choices import CROP_COUNTS, DEFAULT_CHUNK_FRAMES, POOLED
    from i3d.extract.choices import COMBINE, DEFAULT_BATCH, DEFAULT_CLIP_LEN, FORMATS, LAYERS, LAYOUTS, MODES

    add_inputs(p, "inputs")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder (created if needed); the features of INPUT go to OUT/NAME.STREAM.FORMAT with a "
        "NAME.STREAM.FORMAT.json sidecar, NAME being INPUT's path relative to the deepest folder holding every "
        "input, extension kept (vids/a/b.mp4 and vids/c/b.mp4 give OUT/a/b.mp4.rgb.npy and OUT/c/b.mp4.rgb.npy)",
    )
    p.add_argument(
        "--charades-csv",
        type=regular_file,
        help="a Charades CSV: each INPUT is then a frame root holding one folder per video id of the CSV",
    )
    p.add_argument("--stream", choices=("rgb", "flow", "both"), default="rgb", help="network(s) to run (default: rgb)")
    add_stream_weights(p)
    p.add_argument(
        "--layer",
        default=POOLED,
        choices=LAYERS,
        metavar="LAYER",
        help="pooled (Mixed_5c after the head's pool, 1024-d; default), logits, or an endpoint such as Mixed_4f "
        "(spatial maps); one of: %(choices)s",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="full",
        help="full: one pass over the whole video, a row per 8 frames (default); clips: a row per window; "
        "frames: a row per frame, its window starting --clip-len // 2 frames before it (edge frames repeated)",
    )
    p.add_argument(
        "--clip-len",
        type=int,
        default=DEFAULT_CLIP_LEN,
        help=f"clips and frames modes: frames per window (default: {DEFAULT_CLIP_LEN})",
    )
    p.add_argument("--step", type=int, default=None, help="clips mode: frames between windows (default: --clip-len)")
    p.add_argument(
        "--num-clips",
        type=positive_int,
        default=None,
        metavar="K",
        help="clips mode, instead of --step: K windows evenly spaced, the first at frame 0, the last ending at the "
        "last frame (starts rounded to the nearest frame, halves up)",
    )
    p.add_argument(
        "--crops",
        type=int,
        choices=CROP_COUNTS,
        default=1,
        help="views of every frame, run as a batch: 1 centre (default); 3 left, centre, right along the long side; "
        "5 four corners and centre; 10 those five, then the same in the mirrored frame (torchvision's TenCrop); "
        "rows become (crops, C)",
    )
    p.add_argument(
        "--combine",
        choices=COMBINE,
        default="separate",
        help="with --stream both: separate files per stream (default), or concat: one file OUT/NAME.rgb+flow.FORMAT "
        "whose rows hold RGB then flow",
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK_FRAMES,
        help=f"full mode: frames per network call, all crops together (chunk // crops of each); bounds memory, "
        f"results do not depend on it (default: {DEFAULT_CHUNK_FRAMES})",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        help=f"clips and frames modes: clips (a window of one crop) per network call (default: {DEFAULT_BATCH})",
    )
    p.add_argument("--format", choices=FORMATS, default="npy", help="feature file format (default: npy)")
    p.add_argument(
        "--layout",
        choices=LAYOUTS,
        default="i3d",
        help="i3d: OUT/NAME.STREAM.FORMAT (default); port: OUT/ID.npy of shape (T', 1, 1, 1024), ID being the "
        "file stem or folder name, as the PyTorch port's extract_features.py saved pooled features (needs "
        "--layer pooled, --mode full, --format npy, one stream, --crops 1)",
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="process part I of N (0-based) of the input list; under torchrun each rank takes its own part of it; "
        "auto: the part of this task of a Slurm job array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT), else of "
        "this Slurm task (SLURM_PROCID, SLURM_NTASKS), else of this torchrun rank (RANK, WORLD_SIZE)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="decoding processes running ahead of the model; 0 decodes inline (default: 1 on a GPU, 0 on the CPU, "
        "where a decoding process only takes cores from the model and costs ~2 s to start)",
    )
    add_device(p.add_argument, help="torch device (default: cuda:LOCAL_RANK or cuda if available, else cpu)")
    add_precision(p.add_argument, default="fp32")
    add_backend(p.add_argument)
    p.add_argument("--flow-dir", type=Path, help="folder caching computed flow frames, reused by later runs")
    _add_flow_engine(p)
    add_overrides(p)
    add_quiet(p.add_argument)
    p.add_argument(
        "--verify",
        action="store_true",
        help="check the SHA-256 of every complete output against its sidecar and redo those that differ "
        "(reruns otherwise check sizes only)",
    )


def run_extract(args: argparse.Namespace) -> int:
    from i3d.atomic import check_output_dir
    from i3d.extract.extractor import Extractor
    from i3d.extract.inputs import port_names
    from i3d.extract.jobs import check_port_layout, extract_all
    from i3d.sharding import distributed_shard, shard_inputs
    from i3d.video.listing import check_collisions, expand_inputs, output_names

    try:
        index, count = parse_shard(args.shard)
        if min(args.chunk, args.clip_len, args.batch) < 1 or (args.step is not None and args.step < 1):
            raise ValueError("--chunk, --clip-len, --step and --batch must be >= 1")
        if args.workers is not None and args.workers < 0:
            raise ValueError("--workers must be >= 0")
        if args.layout == "port":
            check_port_layout(args.layer, args.mode, args.format, 2 if args.stream == "both" else 1, args.crops)
        if args.combine == "concat" and args.stream != "both":
            raise ValueError("--combine concat needs --stream both")
        if args.num_clips is not None and (args.mode != "clips" or args.step is not None):
            raise ValueError("--num-clips is for --mode clips, instead of --step")
    except ValueError as err:
        console.error(str(err))
        return 2
    ids = None
    if args.charades_csv:
        from i3d.charades.annotations import read_csv

        try:
            ids = [video.id for video in read_csv(args.charades_csv)]
        except I3DError as err:
            console.error(str(err))
            return 1
    try:
        inputs = expand_inputs(args.inputs, ids=ids, exclude=[args.out, args.flow_dir])
        # Over all inputs, so that shards agree.
        names = port_names(inputs) if args.layout == "port" else output_names(inputs)
        check_collisions(names)  # before any work, on every shard
        check_output_dir(args.out)
    except I3DError as err:
        console.error(str(err))
        return 1
    rank, world = distributed_shard() if args.shard != "auto" else (0, 1)  # auto already took the rank's part
    mine = shard_inputs(shard_inputs(inputs, index, count), rank, world)
    streams = ("rgb", "flow") if args.stream == "both" else (args.stream,)
    weights, flow_weights = stream_weights(args)
    try:
        prefetch_streams(args, streams)
        extractor = Extractor(
            streams,
            weights=weights,
            flow_weights=flow_weights,
            layer=args.layer,
            mode=args.mode,
            clip_len=args.clip_len,
            step=args.step,
            num_clips=args.num_clips,
            crops=args.crops,
            combine=args.combine,
            chunk_frames=args.chunk,
            batch=args.batch,
            device=args.device,
            precision=args.precision,
            backend=args.backend,
            flow_dir=args.flow_dir,
            flow_engine=args.flow_engine,
            **overrides(args),
            progress=sys.stderr.isatty(),
        )
    except (I3DError, ValueError) as err:
        console.error(str(err))
        return 1
    workers = args.workers if args.workers is not None else int(extractor.device.type == "cuda")
    try:
        summary = extract_all(
            mine,
            args.out,
            extractor,
            fmt=args.format,
            names=names,
            workers=workers,
            progress=not args.quiet,
            verify=args.verify,
            layout=args.layout,
        )
    except (I3DError, ValueError) as err:
        console.error(str(err))
        return 1
    if summary.stopped:
        print(f"i3d extract: {summary.stopped}", file=sys.stderr)
    print(f"i3d extract: {summary.line()}", file=sys.stderr)
    return 0 if summary.ok else 1


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, metavar="OUT", help="an output folder of `i3d extract`")
    add_quiet(p.add_argument, help="print only the outputs that do not match")


def run_verify(args: argparse.Namespace) -> int:
    """Check every output's size and SHA-256 against its sidecar; exit 1 if
    any differs (`i3d extract ... --verify` redoes those)."""
    from i3d.extract.writers import verify_outputs

    if not args.out.is_dir():
        console.error(f"{args.out}: is not a folder")
        return 1
    good = bad = 0
    for data, problem in verify_outputs(args.out):
        if problem is None:
            good += 1
            if not args.quiet:
                print(f"ok  {data}")
        else:
            bad += 1
            print(f"BAD {data}: {problem}")
    print(f"i3d verify: {good} good, {bad} bad", file=sys.stderr)
    return 1 if bad else 0
