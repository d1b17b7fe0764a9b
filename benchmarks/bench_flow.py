"""TV-L1 engines: pairs/s of the torch engine against OpenCV's, and how closely their fields agree.

    python benchmarks/bench_flow.py                       # ~10 min on 2 busy cores
    python benchmarks/bench_flow.py --rounds 2 --agree-pairs 8 --cricket-pairs 16   # quicker
    python benchmarks/bench_flow.py --speed-only --speed-pairs 256    # a GPU machine (benchmarks/gpu.sh)

Inputs: the real clips ``../shared/upstream/video-features/*.mp4`` (25 fps,
short side 256, grayscale: what ``i3d flow`` and ``--stream flow`` feed
TV-L1) and DeepMind's cricket sample ``v_CricketShot_g04_c01_rgb.gif``
(224x224, as shipped). Without them (a bare GPU machine), speed runs on a
synthetic texture drifting about a pixel a frame, 256x341, and the rest is
skipped.

* **Speed**: both engines as the pipeline runs them, every core each:
  OpenCV through ``FlowEngine(engine="opencv")`` (one worker process per
  core, one pair per task), torch through ``FlowEngine(engine="torch")``
  (one single-threaded worker process per core, a batch of pairs per task,
  ``torch.compile``; also without it, ``--eager``). Rounds are interleaved on the same
  ``--speed-pairs`` pairs of ``v_ZNVhz7ctTq0.mp4`` (the clip issue 17 timed
  OpenCV on); each round prints every
  engine's pairs/s and its ratio to OpenCV's in that round. The machine may
  be shared: only ratios within one run mean anything. A first pass of each
  engine, not timed, starts the pools and compiles.
* **Agreement**: on the first ``--agree-pairs`` pairs of each clip and
  ``--cricket-pairs`` of the cricket GIF, the torch engine's fields against
  OpenCV's: mean end-point error (px) per video, and the fraction of flow
  components within one Charades JPEG grey level (40/255 px). Goal: <= 0.02
  px and >= 99 %.
* **Profile** (``--profile``): where the torch engine's time goes, in this
  process on one thread, one batch of ``--batch-size`` (default 4) pairs of
  the speed frames, compiled, CPU time: the inner iteration, the median
  filter, the warping, and the rest (pyramid, gathering the pairs still
  going, Python); OpenCV's CPU time on the same pairs in the same process.
* **DeepMind's flow**: Pearson correlation of each engine's fields on the
  cricket RGB GIF (clipped to +-20 px, as the flow network sees them) with
  ``v_CricketShot_g04_c01_flow.gif`` (DeepMind's own flow input: the value
  minus 0.5, third channel dropped), field ``t`` against flow frame ``t``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from i3d.video.flow import FLOW_JPEG_BOUND, FlowEngine, to_gray  # noqa: E402
from i3d.video.readers import VideoReader  # noqa: E402

UPSTREAM = Path(__file__).resolve().parents[2] / "shared" / "upstream"
JPEG_STEP = 2 * FLOW_JPEG_BOUND / 255
SPEED_CLIP = "v_ZNVhz7ctTq0.mp4"


def clip_frames(path: Path, count: int) -> np.ndarray:
    """The first ``count`` grayscale frames of a clip at 25 fps, short side 256: ``(T, H, W)`` uint8."""
    frames: list[np.ndarray] = []
    for chunk in VideoReader(path, 25.0, short_side=256).chunks(16):
        frames += [to_gray(frame) for frame in chunk.frames]
        if len(frames) >= count:
            break
    return np.stack(frames[:count])


def synthetic_frames(count: int, height: int = 256, width: int = 341) -> np.ndarray:
    """A smooth random texture drifting by (0.8, 0.5) px a frame, ``(count, H, W)`` uint8."""
    pad = count + 2
    noise = np.random.default_rng(0).random((height + 2 * pad, width + 2 * pad)).astype(np.float32)
    texture = cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.0), None, 0, 255, cv2.NORM_MINMAX)
    frames = []
    for t in range(count):
        moved = cv2.warpAffine(texture, np.float32([[1, 0, 0.8 * t], [0, 1, 0.5 * t]]), texture.shape[::-1])
        frames.append(moved[pad : pad + height, pad : pad + width].round().astype(np.uint8))
    return np.stack(frames)


def gif_frames(path: Path) -> np.ndarray:
    """Every frame of a GIF, ``(T, H, W, 3)`` uint8."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def fields(engine: FlowEngine, frames: np.ndarray) -> np.ndarray:
    """The ``T - 1`` fields between consecutive frames, ``(T - 1, H, W, 2)``."""
    return np.stack(list(engine.fields(list(frames))))[:-1]  # the last field repeats the one before


