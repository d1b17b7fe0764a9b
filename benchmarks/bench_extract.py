"""Feature extraction: end-to-end speed against the model alone, and peak memory against video length.

    python benchmarks/bench_extract.py                      # CPU defaults, a few minutes
    python benchmarks/bench_extract.py --device cuda --throughput-seconds 60 --size 112 --fps 25
    python benchmarks/bench_extract.py --crops 1,10 --workers 0   # multi-crop: speed ratio, flat memory

Throughput. One synthetic video file goes through :func:`i3d.extract.extract_all`
into a feature file on disk (scanning, decoding, resampling, resizing, the
network in chunks, the atomic write), with ``--workers 0`` (decoding inline)
and ``--workers 1`` (decoding in a process ahead of the model). The baseline,
timed in the same run on the same frames: the model alone, i.e.
:meth:`i3d.extract.Extractor.rows` fed the decoded chunks already in memory,
same chunk size. Decoding alone is timed too: with the model alone it bounds
what running them side by side can reach. Rounds are interleaved and each
case keeps its best time; the machine may be shared, so only the ratios within
one run mean anything.

Memory. For each video length a fresh process loads the model, resets its
peak-RSS mark (``/proc/self/clear_refs``), runs ``extract_all`` and reads the
mark back (``VmHWM``): the peak resident memory during extraction of the
process that runs the model. The decoding worker's own peak (whole life,
``import torch`` included) is ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` once
``extract_all`` has joined it. Tiny frames at a low rate make an hour of
video feasible on a CPU; memory is bounded by the chunk, so the point is the
flatness across lengths, not the absolute numbers.

Crops. With ``--crops 1,10`` the throughput part also times end-to-end
extraction of every other crop count (``--workers`` first value) and prints
its rate against one crop, in video frames/s and in crop views/s; the memory
series runs every crop count (all crops of a chunk share ``--chunk`` frames,
so the peak should not grow with the count either).

Weights are random (saved to a temporary ``.safetensors``): neither speed nor
memory depends on their values. Durations are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from i3d.chunked import POOLED
from i3d.extract import CROP_COUNTS, DEFAULT_CHUNK_FRAMES, LAYERS, Extractor, extract_all, output_names, output_paths
from i3d.model import InceptionI3d
from i3d.runtime import PRECISIONS, Precision
from i3d.video import KINETICS_RGB, Preprocess, open_input
from i3d.weights import save_state_dict

KIB = 1024
MIB = KIB * KIB
SECONDS_PER_MINUTE = 60
# Kinetics resizes the short side to 256 and crops 224; every --size keeps that ratio.
RESIZE_PER_CROP = Fraction(KINETICS_RGB.resize_short_side, KINETICS_RGB.crop)
# Sources are larger than the network's resize, as real videos are, so that
# decoding and resizing do real work: 4:3, short side 5/4 of the resize.
SOURCE_PER_RESIZE = Fraction(5, 4)
SOURCE_ASPECT = Fraction(4, 3)
# The moving pattern: pixels per frame the gradient and the square travel.
PATTERN_SPEED = 3
SQUARE_PER_HEIGHT = 4  # the square's side is a quarter of the frame height
UINT8_LEVELS = 256
# Enough to express NTSC rates such as 30000/1001 exactly.
MAX_RATE_DENOMINATOR = 1001
SEED = 0
OUTPUT_STREAM = "rgb"
MODEL_ONLY = "model only (tensors in memory)"
# Frames of the untimed first pass: enough to run every layer once.
WARMUP_FRAMES = 16
# A video this short measures what every extract_all call pays whatever the length.
STARTUP_FRAMES = 2


# ---- inputs ---------------------------------------------------------------------------


def _even(value: Fraction | int) -> int:
    """Round up to an even number of pixels, as 4:2:0 chroma needs."""
    return 2 * math.ceil(value / 2)


def resize_side(size: int) -> int:
    """The short side frames are resized to before a ``size`` crop."""
    return math.ceil(size * RESIZE_PER_CROP)


def source_side(size: int) -> int:
    """The short side of a synthetic source for ``size`` crops."""
    return math.ceil(resize_side(size) * SOURCE_PER_RESIZE)


def preset(size: int, fps: float) -> Preprocess:
    """RGB preprocessing to ``size`` x ``size`` crops at ``fps``, Kinetics' proportions."""
    return Preprocess("rgb", fps=fps, resize_short_side=resize_side(size), crop=size)


