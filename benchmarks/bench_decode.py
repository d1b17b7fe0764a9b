"""Video in: decode, preprocessing and TV-L1 flow speed, and peak memory on a long 720p video.

    python benchmarks/bench_decode.py                 # 20-minute video (generated once, ~2 min)
    python benchmarks/bench_decode.py --minutes 2     # shorter

A synthetic 1280x720, 30 fps H.264 video (a textured pattern sliding
sideways; x264 ``ultrafast``) is generated once into ``--cache-dir``. Then:

* **decode**: :class:`i3d.video.VideoReader` resampling to 25 fps, frames
  delivered as 720p RGB, against the baseline of a plain PyAV loop
  (``container.decode`` + ``to_ndarray("rgb24")``) over the same source
  frames, on the first ``--sample-seconds``.
* **preprocessing**: the Kinetics RGB transform alone (short side to 256,
  centre crop 224, ``2x/255-1``) on decoded 720p frames already in memory, as
  the input stream does it (uint8 OpenCV resize per frame), against the
  baseline of :func:`i3d.video.transforms.eval_transform` (float32
  ``F.interpolate``), in chunks of 16 frames.
* **decode + preprocessing, whole video**: ``open_input(video,
  KINETICS_RGB).chunks(--chunk)`` over every frame, in a fresh process whose
  peak resident memory is reported next to that of a process that only
  imports the same modules. The goal is a peak under 1 GB, independent of the
  video's length. The peak is the kernel's high-water mark of the process's
  own memory map (``VmHWM`` in ``/proc/self/status``), which starts afresh at
  ``exec``; ``getrusage``'s ``ru_maxrss`` would not do here, as Linux carries
  the parent's resident size at the time of the fork into the child's.
* **TV-L1 flow**: :class:`i3d.video.FlowEngine` on ``--flow-frames`` frames at
  256 px short side (455x256), ``--workers`` processes against the baseline
  of ``FlowEngine(1)``: TV-L1 in this process, with OpenCV's own threads.

Durations are printed, never asserted; the machine may be shared, so only
ratios within one run mean anything.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from i3d.video import KINETICS_RGB, FlowEngine, VideoReader, open_input
from i3d.video.flow import default_workers, to_gray
from i3d.video.transforms import center_crop_offsets, crop, eval_transform, normalize_rgb, resize_frame, resized_size

WIDTH, HEIGHT, SOURCE_FPS = 1280, 720, 30
# x264's cheapest settings: the video is a load to decode, not a quality test.
ENCODER_OPTIONS = {"preset": "ultrafast", "crf": "30"}
# The pattern repeats after this many frames, so only these are built as pictures.
PATTERN_PERIOD = 60
PATTERN_SPEED = 4  # pixels per frame
TEXTURE_SCALE = 8  # pixels per texture cell
SECONDS_PER_MINUTE = 60
KIB_PER_GB = 1024 * 1024
PEAK_GOAL_GB = 1.0
SEED = 0
# Frames per preprocessing batch: float32 720p chunks are 11 MB a frame for the baseline.
PREPROCESS_CHUNK = 16


def synthetic_video(directory: Path, minutes: float) -> Path:
    """The benchmark video, generated on first use."""
    path = directory / f"i3d-bench-720p-{minutes:g}min.mp4"
    if path.exists():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    texture_width = WIDTH + PATTERN_PERIOD * PATTERN_SPEED
    cells = rng.integers(0, 256, (HEIGHT // TEXTURE_SCALE, texture_width // TEXTURE_SCALE, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(cells, TEXTURE_SCALE, axis=0), TEXTURE_SCALE, axis=1)
    pictures = []
    for i in range(PATTERN_PERIOD):
        window = np.ascontiguousarray(texture[:, i * PATTERN_SPEED : i * PATTERN_SPEED + WIDTH])
        pictures.append(av.VideoFrame.from_ndarray(window, format="rgb24").reformat(format="yuv420p"))
    total = round(minutes * SECONDS_PER_MINUTE * SOURCE_FPS)
    partial = path.with_name(f".{path.name}.partial")
    start = time.perf_counter()
    with av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=SOURCE_FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = ENCODER_OPTIONS
        stream.thread_type = "AUTO"
        for index in range(total):
            picture = pictures[index % PATTERN_PERIOD]
            picture.pts = index
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(path)
    megabytes = path.stat().st_size / 1e6
    print(f"generated {path} ({total} frames, {megabytes:.0f} MB) in {time.perf_counter() - start:.0f} s")
    return path


def rate(frames: int, seconds: float) -> str:
    return f"{frames / seconds:8.1f} frames/s"


def time_decode(video: Path, seconds: float) -> tuple[float, float, int]:
    """(ours s, baseline s, source frames) over the first ``seconds`` of the video."""
    source_frames = round(seconds * SOURCE_FPS)
    start = time.perf_counter()
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for count, frame in enumerate(container.decode(stream), 1):
            frame.to_ndarray(format="rgb24")
            if count == source_frames:
                break
    baseline = time.perf_counter() - start

    reader = VideoReader(video, KINETICS_RGB.fps)
    wanted = round(seconds * reader.fps)
    start = time.perf_counter()
    delivered = 0
    for chunk in reader.chunks(8):
        delivered += len(chunk.frames)
        if delivered >= wanted:
            break
    ours = time.perf_counter() - start
    return ours, baseline, delivered


def time_preprocessing(video: Path, count: int, chunk: int) -> tuple[float, float]:
    """(ours s, baseline s) for the Kinetics transform of ``count`` decoded 720p frames.

    Ours is what :class:`i3d.video.NetworkInput` does: uint8 OpenCV resize of
    each frame, then crop and scaling of the chunk. The baseline is
    :func:`i3d.video.transforms.eval_transform`, float32 ``F.interpolate`` of
    the chunk.
    """
    reader = VideoReader(video, KINETICS_RGB.fps)
    frames = next(reader.chunks(count)).frames  # (count, 720, 1280, 3) uint8
    preset = KINETICS_RGB
    size = resized_size(HEIGHT, WIDTH, preset.resize_short_side)
    top, left = center_crop_offsets(*size, preset.crop)
    batches = [frames[i : i + chunk] for i in range(0, count, chunk)]

    start = time.perf_counter()
    for batch in batches:
        small = np.stack([resize_frame(frame, preset.resize_short_side) for frame in batch])
        normalize_rgb(crop(torch.from_numpy(small).permute(3, 0, 1, 2), top, left, preset.crop).contiguous())
    ours = time.perf_counter() - start

    start = time.perf_counter()
    for batch in batches:
        eval_transform(torch.from_numpy(batch).permute(3, 0, 1, 2), preset)
    baseline = time.perf_counter() - start
    return ours, baseline


def time_flow(video: Path, count: int, workers: int) -> tuple[float, float]:
    """(``workers`` processes s, in-process s) for TV-L1 on ``count`` frames at 256 px."""
    reader = VideoReader(video, KINETICS_RGB.fps, short_side=KINETICS_RGB.resize_short_side)
    gray = [to_gray(f) for f in next(reader.chunks(count)).frames]
    timings = []
    for n in (workers, 1):
        with FlowEngine(n) as engine:
            list(engine.fields(gray[:2]))  # start the workers outside the timing
            start = time.perf_counter()
            fields = list(engine.fields(gray))
            timings.append(time.perf_counter() - start)
        assert len(fields) == count
    return timings[0], timings[1]


def peak_kib() -> int:
    """This process's peak resident memory since exec, in KiB (Linux)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE).group(1))


