"""The ``i3d`` command: a thin layer over the Python API.

Batch commands report each failing input on stderr in one line, go on with
the others, and exit with status 1 if any failed (2 for usage errors).
Every message on stderr reads ``i3d <command>: error: <cause>`` (or
``warning:``), usage errors included (:mod:`i3d.console`).

A closed output pipe (``i3d weights list --json | head -1``) ends the
command quietly with status 141, what a command killed by SIGPIPE returns:
a shell pipeline under ``set -o pipefail`` sees the same as for ``grep``.

``i3d --help`` and ``i3d --version`` import neither torch nor numpy: each
subcommand's module is imported, and its flags added, only when that
subcommand is parsed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

from i3d import __version__, console
from i3d.argtypes import device, output_file, positive_int, regular_file, shard_spec
from i3d.errors import I3DError

Runner = Callable[[argparse.Namespace], int]

# Exit status of a command whose output pipe was closed: 128 + SIGPIPE (13).
EXIT_BROKEN_PIPE = 141
EXIT_INTERRUPTED = 130


def _error(message: str) -> None:
    console.error(message)


def _add_precision(p: argparse.ArgumentParser) -> None:
    from i3d.runtime import PRECISIONS

    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32: exact, DeepMind's numbers (default); tf32, bf16, fp16: faster on GPUs, ~1e-3 relative error",
    )


def _add_weights(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights",
        default=None,
        help="weights of the network that runs: a registry name (see `i3d weights list`) or a .pt/.safetensors "
        "path (default: rgb_imagenet; with --stream flow, flow_imagenet)",
    )
    p.add_argument(
        "--flow-weights",
        default=None,
        help="the flow network's weights when both streams run: registry name or path (default: flow_imagenet)",
    )


def _add_overrides(p: argparse.ArgumentParser) -> None:
    from i3d.argtypes import frame_rate, positive_int

    p.add_argument(
        "--fps",
        type=frame_rate,
        default=None,
        help="resample videos to this rate instead of the weights' (e.g. 10 or 15 to save time; features then "
        "cover more seconds per row and differ from DeepMind's)",
    )
    p.add_argument(
        "--short-side",
        type=positive_int,
        default=None,
        help="resize frames so that their short side has this many pixels instead of the weights' (256)",
    )
    p.add_argument(
        "--crop",
        type=positive_int,
        default=None,
        help="side of the centre crop instead of the weights' (224); any value changes the results",
    )


def _add_flow_engine(p: argparse.ArgumentParser) -> None:
    from i3d.video.cli import add_flow_engine_argument

    add_flow_engine_argument(p)


def _add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress (frames done, frames/s, ETA: a status line on a terminal, a plain line every 30 s "
        "otherwise); errors and the summary are still printed",
    )


def _prefetch(args: argparse.Namespace, streams: tuple[str, ...]) -> None:
    """Fetch the registry weights of ``streams`` before any work: one error
    lists every missing file and names the flag that chose each.

    Raises:
        WeightsError: as :func:`i3d.weights.prefetch`.
    """
    from i3d.weights import prefetch

    rgb, flow = _stream_weights(args)
    flags = {}
    if "rgb" in streams:
        flags[rgb] = "--weights"
    if "flow" in streams:
        flags.setdefault(flow, "--flow-weights")  # with --stream flow, --weights works too
    prefetch(flags, progress=sys.stderr.isatty(), flags=flags)


def _stream_weights(args: argparse.Namespace) -> tuple[str, str]:
    """``(rgb, flow)`` weights; ``--stream flow --weights X`` means that X is
    the flow network."""
    from i3d.weights import DEFAULT_FLOW, DEFAULT_RGB

    if args.stream == "flow":
        return DEFAULT_RGB, args.flow_weights or args.weights or DEFAULT_FLOW
    return args.weights or DEFAULT_RGB, args.flow_weights or DEFAULT_FLOW


# ---- predict ------------------------------------------------------------------


def _add_views(p: argparse.ArgumentParser) -> None:
    """Multi-view testing: ``--clips``, ``--clip-len``, ``--crops``, ``--average``."""
    from i3d.predict import AVERAGES, DEFAULT_CLIP_LEN
    from i3d.video.transforms import CROP_COUNTS

    p.add_argument(
        "--clips",
        type=positive_int,
        default=None,
        metavar="K",
        help="score K windows of --clip-len frames evenly spaced over the video, the first at frame 0, the last "
        "ending at the last frame (default: the whole video as one view)",
    )
    p.add_argument(
        "--clip-len",
        type=positive_int,
        default=DEFAULT_CLIP_LEN,
        metavar="N",
        help=f"frames per window with --clips (default: {DEFAULT_CLIP_LEN})",
    )
    p.add_argument(
        "--crops",
        type=int,
        choices=CROP_COUNTS,
        default=1,
        help="crops of every frame, each a view: 1 centre (default), 3 along the long side, 5 corners and centre, "
        "10 those and their mirror images",
    )
    p.add_argument(
        "--average",
        choices=AVERAGES,
        default="score",
        help="average the views' logits (score, default) or their softmax probabilities (prob)",
    )


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    from i3d.streaming import DEFAULT_CHUNK_FRAMES

    p.add_argument(
        "videos",
        nargs="+",
        metavar="INPUT",
        help="video files, frame folders, DeepMind .npy arrays, folders (searched recursively), .txt lists of "
        "paths (one per line) or glob patterns",
    )
    _add_weights(p)
    p.add_argument(
        "--stream",
        choices=("rgb", "flow", "joint"),
        default="rgb",
        help="which network to run; joint adds RGB and flow logits (default: rgb)",
    )
    p.add_argument("--labels", type=regular_file, help="class names, one per line, overriding the weights' own")
    p.add_argument("--top", type=int, default=5, metavar="K", help="number of classes to print (default: 5)")
    p.add_argument("--json", action="store_true", help="print one JSON document: a list with one object per video")
    p.add_argument(
        "--device", type=device, default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if available)"
    )
    _add_precision(p)
    p.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK_FRAMES,
        metavar="N",
        help=f"frames per network call; bounds memory, results do not depend on it (default: {DEFAULT_CHUNK_FRAMES})",
    )
    p.add_argument("--flow-dir", type=Path, help="folder caching computed flow frames, reused by later runs")
    _add_flow_engine(p)
    _add_overrides(p)
    _add_views(p)
    _add_quiet(p)
    p.add_argument(
        "--out",
        type=output_file,
        default=None,
        metavar="FILE",
        help="also write the results to FILE: JSON lines (.jsonl, one object per video) or CSV (.csv, one row per "
        "video and class: video,rank,label,index,prob,logit)",
    )


def run_predict(args: argparse.Namespace) -> int:
    from i3d.predict import Classifier
    from i3d.video.listing import check_source, expand_inputs

    if args.top < 1 or args.chunk < 1:
        _error("--top and --chunk must be >= 1")
        return 2
    if args.out is not None and args.out.suffix.lower() not in (".jsonl", ".csv"):
        _error(f"--out {args.out}: the name must end in .jsonl or .csv")
        return 2
    try:
        videos = expand_inputs(args.videos, exclude=[args.flow_dir])
    except I3DError as err:
        _error(str(err))
        return 1
    weights, flow_weights = _stream_weights(args)
    try:
        _prefetch(args, {"rgb": ("rgb",), "flow": ("flow",), "joint": ("rgb", "flow")}[args.stream])
        classifier = Classifier(
            args.stream,
            rgb_weights=weights,
            flow_weights=flow_weights,
            labels=args.labels,
            device=args.device,
            precision=args.precision,
            chunk_frames=args.chunk,
            flow_dir=args.flow_dir,
            flow_engine=args.flow_engine,
            fps=args.fps,
            short_side=args.short_side,
            crop=args.crop,
            clips=args.clips,
            clip_len=args.clip_len,
            crops=args.crops,
            average=args.average,
            progress=sys.stderr.isatty(),
        )
    except (I3DError, ValueError) as err:
        _error(str(err))
        return 1
    from i3d.progress import Progress

    progress = Progress("i3d predict", len(videos), quiet=args.quiet)
    results, failed = [], 0
    if not args.json:
        print(f"  {'prob':>9}  {'logit':>9}  label")
    for video in videos:
        try:
            check_source(video)
            prediction = classifier.predict(video, top=args.top, progress=progress)
        except I3DError as err:
            progress.clear()
            _error(str(err))
            failed += 1
            continue
        except (ValueError, RuntimeError, OSError, MemoryError) as err:  # e.g. out of memory: report, go on
            progress.clear()
            _error(f"{video}: {type(err).__name__}: {err}")
            failed += 1
            continue
        progress.clear()
        results.append(prediction.to_json())
        if not args.json:
            print(prediction.video)
            for t in prediction.top:
                print(f"  {t.prob:9.6f}  {t.logit:9.4f}  {t.label}")
    if args.json:
        console.write_json(results, indent=1)
    if args.out is not None:
        try:
            _write_predictions(args.out, results)
        except I3DError as err:  # e.g. made a device node meanwhile (checked when parsed)
            _error(str(err))
            return 1
        except OSError as err:
            _error(f"{args.out}: cannot write ({err.strerror or err})")
            return 1
    return 1 if failed else 0


def _write_predictions(path: Path, results: list[dict]) -> None:
    """JSON lines or CSV by the extension, written atomically."""
    import csv

    from i3d.atomic import open_atomic

    with open_atomic(path) as f:
        if path.suffix.lower() == ".jsonl":
            for result in results:
                f.write(console.strict_json(result) + "\n")
            return
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["video", "rank", "label", "index", "prob", "logit"])
        for result in results:
            for rank, top in enumerate(result["top"], 1):
                writer.writerow([result["video"], rank, top["label"], top["index"], top["prob"], top["logit"]])


# ---- extract ---------------------------------------------------------------------


def add_extract_arguments(p: argparse.ArgumentParser) -> None:
    from i3d import extract as E

    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="video files, frame folders, DeepMind .npy arrays, folders (searched recursively), .txt lists of "
        "paths (one per line) or glob patterns",
    )
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
    _add_weights(p)
    p.add_argument(
        "--layer",
        default=E.POOLED,
        choices=E.LAYERS,
        metavar="LAYER",
        help="pooled (Mixed_5c after the head's pool, 1024-d; default), logits, or an endpoint such as Mixed_4f "
        "(spatial maps); one of: %(choices)s",
    )
    p.add_argument(
        "--mode",
        choices=E.MODES,
        default="full",
        help="full: one pass over the whole video, a row per 8 frames (default); clips: a row per window; "
        "frames: a row per frame, its window starting --clip-len // 2 frames before it (edge frames repeated)",
    )
    p.add_argument(
        "--clip-len",
        type=int,
        default=E.DEFAULT_CLIP_LEN,
        help=f"clips and frames modes: frames per window (default: {E.DEFAULT_CLIP_LEN})",
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
        choices=E.CROP_COUNTS,
        default=1,
        help="views of every frame, run as a batch: 1 centre (default); 3 left, centre, right along the long side; "
        "5 four corners and centre; 10 those five, then the same in the mirrored frame (torchvision's TenCrop); "
        "rows become (crops, C)",
    )
    p.add_argument(
        "--combine",
        choices=E.COMBINE,
        default="separate",
        help="with --stream both: separate files per stream (default), or concat: one file OUT/NAME.rgb+flow.FORMAT "
        "whose rows hold RGB then flow",
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=E.DEFAULT_CHUNK_FRAMES,
        help=f"full mode: frames per network call, all crops together (chunk // crops of each); bounds memory, "
        f"results do not depend on it (default: {E.DEFAULT_CHUNK_FRAMES})",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=E.DEFAULT_BATCH,
        help=f"clips and frames modes: clips (a window of one crop) per network call (default: {E.DEFAULT_BATCH})",
    )
    p.add_argument("--format", choices=E.FORMATS, default="npy", help="feature file format (default: npy)")
    p.add_argument(
        "--layout",
        choices=E.LAYOUTS,
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
    p.add_argument(
        "--device",
        type=device,
        default=None,
        help="torch device (default: cuda:LOCAL_RANK or cuda if available, else cpu)",
    )
    _add_precision(p)
    p.add_argument("--flow-dir", type=Path, help="folder caching computed flow frames, reused by later runs")
    _add_flow_engine(p)
    _add_overrides(p)
    _add_quiet(p)
    p.add_argument(
        "--verify",
        action="store_true",
        help="check the SHA-256 of every complete output against its sidecar and redo those that differ "
        "(reruns otherwise check sizes only)",
    )


def _auto_shard(env: dict[str, str]) -> tuple[int, int]:
    """``(index, count)`` of this task from Slurm's or torchrun's environment."""
    if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
        first = int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        return int(env["SLURM_ARRAY_TASK_ID"]) - first, int(env["SLURM_ARRAY_TASK_COUNT"])
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))


def _parse_shard(text: str | None, env: dict[str, str] | None = None) -> tuple[int, int]:
    import os

    if text is None:
        return 0, 1
    if text == "auto":
        try:
            index, count = _auto_shard(dict(os.environ) if env is None else env)
        except ValueError:
            raise ValueError("--shard auto: the Slurm or torchrun variables are not integers") from None
        if not 0 <= index < count:
            raise ValueError(f"--shard auto: task {index} of {count} from the environment")
        return index, count
    try:
        return shard_spec(text)
    except argparse.ArgumentTypeError as err:
        raise ValueError(f"--shard {err}") from None


def run_extract(args: argparse.Namespace) -> int:
    from i3d import extract as E

    try:
        index, count = _parse_shard(args.shard)
        if min(args.chunk, args.clip_len, args.batch) < 1 or (args.step is not None and args.step < 1):
            raise ValueError("--chunk, --clip-len, --step and --batch must be >= 1")
        if args.workers is not None and args.workers < 0:
            raise ValueError("--workers must be >= 0")
        if args.layout == "port":
            E.check_port_layout(args.layer, args.mode, args.format, 2 if args.stream == "both" else 1, args.crops)
        if args.combine == "concat" and args.stream != "both":
            raise ValueError("--combine concat needs --stream both")
        if args.num_clips is not None and (args.mode != "clips" or args.step is not None):
            raise ValueError("--num-clips is for --mode clips, instead of --step")
    except ValueError as err:
        _error(str(err))
        return 2
    ids = None
    if args.charades_csv:
        from i3d.charades.annotations import read_csv

        try:
            ids = [video.id for video in read_csv(args.charades_csv)]
        except I3DError as err:
            _error(str(err))
            return 1
    try:
        inputs = E.expand_inputs(args.inputs, ids=ids, exclude=[args.out, args.flow_dir])
        # Over all inputs, so that shards agree.
        names = E.port_names(inputs) if args.layout == "port" else E.output_names(inputs)
        E.check_collisions(names)  # before any work, on every shard
        E.check_output_dir(args.out)
    except I3DError as err:
        _error(str(err))
        return 1
    rank, world = E.distributed_shard() if args.shard != "auto" else (0, 1)  # auto already took the rank's part
    mine = E.shard_inputs(E.shard_inputs(inputs, index, count), rank, world)
    streams = ("rgb", "flow") if args.stream == "both" else (args.stream,)
    weights, flow_weights = _stream_weights(args)
    try:
        _prefetch(args, streams)
        extractor = E.Extractor(
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
            chunk=args.chunk,
            batch=args.batch,
            device=args.device,
            precision=args.precision,
            flow_dir=args.flow_dir,
            flow_engine=args.flow_engine,
            fps=args.fps,
            short_side=args.short_side,
            crop=args.crop,
            progress=sys.stderr.isatty(),
        )
    except (I3DError, ValueError) as err:
        _error(str(err))
        return 1
    workers = args.workers if args.workers is not None else int(extractor.device.type == "cuda")
    try:
        summary = E.extract_all(
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
        _error(str(err))
        return 1
    if summary.stopped:
        print(f"i3d extract: {summary.stopped}", file=sys.stderr)
    print(f"i3d extract: {summary.line()}", file=sys.stderr)
    return 0 if summary.ok else 1


# ---- verify ------------------------------------------------------------------------


def add_verify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, metavar="OUT", help="an output folder of `i3d extract`")
    p.add_argument("--quiet", action="store_true", help="print only the outputs that do not match")


def run_verify(args: argparse.Namespace) -> int:
    """Check every output's size and SHA-256 against its sidecar; exit 1 if
    any differs (`i3d extract ... --verify` redoes those)."""
    from i3d.extract import verify_outputs

    if not args.out.is_dir():
        _error(f"{args.out}: is not a folder")
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


# ---- the parser ---------------------------------------------------------------------


# A subcommand's flags and runner: the functions, or "module:function" to
# import when the subcommand is parsed (modules that import torch).
AddArguments = Callable[[argparse.ArgumentParser], None] | str
Run = Runner | str


def _resolve(target: Callable | str) -> Callable:
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line; a subcommand's flags can be added when it is parsed.

    Adding them lazily keeps ``i3d --help`` from importing the modules that
    define them (torch, numpy, OpenCV and PyAV take over a second to import).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: tuple[AddArguments, Run | None] | None = None

    def defer(self, add: AddArguments, run: Run | None) -> None:
        """Add ``add(self)``'s flags, and set ``run`` as the runner, when this parser is first used.

        ``run`` is ``None`` for a group whose own subcommands set theirs.
        """
        self._deferred = (add, run)

    def complete(self) -> _Parser:
        """Add the deferred flags now (idempotent); returns ``self``."""
        if self._deferred is not None:
            add, run = self._deferred
            self._deferred = None
            _resolve(add)(self)
            if run is not None:
                self.set_defaults(run=_resolve(run))
        return self

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self.complete()
        # The innermost subcommand parsed names the command in messages:
        # argparse copies a subparser's values over its parent's.
        self.set_defaults(command_name=self.prog, command_parser=self)
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self.complete()
        return super().format_help()

    def error(self, message: str):  # type: ignore[override]
        """``i3d <command>: error: <message> (see 'i3d <command> --help')`` and exit status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _command(sub: argparse._SubParsersAction, name: str, help: str, add: AddArguments, run: Run | None) -> None:
    """Subcommand ``name``: flags from ``add(parser)``, run by ``run(args) -> int``.

    ``add`` and ``run`` may be ``"module:function"``, imported only when the
    subcommand is parsed; ``run`` is ``None`` for a group of subcommands.
    """
    p = sub.add_parser(name, help=help, description=help)
    p.defer(add, run)