def synthetic_video(folder: Path, seconds: float, fps: float, short_side: int) -> Path:
    """A cached video of ``seconds`` at ``fps``: a moving colour gradient with a
    square crossing it (H.264 ultrafast where available, else MPEG-4 part 2).
    Written to a temporary file, then renamed, so a cached file is complete."""
    height, width = _even(short_side), _even(short_side * SOURCE_ASPECT)
    frames = max(1, round(seconds * fps))
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    path = folder / f"synthetic_{width}x{height}_{fps:g}fps_{frames}f_{codec}.mp4"
    if path.exists():
        return path
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.", suffix=".mp4")
    os.close(fd)
    try:
        with av.open(tmp, "w") as container:
            stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(MAX_RATE_DENOMINATOR))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            if codec == "libx264":
                stream.options = {"preset": "ultrafast"}
            rows, cols = np.mgrid[0:height, 0:width]
            side = max(1, height // SQUARE_PER_HEIGHT)
            for index in range(frames):
                shift = index * PATTERN_SPEED
                image = np.stack(
                    [(cols + shift) % UINT8_LEVELS, (rows + 2 * shift) % UINT8_LEVELS, (cols + rows) % UINT8_LEVELS],
                    axis=-1,
                ).astype(np.uint8)
                left = shift % (width - side + 1)
                image[(height - side) // 2 : (height + side) // 2, left : left + side] = UINT8_LEVELS - 1
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def random_weights(folder: Path) -> Path:
    torch.manual_seed(SEED)
    return save_state_dict(InceptionI3d().state_dict(), folder / "random_rgb.safetensors")


def make_extractor(
    weights: Path,
    size: int,
    fps: float,
    chunk: int,
    device: str | None,
    precision: Precision,
    layer: str,
    crops: int = 1,
) -> Extractor:
    return Extractor(
        (OUTPUT_STREAM,),
        weights=weights,
        layer=layer,
        crops=crops,
        chunk_frames=chunk,
        device=device,
        precision=precision,
        transforms={OUTPUT_STREAM: preset(size, fps)},
    )


def extract_one(extractor: Extractor, video: Path, out: Path, workers: int) -> np.ndarray:
    """``extract_all`` on one video into the empty folder ``out``; the features, memory-mapped."""
    summary = extract_all([str(video)], out, extractor, workers=workers, progress=False)
    if summary.failed or not summary.done:
        raise RuntimeError(f"extraction failed: {summary.failed}")
    name = output_names([str(video)])[str(video)]
    return np.load(output_paths(out, name, OUTPUT_STREAM, "npy").data, mmap_mode="r")


# ---- throughput -------------------------------------------------------------------------


def cpu_seconds() -> float:
    """User and system time of this process and of its children joined so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def throughput(args: argparse.Namespace, cache: Path, scratch: Path, weights: Path) -> None:
    size, fps = args.throughput_size, args.throughput_fps
    video = synthetic_video(cache, args.throughput_seconds, fps, source_side(size))
    tiny = synthetic_video(cache, STARTUP_FRAMES / fps, fps, source_side(size))
    extractor = make_extractor(weights, size, fps, args.chunk, args.device, args.precision, args.layer)
    prep = extractor.preprocess(OUTPUT_STREAM)
    stream = open_input(video, prep)
    frames = stream.num_frames
    chunks = list(stream.chunks(args.chunk))  # the model-only input, decoded once

    def model_only() -> int:
        return sum(len(r) for r in extractor.rows(OUTPUT_STREAM, frames, iter(chunks)))

    def decode_only() -> int:
        return sum(c.shape[1] for c in open_input(video, prep).chunks(args.chunk))

    def end_to_end(source: Path, workers: int, ex: Extractor = extractor) -> Callable[[], int]:
        def run() -> int:
            out = Path(tempfile.mkdtemp(dir=scratch, prefix=f"features_w{workers}_"))
            return len(extract_one(ex, source, out, workers))

        return run

    more_crops = {
        c: make_extractor(weights, size, fps, args.chunk, args.device, args.precision, args.layer, c)
        for c in args.crops
        if c != 1
    }
    first_workers = args.workers[0]
    crop_case = {c: f"end-to-end, --crops {c}, --workers {first_workers}" for c in more_crops}
    cases: dict[str, Callable[[], int]] = {
        MODEL_ONLY: model_only,
        "decode only (file -> tensors)": decode_only,
        **{f"end-to-end, --workers {w}": end_to_end(video, w) for w in args.workers},
        **{crop_case[c]: end_to_end(video, first_workers, ex) for c, ex in more_crops.items()},
    }
    startups = {w: end_to_end(tiny, w) for w in args.workers}
    # First calls pay one-time costs (kernel selection, allocator growth) that a long run does not.
    warmup = chunks[0][:, :WARMUP_FRAMES]
    list(extractor.rows(OUTPUT_STREAM, warmup.shape[1], [warmup]))
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    startup: dict[int, list[float]] = {w: [] for w in startups}
    results: dict[str, int] = {}
    for _ in range(args.repeats):
        for name, case in cases.items():
            cpu_start, start = cpu_seconds(), time.perf_counter()
            results[name] = case()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(cpu_seconds() - cpu_start)
        for workers, case in startups.items():
            start = time.perf_counter()
            case()
            startup[workers].append(time.perf_counter() - start)
    rows = results[MODEL_ONLY]
    for name in cases:
        if name.startswith("end-to-end") and results[name] != rows:
            raise RuntimeError(f"{name}: {results[name]} feature rows, the model alone gives {rows}")

    (height, width), crop = stream.frame_size, prep.crop
    print(
        f"\n== throughput: {frames} frames ({args.throughput_seconds:g} s at {fps:g} fps) of {video.name}, "
        f"resized to {width}x{height}, crop {crop}; chunk {args.chunk}; {rows} feature rows; "
        f"device {extractor.device}, {args.precision}; layer {args.layer}; best of {args.repeats} interleaved round(s)"
    )
    baseline = min(wall[MODEL_ONLY])
    print(f"{'case':42} {'best s':>7} {'CPU s':>6} {'frames/s':>9} {'vs model only':>14}  per round")
    for name, measured in wall.items():
        best = min(measured)
        cpu_best = cpu[name][measured.index(best)]
        per_round = " ".join(f"{m / t:.2f}" for m, t in zip(wall[MODEL_ONLY], measured, strict=True))
        print(f"{name:42} {best:7.2f} {cpu_best:6.1f} {frames / best:9.1f} {baseline / best:14.2f}  {per_round}")
    one_crop = min(wall[f"end-to-end, --workers {first_workers}"])
    for crops, name in crop_case.items():
        ratio = one_crop / min(wall[name])
        print(
            f"--crops {crops} vs --crops 1 (end-to-end, --workers {first_workers}): {ratio:.3f}x the video frames/s, "
            f"{ratio * crops:.2f}x the crop views/s (ideal: {1 / crops:.3f}x and 1.00x)"
        )
    fixed = ", ".join(f"--workers {w}: {min(t):.2f} s" for w, t in startup.items())
    print(
        "'vs model only' = frames/s relative to the model alone (goal for end-to-end: >= 0.90); per round: the same\n"
        "ratio against the model alone of that round; CPU s = user + system time of this process and its joined\n"
        f"children (the decoding worker). Fixed cost of one extract_all call ({STARTUP_FRAMES}-frame video): {fixed}."
    )


# ---- memory -------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    """A ``VmXXX`` line of ``/proc/self/status``, in KiB."""
    match = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    if match is None:
        raise OSError(f"/proc/self/status has no {field}")
    return int(match.group(1))


def _reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux >= 4.0); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def memory_case(spec: dict) -> dict:
    """Run in a fresh process: one extraction and its memory peaks (bytes)."""
    keys = ("size", "fps", "chunk", "device", "precision", "layer", "crops")
    extractor = make_extractor(Path(spec["weights"]), *(spec[k] for k in keys))
    ready = _status_kib("VmRSS") * KIB
    reset = _reset_peak_rss()
    if extractor.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(extractor.device)
    start = time.perf_counter()
    features = extract_one(extractor, Path(spec["video"]), Path(spec["out"]), spec["workers"])
    seconds = time.perf_counter() - start
    # Without the reset the mark covers the whole process, model loading included.
    peak = _status_kib("VmHWM") * KIB if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB
    return {
        "frames": open_input(spec["video"], extractor.preprocess(OUTPUT_STREAM)).num_frames,
        "rows": len(features),
        "feature_bytes": int(features.nbytes),
        "seconds": seconds,
        "ready": ready,
        "peak": peak,
        "peak_is_extraction_only": reset,
        "worker_peak": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * KIB if spec["workers"] else 0,
        "gpu_peak": torch.cuda.max_memory_allocated(extractor.device) if extractor.device.type == "cuda" else None,
    }


def memory(args: argparse.Namespace, cache: Path, scratch: Path, weights: Path) -> None:
    print(
        f"\n== memory: {args.size}x{args.size} crops of {resize_side(args.size)}-pixel frames "
        f"at {args.fps:g} fps; chunk {args.chunk}; device {args.device or 'default'}, {args.precision}; "
        f"layer {args.layer}; one fresh process per case"
    )
    header = (
        f"{'minutes':>7} {'frames':>7} {'rows':>6} {'crops':>5} {'workers':>7} {'seconds':>8} {'frames/s':>9} "
        f"{'ready MB':>9} {'peak MB':>8} {'growth MB':>10} {'features MB':>12} {'worker peak MB':>15}"
    )
    print(header)
    results = []
    for minutes in args.minutes:
        video = synthetic_video(cache, minutes * SECONDS_PER_MINUTE, args.fps, source_side(args.size))
        for crops, workers in [(c, w) for c in args.crops for w in args.workers]:
            spec = {
                "crops": crops,
                "video": str(video),
                "weights": str(weights),
                "size": args.size,
                "fps": args.fps,
                "chunk": args.chunk,
                "device": args.device,
                "precision": args.precision,
                "layer": args.layer,
                "workers": workers,
                "out": tempfile.mkdtemp(dir=scratch, prefix=f"memory_{minutes:g}min_w{workers}_"),
            }
            done = subprocess.run(
                [sys.executable, __file__, "--memory-case", json.dumps(spec)], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(f"memory case {minutes:g} min, workers {workers} failed:\n{done.stderr}")
            r = json.loads(done.stdout.strip().splitlines()[-1])
            results.append(r)
            gpu = f"  GPU peak {r['gpu_peak'] / MIB:.0f} MB" if r["gpu_peak"] is not None else ""
            print(
                f"{minutes:7g} {r['frames']:7d} {r['rows']:6d} {crops:5d} {workers:7d} {r['seconds']:8.1f} "
                f"{r['frames'] / r['seconds']:9.1f} {r['ready'] / MIB:9.0f} {r['peak'] / MIB:8.0f} "
                f"{(r['peak'] - r['ready']) / MIB:10.1f} {r['feature_bytes'] / MIB:12.2f} "
                f"{r['worker_peak'] / MIB:15.0f}{gpu}",
                flush=True,
            )
    if not all(r["peak_is_extraction_only"] for r in results):
        print("note: /proc/self/clear_refs was not writable: peaks include model loading (ru_maxrss).")
    print(
        "peak = peak RSS of the model's process during extraction; growth = peak - RSS once the model is loaded;\n"
        "features = the output array (rows x layer shape, float32); .npy output is written row by row as it comes;\n"
        "worker peak = the decoding process's peak RSS over its whole life."
    )


# ---- command line ---------------------------------------------------------------------------


def _list(kind: type) -> Callable[[str], list]:
    return lambda text: [kind(v) for v in text.split(",") if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda (default: cuda if available)")
    parser.add_argument(
        "--layer",
        choices=LAYERS,
        default=POOLED,
        metavar="LAYER",
        help="output, as i3d extract --layer (default: pooled)",
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="network precision (default: fp32)")
    parser.add_argument(
        "--chunk",
        type=int,
        default=DEFAULT_CHUNK_FRAMES,
        help=f"frames per network call (default: {DEFAULT_CHUNK_FRAMES}, as i3d extract)",
    )
    parser.add_argument(
        "--workers",
        type=_list(int),
        default=[0, 1],
        metavar="N,N",
        help="extract_all worker counts to run (default: 0,1)",
    )
    parser.add_argument(
        "--throughput-size", type=int, default=224, help="crop side of the throughput video (default: 224)"
    )
    parser.add_argument("--throughput-fps", type=float, default=25.0, help="rate of the throughput video (default: 25)")
    parser.add_argument(
        "--throughput-seconds", type=float, default=8.0, help="length of the throughput video (default: 8)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="interleaved throughput rounds; best kept (default: 2)")
    parser.add_argument("--size", type=int, default=32, help="crop side for the memory series (default: 32)")
    parser.add_argument(
        "--fps", type=float, default=3.0, help="source and network frame rate for the memory series (default: 3)"
    )
    parser.add_argument(
        "--minutes",
        type=_list(float),
        default=[1, 10, 60],
        metavar="M,M",
        help="memory series video lengths (default: 1,10,60)",
    )
    parser.add_argument(
        "--crops",
        type=_list(int),
        default=[1],
        metavar="N,N",
        help="crop counts (as i3d extract --crops) to time against one crop and to run the memory series with "
        "(default: 1)",
    )
    parser.add_argument("--skip", choices=("throughput", "memory"), action="append", default=[], help="part to skip")
    parser.add_argument("--cache-dir", type=Path, help="keep the synthetic videos here between runs")
    parser.add_argument("--memory-case", help=argparse.SUPPRESS)  # internal: one memory measurement, JSON spec
    args = parser.parse_args()
    if args.memory_case:
        print(json.dumps(memory_case(json.loads(args.memory_case))))
        return
    if not args.crops or any(c not in CROP_COUNTS for c in args.crops):
        parser.error(f"--crops takes counts among {CROP_COUNTS}")
    if min(args.chunk, args.repeats, args.size, args.throughput_size) < 1 or min(args.workers, default=0) < 0:
        parser.error("--chunk, --repeats and sizes must be >= 1, --workers >= 0")
    if min(args.fps, args.throughput_fps, args.throughput_seconds, *args.minutes) <= 0 or not args.workers:
        parser.error("rates, lengths and --minutes must be > 0; give at least one --workers value")

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
        f"CUDA {'available' if torch.cuda.is_available() else 'not available'}; "
        "the machine may be shared: compare ratios within this run only"
    )
    with tempfile.TemporaryDirectory(prefix="bench_extract_") as tmp:
        scratch = Path(tmp)
        cache = args.cache_dir or scratch
        cache.mkdir(parents=True, exist_ok=True)
        weights = random_weights(scratch)
        if "throughput" not in args.skip:
            throughput(args, cache, scratch, weights)
        if "memory" not in args.skip:
            memory(args, cache, scratch, weights)


if __name__ == "__main__":
    main()