def timed(engine: FlowEngine, frames: np.ndarray) -> float:
    start = time.perf_counter()
    fields(engine, frames)
    return (len(frames) - 1) / (time.perf_counter() - start)


def agreement(got: np.ndarray, expected: np.ndarray) -> tuple[float, float, float]:
    """Mean and largest end-point error (px), fraction of components within one grey level."""
    difference = got - expected
    epe = np.hypot(difference[..., 0], difference[..., 1])
    return float(epe.mean()), float(epe.max()), float((np.abs(difference) <= JPEG_STEP).mean())


def correlation(flow: np.ndarray, reference: np.ndarray) -> float:
    clipped = np.clip(flow, -FLOW_JPEG_BOUND, FLOW_JPEG_BOUND)
    return float(np.corrcoef(clipped.ravel(), reference.ravel())[0, 1])


def profile(frames: np.ndarray) -> None:
    """CPU time of the torch engine's parts on one thread, one batch of ``len(frames) - 1`` pairs."""
    from unittest import mock

    import cv2

    from i3d.video import tvl1

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    spent = dict.fromkeys(("inner iterations", "median filter", "warping (remap)"), 0.0)

    def timed_call(part, function):
        def call(*args, **kwargs):
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent[part] += time.process_time() - start

        return call

    kernels = tvl1.compiled_kernels()
    timed_kernels = tvl1.Kernels(timed_call("inner iterations", kernels.iteration), kernels.median_of_windows)
    prev, current = torch.from_numpy(frames[:-1]), torch.from_numpy(frames[1:])
    tvl1.tvl1_flow_batch(prev, current, compile=True)  # compiled before timing
    with (
        mock.patch.object(tvl1, "compiled_kernels", lambda device_type: timed_kernels),
        mock.patch.object(tvl1, "median5", timed_call("median filter", tvl1.median5)),
        mock.patch.object(tvl1, "remap_cubic", timed_call("warping (remap)", tvl1.remap_cubic)),
    ):
        start = time.process_time()
        tvl1.tvl1_flow_batch(prev, current, compile=True)
        total = time.process_time() - start
    pairs = len(prev)
    print(f"\nprofile, one thread, a batch of {pairs} pairs, compiled: {total / pairs:.3f} CPU s/pair")
    for part, seconds in [*spent.items(), ("the rest", total - sum(spent.values()))]:
        print(f"  {part}: {seconds / pairs:.3f} s/pair ({seconds / total:.0%})")
    start = time.process_time()
    for a, b in zip(frames[:-1], frames[1:]):
        cv2.optflow.DualTVL1OpticalFlow_create().calc(a, b, None)
    print(f"  OpenCV, the same pairs, one thread: {(time.process_time() - start) / pairs:.3f} CPU s/pair")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved speed rounds (default 3)")
    parser.add_argument("--speed-pairs", type=int, default=16, help="pairs per engine and round (default 16)")
    parser.add_argument("--agree-pairs", type=int, default=24, help="pairs per clip for agreement (default 24)")
    parser.add_argument("--cricket-pairs", type=int, default=78, help="cricket GIF pairs (default: all 78)")
    parser.add_argument("--batch-size", type=int, default=None, help="torch engine pairs per batch (default: its own)")
    parser.add_argument("--eager", action="store_true", help="also time the torch engine without torch.compile")
    parser.add_argument("--speed-only", action="store_true", help="no agreement or correlation part")
    parser.add_argument("--profile", action="store_true", help="also print where the torch engine's time goes")
    args = parser.parse_args()

    clips = sorted((UPSTREAM / "video-features").glob("*.mp4"))
    opencv = FlowEngine(engine="opencv")
    engines = {"torch": FlowEngine(engine="torch", batch_size=args.batch_size)}
    if args.eager:
        engines["torch eager"] = FlowEngine(engine="torch", batch_size=args.batch_size, compile=False)
    try:
        run(args, clips, opencv, engines)
    finally:
        for engine in (opencv, *engines.values()):
            engine.close()


