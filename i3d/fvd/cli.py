"""``i3d fvd``: FVD and KVD between two sets of videos; ``stats`` and ``merge`` for large sets.

::

    i3d fvd REAL GEN [--json] [--num-frames 16] [--kvd]
    i3d fvd stats INPUT... --out real.npz [--shard I/N] [--kvd]
    i3d fvd merge real-0.npz real-1.npz --out real.npz

REAL and GEN are videos (see :mod:`i3d.fvd.inputs`) or statistics files.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from i3d import console
from i3d.argtypes import output_file, positive_int, regular_file, shard_spec
from i3d.errors import I3DError
from i3d.flags import add_backend, add_device, add_precision, add_weights

HELP = "Fréchet video distance (FVD) and KVD, exactly as the reference computes them"
_DEFAULT = "distance"


class _DefaultSubcommand(argparse._SubParsersAction):
    """Subcommands where a first word that names none starts the default one:
    ``i3d fvd REAL GEN`` is ``i3d fvd distance REAL GEN``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.choices = None  # any first word passes argparse's check; __call__ decides

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if values[0] not in self._name_parser_map:
            values = [_DEFAULT, *values]
        super().__call__(parser, namespace, values, option_string)


def statistics_path(text: str) -> Path:
    """An ``.npz`` to write statistics to: refused up front otherwise, since only
    ``.npz`` names are read back as statistics."""
    if not text.lower().endswith(".npz"):
        raise argparse.ArgumentTypeError(f"{text}: a statistics file must end in .npz")
    return output_file(text)


def _add_embedding(p: argparse.ArgumentParser) -> None:
    from i3d.fvd.choices import DEFAULT_BATCH, RESIZE_METHODS
    from i3d.fvd.protocols import PROTOCOL_NAMES

    p.add_argument(
        "--protocol",
        choices=PROTOCOL_NAMES,
        default=None,
        help="whose FVD: reference (google-research's, the default; or the statistics files'), styleganv, "
        "videogpt, tats, cdfvd, junyaohu: each codebase's network, resize, value range, clips, number of "
        "videos, covariance and square root (README: 'FVD protocols')",
    )
    add_weights(
        p.add_argument,
        default=None,
        help="registry name or .pt/.safetensors path (default: the protocol's; rgb_scratch, which is TF-Hub's "
        "i3d-kinetics-400, for reference)",
    )
    p.add_argument(
        "--num-frames",
        type=positive_int,
        default=None,
        metavar="T",
        help="clip length (default: the protocol's, 16 for styleganv and videogpt; all frames otherwise)",
    )
    p.add_argument(
        "--resize",
        choices=RESIZE_METHODS,
        default=None,
        help="reference protocol only: reference (TensorFlow 1's resize_bilinear, the default) or torch "
        "(F.interpolate's half-pixel rule, a variant that gives other numbers)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the protocol's random clip draws (styleganv, videogpt)")
    p.add_argument(
        "--max-videos",
        type=positive_int,
        default=None,
        metavar="N",
        help="at most N videos a side instead of the protocol's (styleganv and tats 2048, videogpt 256, "
        "cdfvd's GEN 2048)",
    )
    p.add_argument(
        "--subsample",
        type=positive_int,
        default=1,
        metavar="S",
        help="every S-th frame of a clip of T*S frames (StyleGAN-V's subsample factor, e.g. 8)",
    )
    p.add_argument(
        "--batch", type=positive_int, default=DEFAULT_BATCH, help=f"clips per network call (default: {DEFAULT_BATCH})"
    )
    add_device(p.add_argument, default=None)
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress (videos done, videos/s, ETA: a bar on a terminal, a line every 30 s otherwise); "
        "errors and results are still printed",
    )
    add_precision(
        p.add_argument,
        default="fp32",
        help="fp32: exact, comparable across papers (default); tf32, bf16, fp16: faster on GPUs, not the reference",
    )
    add_backend(p.add_argument)