def build_parser() -> argparse.ArgumentParser:
    """The ``i3d`` parser; a subcommand's module is imported only when that subcommand is parsed."""
    from i3d.fvd.cli import HELP as FVD_HELP  # a light module: its flags import the rest

    parser = _Parser(prog="i3d", description="Exact, fast I3D: classify, extract features, evaluate.")
    parser.add_argument("--version", action="version", version=f"i3d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(sub, "predict", "classify videos with pretrained weights", add_predict_arguments, run_predict)
    _command(sub, "extract", "extract features from videos into files", add_extract_arguments, run_extract)
    _command(
        sub, "verify", "check extracted features against their sidecars' checksums", add_verify_arguments, run_verify
    )
    _command(
        sub,
        "train",
        "fine-tune on class folders, CSV lists, Kinetics or Charades (its published recipe by default)",
        "i3d.train.cli:add_train_arguments",
        "i3d.train.cli:run_train",
    )
    _command(sub, "fvd", FVD_HELP, "i3d.fvd.cli:add_arguments", "i3d.fvd.cli:run")
    _command(
        sub,
        "flow",
        "compute TV-L1 optical flow frames",
        "i3d.video.cli:add_flow_arguments",
        "i3d.video.cli:run_flow",
    )
    _command(
        sub,
        "export",
        "write the network as ONNX, OpenVINO IR or TorchScript, checked against the torch model",
        "i3d.export.cli:add_export_arguments",
        "i3d.export.cli:run_export",
    )
    _command(
        sub,
        "convert",
        "convert a checkpoint (DeepMind TensorFlow, .pt, .safetensors) to .safetensors or .pt",
        "i3d.convert.cli:add_convert_arguments",
        "i3d.convert.cli:run_convert",
    )

    weights_help = "the registry of published checkpoints, and the local cache"
    _command(sub, "weights", weights_help, "i3d.weights.cli:add_weights_arguments", None)

    eval_help = (
        "the official Charades evaluations (classification, localization), a timeline plot, and the accuracy of "
        "a trained model on a labelled list"
    )
    evaluate = sub.add_parser("eval", help=eval_help, description=eval_help)
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True, metavar="TASK")
    _command(
        eval_sub,
        "classify",
        "Charades classification mAP (Charades_v1_classify.m)",
        "i3d.charades.cli:add_classify_arguments",
        "i3d.charades.cli:run_classify",
    )
    _command(
        eval_sub,
        "localize",
        "Charades per-frame localization mAP (Charades_v1_localize.m)",
        "i3d.charades.cli:add_localize_arguments",
        "i3d.charades.cli:run_localize",
    )
    _command(
        eval_sub,
        "timeline",
        "plot one video's ground truth against predicted per-frame scores (PNG)",
        "i3d.charades.cli:add_timeline_arguments",
        "i3d.charades.cli:run_timeline",
    )
    _command(
        eval_sub,
        "accuracy",
        "top-1, top-5 and mean class accuracy (mAP if multi-label) of a trained model on a labelled video list",
        "i3d.train.evaluate:add_accuracy_arguments",
        "i3d.train.evaluate:run_accuracy",
    )
    return parser


def _quiet_broken_pipe() -> int:
    """After stdout's reader went away: no traceback, not even at exit when Python flushes stdout."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture)
        pass
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


def main(argv: list[str] | None = None) -> int:
    """Run the ``i3d`` command; returns its exit status."""
    try:
        args, unknown = build_parser().parse_known_args(argv)
        if unknown:  # named by the subcommand that was given them, not by plain "i3d"
            args.command_parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        with console.command(args.command_name):
            try:
                status = args.run(args)
                sys.stdout.flush()
            except KeyboardInterrupt:
                console.error("interrupted")
                return EXIT_INTERRUPTED
    except KeyboardInterrupt:  # while parsing, which imports the subcommand's modules (torch: seconds)
        console.error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return _quiet_broken_pipe()
    return status


if __name__ == "__main__":
    sys.exit(main())