def run(args: argparse.Namespace, clips: list[Path], opencv: FlowEngine, engines: dict[str, FlowEngine]) -> None:
    print(
        f"torch {torch.__version__}; OpenCV engine: {opencv.workers} processes; "
        f"torch engine: {engines['torch'].workers} processes, batch {engines['torch'].batch_size} "
        f"on {engines['torch'].device}"
    )

    # ---- speed
    if clips:
        # The clip the issue timed OpenCV on, where present.
        clip = next((c for c in clips if c.name == SPEED_CLIP), clips[0])
        name, frames = clip.name, clip_frames(clip, args.speed_pairs + 1)
    else:
        name, frames = "synthetic texture", synthetic_frames(args.speed_pairs + 1)
    print(f"\nspeed: {name}, {len(frames) - 1} pairs of {frames.shape[2]}x{frames.shape[1]} per round")
    start = time.perf_counter()
    for engine in (opencv, *engines.values()):
        fields(engine, frames)  # pools start; every torch worker compiles (or loads inductor's cache)
    print(f"warm-up, one pass of each engine (pools, compilation): {time.perf_counter() - start:.1f} s")
    rates: dict[str, list[float]] = {"opencv": [], **{name: [] for name in engines}}
    for r in range(args.rounds):
        rates["opencv"].append(timed(opencv, frames))
        for name, engine in engines.items():
            rates[name].append(timed(engine, frames))
        line = "  ".join(
            f"{name} {rates[name][-1]:.3f} pairs/s ({rates[name][-1] / rates['opencv'][-1]:.2f}x)" for name in rates
        )
        print(f"round {r + 1}: {line}")
    print("median: " + "  ".join(f"{n} {statistics.median(v):.3f} pairs/s" for n, v in rates.items()))
    print(
        "median of per-round ratios to opencv: "
        + "  ".join(
            f"{n} {statistics.median(a / b for a, b in zip(v, rates['opencv'])):.2f}x" for n, v in rates.items()
        )
    )

    if args.profile:
        profile(frames[: (args.batch_size or 4) + 1])
    if args.speed_only or not clips:
        return
    # ---- agreement
    print("\n| video | size | pairs | mean EPE (px) | max EPE (px) | within 40/255 px |")
    print("| --- | --- | --: | --: | --: | --: |")
    videos = [(clip.name, clip_frames(clip, args.agree_pairs + 1)) for clip in clips]
    rgb_gif = UPSTREAM / "kinetics-i3d" / "v_CricketShot_g04_c01_rgb.gif"
    cricket = None
    if rgb_gif.exists():
        cricket = np.stack([to_gray(frame) for frame in gif_frames(rgb_gif)])[: args.cricket_pairs + 1]
        videos.append((rgb_gif.name, cricket))
    cricket_fields = {}
    for name, video in videos:
        expected, got = fields(opencv, video), fields(engines["torch"], video)
        if video is cricket:
            cricket_fields = {"opencv": expected, "torch": got}
        mean, largest, within = agreement(got, expected)
        size = f"{video.shape[2]}x{video.shape[1]}"
        print(f"| {name} | {size} | {len(video) - 1} | {mean:.4f} | {largest:.3f} | {100 * within:.3f} % |")

    # ---- DeepMind's flow
    flow_gif = UPSTREAM / "kinetics-i3d" / "v_CricketShot_g04_c01_flow.gif"
    if cricket_fields and flow_gif.exists():
        reference = gif_frames(flow_gif)[..., :2].astype(np.float32) / 255 - 0.5
        count = len(cricket_fields["opencv"])
        print(f"\ncorrelation with DeepMind's flow GIF ({count} fields):")
        for name, flow in cricket_fields.items():
            print(f"  {name}: {correlation(flow, reference[:count]):.4f}")


if __name__ == "__main__":
    main()