def _add_distance_arguments(p: argparse.ArgumentParser) -> None:
    from i3d.fvd.choices import MAX_BLOCK_SIZE
    from i3d.fvd.protocols import CURVE_FIRST

    for name in ("real", "gen"):
        p.add_argument(
            name,
            metavar=name.upper(),
            help="videos: a video file, frame folder, folder of those, .txt list, or .npy/.npz uint8 array "
            "(N, T, H, W, 3); or a statistics file from `i3d fvd stats`",
        )
    p.add_argument("--json", action="store_true", help="print one JSON object (fvd, kvd, n_real, n_gen, weights, ...)")
    p.add_argument(
        "--runs",
        type=positive_int,
        default=1,
        metavar="K",
        help="FVD over K random draws (seeds SEED..SEED+K-1): mean, standard deviation and each (protocols that draw)",
    )
    p.add_argument(
        "--curve",
        type=positive_int,
        nargs="?",
        const=CURVE_FIRST,
        default=None,
        metavar="FIRST",
        help=f"also FVD of the first FIRST, FIRST+1, ..., T frames (FIRST: {CURVE_FIRST}, as JunyaoHu's "
        "only_final=False)",
    )
    p.add_argument(
        "--kvd", action="store_true", help="also the kernel distance (needs embeddings: statistics made with --kvd)"
    )
    p.add_argument(
        "--kvd-block",
        type=positive_int,
        default=MAX_BLOCK_SIZE,
        metavar="N",
        help=f"largest block of the KVD estimator (default: tfgan's {MAX_BLOCK_SIZE})",
    )
    _add_embedding(p)


def _add_stats_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="videos, as for REAL and GEN")
    p.add_argument("--out", type=statistics_path, required=True, help="statistics file to write (.npz)")
    p.add_argument(
        "--shard",
        type=shard_spec,
        default=(0, 1),
        metavar="I/N",
        help="only part I of N (0-based: every N-th video from the I-th); `i3d fvd merge` joins the parts",
    )
    p.add_argument("--kvd", action="store_true", help="keep the embeddings too (3.2 kB a video), for KVD")
    p.add_argument(
        "--role",
        choices=("real", "gen"),
        default="real",
        help="which side of the protocol these videos are (styleganv draws real clips and takes generated "
        "ones from the start; cdfvd repeats generated videos up to 2048)",
    )
    _add_embedding(p)