def child_pipeline(video: str, chunk: int) -> dict:
    """Decode and preprocess the whole video; report frames, seconds and peak RSS."""
    start = time.perf_counter()
    stream = open_input(video, KINETICS_RGB)
    frames = 0
    for tensor in stream.chunks(chunk):
        frames += tensor.shape[1]
    assert frames == stream.num_frames
    return {
        "frames": frames,
        "seconds": time.perf_counter() - start,
        "peak_kib": peak_kib(),
    }


def child_imports() -> dict:
    """The floor: a process that imports the same modules and does nothing."""
    return {"peak_kib": peak_kib()}


def run_child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="length of the synthetic video (default: 20)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "i3d-bench",
        help="where the synthetic video is generated once and kept",
    )
    parser.add_argument("--chunk", type=int, default=64, help="frames per chunk of open_input (default: 64)")
    parser.add_argument(
        "--sample-seconds", type=float, default=20.0, help="video seconds timed for decode (default: 20)"
    )
    parser.add_argument(
        "--preprocess-frames", type=int, default=100, help="frames timed for preprocessing (default: 100)"
    )
    parser.add_argument("--flow-frames", type=int, default=12, help="frames timed for TV-L1 (default: 12)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="TV-L1 processes (default: every core)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        result = child_pipeline(rest[0], int(rest[1])) if kind == "pipeline" else child_imports()
        print(json.dumps(result))
        return 0

    video = synthetic_video(args.cache_dir, args.minutes)
    print(f"video: {video} ({WIDTH}x{HEIGHT}, {SOURCE_FPS} fps, {args.minutes:g} min) -> 25 fps, 256 px, crop 224")

    ours, baseline, frames = time_decode(video, args.sample_seconds)
    source_frames = round(args.sample_seconds * SOURCE_FPS)
    print(
        f"decode (25 fps, 720p RGB)    {rate(frames, ours)}   plain PyAV loop {rate(source_frames, baseline)} "
        f"(source frames)   time ratio {baseline / ours:.2f}x"
    )

    ours, baseline = time_preprocessing(video, args.preprocess_frames, PREPROCESS_CHUNK)
    n = args.preprocess_frames
    print(
        f"preprocessing (720p -> 224)  {rate(n, ours)}   eval_transform  {rate(n, baseline)}   "
        f"ratio {baseline / ours:.2f}x"
    )

    pipeline = run_child("pipeline", str(video), str(args.chunk))
    floor = run_child("imports")
    peak_gb = pipeline["peak_kib"] / KIB_PER_GB
    print(
        f"decode + preprocessing, whole video: {pipeline['frames']} frames, "
        f"{rate(pipeline['frames'], pipeline['seconds'])}; peak RSS {peak_gb:.3f} GB "
        f"(imports alone {floor['peak_kib'] / KIB_PER_GB:.3f} GB), goal < {PEAK_GOAL_GB:g} GB: "
        f"{'met' if peak_gb < PEAK_GOAL_GB else 'MISSED'}"
    )

    many, one = time_flow(video, args.flow_frames, args.workers)
    print(
        f"TV-L1 flow (455x256)         {rate(args.flow_frames, many)} with {args.workers} workers   "
        f"{rate(args.flow_frames, one)} in-process   ratio {one / many:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