def _add_merge_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "parts", nargs="+", metavar="STATS", type=regular_file, help="statistics files of disjoint sets of videos"
    )
    p.add_argument(
        "--out", type=statistics_path, required=True, help="merged statistics file to write (.npz; not one of STATS)"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``fvd`` command's subcommands (``distance`` is the default)."""
    p.description = f"{HELP}. `i3d fvd REAL GEN` is short for `i3d fvd distance REAL GEN` (options after REAL GEN)."
    sub = p.add_subparsers(
        dest="fvd_command", required=True, metavar="{REAL GEN,stats,merge}", action=_DefaultSubcommand
    )
    for name, text, add in (
        (_DEFAULT, "FVD (and KVD) between REAL and GEN", _add_distance_arguments),
        ("stats", "write the FVD statistics of videos, in chunks, optionally one shard", _add_stats_arguments),
        ("merge", "merge statistics of disjoint shards into one file", _add_merge_arguments),
    ):
        add(sub.add_parser(name, help=text, description=text))


# ---- running --------------------------------------------------------------------


# Protocols whose weights, i3d_pretrained_400, are TF-Hub's network converted.
_TF_HUB_COPIES = ("videogpt", "tats", "cdfvd")


class _Session:
    """The network, loaded only if some input needs embedding; counts failed videos."""

    def __init__(self, args: argparse.Namespace, protocol: str) -> None:
        self.args = args
        self.protocol = protocol
        self.embedder = None
        self.failed = 0
        self.seconds = 0.0

    def report(self, message: str) -> None:
        console.error(message)
        self.failed += 1

    def embedder_for_args(self):
        from i3d.fvd.embedding import Embedder

        if self.embedder is None:
            args = self.args
            try:
                self.embedder = Embedder(
                    args.weights,
                    protocol=self.protocol,
                    device=args.device,
                    precision=args.precision,
                    backend=args.backend,
                    resize=args.resize or "reference",
                    batch_size=args.batch,
                    progress=sys.stderr.isatty() and not args.quiet,
                )
            except I3DError as err:
                if args.weights is None and self.protocol in _TF_HUB_COPIES:
                    raise I3DError(
                        f"{err}; i3d_pretrained_400 holds TF-Hub's i3d-kinetics-400 tensors, which rgb_scratch "
                        "also holds: --weights rgb_scratch runs this protocol with them"
                    ) from None
                raise
        return self.embedder

    def num_frames(self) -> int | None:
        from i3d.fvd.protocols import get_protocol

        return self.args.num_frames if self.args.num_frames is not None else get_protocol(self.protocol).num_frames

    def settings(self) -> dict:
        """The ``meta`` that statistics computed now will carry (less ``clips``)."""
        return self.embedder_for_args().settings(self.num_frames())

    def statistics(
        self,
        inputs: list[str],
        *,
        keep_activations: bool,
        role: str,
        seed: int,
        num_frames: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ):
        from i3d.fvd.compute import compute_statistics

        embedder = self.embedder_for_args()
        start = time.perf_counter()
        stats = compute_statistics(
            inputs,
            embedder,
            num_frames=num_frames or self.num_frames(),
            shard=shard,
            keep_activations=keep_activations,
            on_error=self.report,
            progress=not self.args.quiet,
            role=role,
            seed=seed,
            max_videos=self.args.max_videos,
            step=self.args.subsample,
        )
        self.seconds += time.perf_counter() - start
        return stats


def _differences(a: dict, b: dict) -> str:
    keys = sorted(set(a) | set(b))
    return "; ".join(f"{k}: {a.get(k)} vs {b.get(k)}" for k in keys if a.get(k) != b.get(k))


def _embedding_meta(meta: dict) -> dict:
    """What must agree between REAL and GEN: all but how each side's clips were chosen.
    (Statistics from before protocols, or made in Python without one, are the reference's.)"""
    return {"protocol": "reference", **{k: v for k, v in meta.items() if k != "clips"}}


def _file_protocol(args: argparse.Namespace, loaded: dict, sources: dict) -> str:
    """The protocol: the statistics files', which must agree with each other and with ``--protocol``."""
    protocols = {name: stats.meta.get("protocol", "reference") for name, stats in loaded.items()}
    for name, protocol in protocols.items():
        if args.protocol is not None and protocol != args.protocol:
            raise ValueError(
                f"{sources[name]} was made with the {protocol} protocol, not --protocol {args.protocol}; "
                "protocols do not mix"
            )
    if len(set(protocols.values())) > 1:
        raise ValueError(
            f"REAL was made with the {protocols['REAL']} protocol and GEN with {protocols['GEN']}; protocols do not mix"
        )
    return next(iter(protocols.values()), args.protocol or "reference")


def _check_roles(protocol, loaded: dict, sources: dict) -> None:
    """A statistics file must hold the clips of the side it is given as, where the protocol's sides differ."""
    per_side = (protocol.clips, protocol.max_videos, protocol.repeat)
    sides_differ = any(setting["real"] != setting["gen"] for setting in per_side)
    for name, stats in loaded.items():
        role, want = stats.meta.get("clips", {}).get("role"), "real" if name == "REAL" else "gen"
        if sides_differ and role is not None and role != want:
            raise ValueError(
                f"{sources[name]} holds {role} clips (`i3d fvd stats --role {role}`), given as {name}: the "
                f"{protocol.name} protocol takes {want} clips differently; make it with --role {want}"
            )


def _distances(args, session, sources, loaded, protocol, *, seed: int, num_frames: int | None) -> tuple:
    """``(real, gen, fvd)`` with the videos' sides embedded for this draw and clip length."""
    from i3d.fvd.distance import frechet_distance

    sides = dict(loaded)
    for name, src in sources.items():
        if name not in sides:
            role = "real" if name == "REAL" else "gen"
            sides[name] = session.statistics(
                [src], keep_activations=args.kvd, role=role, seed=seed, num_frames=num_frames
            )
    real, gen = sides["REAL"], sides["GEN"]
    if _embedding_meta(real.meta) != _embedding_meta(gen.meta):
        differences = _differences(_embedding_meta(real.meta), _embedding_meta(gen.meta))
        raise ValueError(f"REAL and GEN were embedded differently ({differences})")
    for name, stats in (("REAL", real), ("GEN", gen)):
        if stats.count < 2:
            raise ValueError(f"{name}: {stats.count} video(s) embedded; FVD needs at least 2")
    return real, gen, frechet_distance(real, gen, protocol)


def run_distance(args: argparse.Namespace) -> int:
    import numpy as np

    from i3d.fvd.distance import kernel_distance_and_std
    from i3d.fvd.protocols import get_protocol
    from i3d.fvd.stats import Statistics, is_statistics_file

    try:
        # Statistics files first: a mismatch shows before any video is embedded.
        sources = {"REAL": args.real, "GEN": args.gen}
        loaded = {name: Statistics.load(src) for name, src in sources.items() if is_statistics_file(src)}
        protocol = get_protocol(_file_protocol(args, loaded, sources))
        _check_roles(protocol, loaded, sources)
        session = _Session(args, protocol.name)
        for name, stats in loaded.items():
            if args.kvd and stats.activations is None:
                raise ValueError(f"{sources[name]}: holds no embeddings for --kvd (make it with `i3d fvd stats --kvd`)")
        if len(loaded) == 1:
            (name, stats), settings = next(iter(loaded.items())), session.settings()
            if _embedding_meta(stats.meta) != settings:
                differences = _differences(_embedding_meta(stats.meta), settings)
                raise ValueError(f"{sources[name]} was embedded differently ({differences})")
        if (args.runs > 1 or args.curve is not None) and len(loaded) == 2:
            raise ValueError("--runs and --curve embed videos again: give videos, not two statistics files")
        if args.runs > 1 and not protocol.draws:
            raise ValueError(f"--runs: the {protocol.name} protocol draws nothing at random")
        curve = []
        if args.curve is not None:
            longest = session.num_frames()
            if longest is None or longest < args.curve:
                raise ValueError(f"--curve {args.curve}: give clips of at least {args.curve} frames with --num-frames")
            for length in range(args.curve, longest):
                *_, value = _distances(args, session, sources, loaded, protocol, seed=args.seed, num_frames=length)
                curve.append((length, value))
        runs = []
        for run in range(args.runs):
            seed = args.seed + run
            real, gen, value = _distances(args, session, sources, loaded, protocol, seed=seed, num_frames=None)
            runs.append(value)
        fvd = float(np.mean(runs))
        kvd = kvd_std = None
        if args.kvd:
            kvd, kvd_std = kernel_distance_and_std(real, gen, max_block_size=args.kvd_block)
    except (I3DError, ValueError) as err:
        console.error(str(err))
        return 1
    result = {
        "fvd": fvd,
        "kvd": kvd,
        "kvd_std": None if kvd_std is None or math.isnan(kvd_std) else kvd_std,
        "n_real": real.count,
        "n_gen": gen.count,
        "failed": session.failed,
        "protocol": protocol.name,
        "weights": real.meta.get("weights"),
        "weights_sha256": real.meta.get("weights_sha256"),
        "precision": real.meta.get("precision"),
        "preprocess": real.meta.get("preprocess"),
    }
    if args.runs > 1:
        # np.std: the population deviation, as VideoGPT's compute_fvd.py reports it.
        result.update(fvd_std=float(np.std(runs)), fvd_runs=runs, seeds=[args.seed + r for r in range(args.runs)])
    if args.curve is not None:
        points = [*curve, (session.num_frames(), fvd)]
        result["curve"] = [{"num_frames": n, "fvd": v} for n, v in points]
    if args.json:
        console.write_json(result, indent=1)
    else:
        spread = f" +/- {result['fvd_std']:.4f} (std over {args.runs} draws)" if args.runs > 1 else ""
        print(f"FVD {fvd:.4f}{spread}")
        for point in result.get("curve", []):
            print(f"  first {point['num_frames']} frames: FVD {point['fvd']:.4f}")
        if kvd is not None:
            spread = f" (standard error {kvd_std:.4g})" if result["kvd_std"] is not None else ""
            print(f"KVD {kvd:.6g}{spread}")
        print(
            f"real: {real.count} videos, gen: {gen.count} videos, protocol: {protocol.name}, "
            f"weights: {result['weights']}"
        )
    return 1 if session.failed else 0


def run_stats(args: argparse.Namespace) -> int:
    session = _Session(args, args.protocol or "reference")
    try:
        stats = session.statistics(
            args.inputs, keep_activations=args.kvd, role=args.role, seed=args.seed, shard=args.shard
        )
        if stats.count == 0:
            raise ValueError("no video could be embedded; nothing written")
        stats.save(args.out)
    except (I3DError, ValueError, OSError) as err:
        console.error(str(err))
        return 1
    rate = stats.count / session.seconds if session.seconds > 0 else float("nan")
    failed = f", {session.failed} failed" if session.failed else ""
    print(
        f"i3d fvd stats: {stats.count} videos{failed} in {session.seconds:.1f} s ({rate:.2f} videos/s) -> {args.out}",
        file=sys.stderr,
    )
    return 1 if session.failed else 0


def run_merge(args: argparse.Namespace) -> int:
    from i3d.fvd.stats import Statistics

    try:
        for path in args.parts:
            if args.out.exists() and path.exists() and os.path.samefile(args.out, path):
                raise ValueError(f"--out {args.out} is one of the files to merge ({path}); write elsewhere")
        parts = [Statistics.load(path) for path in args.parts]
        merged = Statistics(keep_activations=all(p.keep_activations for p in parts)).merge(*parts)
        merged.save(args.out)
    except (I3DError, ValueError, OSError) as err:
        console.error(str(err))
        return 1
    print(f"i3d fvd merge: {merged.count} videos from {len(parts)} files -> {args.out}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    return {"distance": run_distance, "stats": run_stats, "merge": run_merge}[args.fvd_command](args)
