"""Train I3D from scratch on a learnable synthetic dataset in the class-folder layout, on the CPU.

Each video is a bright square moving over a noisy background; the class is
how it moves: ``up``, ``down``, ``sideways`` (left or right: training clips
are flipped at random, so left and right cannot be two classes) or
``still``. The script writes ``ROOT/train/CLASS/NNN.mp4`` and
``ROOT/val/CLASS/NNN.mp4`` with PyAV, trains with ``i3d train --format
folders --weights none`` and prints the validation top-1 against chance
and the training speed::

    python benchmarks/train_synthetic.py --out /tmp/i3d-synthetic

Chance is 1 / 4. The defaults (240 steps of 8 clips, 32x32 crops of
8-frame clips, cosine schedule peaking at 0.03, BatchNorm momentum 0.1 so
that the running statistics keep up) take about 2000 clips: minutes on a
few free CPU cores (22 minutes on 2 heavily shared ones gave top-1 0.69);
``--steps`` trades time for accuracy (120 steps at 0.01 gave 0.50: still
against moving, not yet the directions). The numbers come from the run's ``train.jsonl``: the last
validation record and the mean of the training records' ``clips_per_s``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import av
import numpy as np

from i3d.cli import main as i3d_main

CLASSES = ("down", "sideways", "still", "up")
FPS = 25
# Frames are written at SIZE and trained at CROP after resizing to SHORT_SIDE (I3D on the CPU is slow).
SIZE = 64
SHORT_SIDE = 32
CROP = 32
FRAMES = 8
SQUARE = 20  # pixels, at SIZE
SPEED = 5.0  # pixels per frame, at SIZE: the square travels 35 of the 64 pixels


def moving_square(label: str, rng: np.random.Generator) -> list[np.ndarray]:
    """``FRAMES`` RGB frames ``(SIZE, SIZE, 3)`` of a square moving as ``label`` says."""
    dx, dy = {"down": (0, 1), "up": (0, -1), "still": (0, 0), "sideways": (rng.choice((-1, 1)), 0)}[label]
    travel = SPEED * (FRAMES - 1)
    margin = SIZE - SQUARE

    def start(direction: int) -> float:
        if direction > 0:
            return rng.uniform(0, margin - travel)
        if direction < 0:
            return rng.uniform(travel, margin)
        return rng.uniform(0, margin)

    x0, y0 = start(dx), start(dy)
    color = rng.integers(150, 256, 3)
    # A still background: what changes from frame to frame is the square alone.
    background = rng.integers(0, 70, (SIZE, SIZE, 3), dtype=np.uint8)
    frames = []
    for t in range(FRAMES):
        image = background.copy()
        x, y = int(round(x0 + dx * SPEED * t)), int(round(y0 + dy * SPEED * t))
        image[y : y + SQUARE, x : x + SQUARE] = color
        frames.append(image)
    return frames


def write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_dataset(root: Path, per_class: dict[str, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label in CLASSES:
            for k in range(count):
                write_mp4(root / split / label / f"{k:03d}.mp4", moving_square(label, rng))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the dataset and the run (replaced)")
    p.add_argument("--train-videos", type=int, default=48, help="training videos per class (48)")
    p.add_argument("--val-videos", type=int, default=16, help="validation videos per class (16)")
    p.add_argument("--steps", type=int, default=240, help="optimizer steps (240)")
    p.add_argument("--batch", type=int, default=8, help="clips per step (8)")
    p.add_argument("--lr", type=float, default=0.03, help="peak learning rate of the cosine schedule (0.03)")
    p.add_argument("--workers", type=int, default=1, help="loader processes (1)")
    p.add_argument("--seed", type=int, default=0, help="dataset and run seed (0)")
    args = p.parse_args()

    if args.out.exists():
        shutil.rmtree(args.out)
    data, run = args.out / "data", args.out / "run"
    started = time.perf_counter()
    make_dataset(data, {"train": args.train_videos, "val": args.val_videos}, args.seed)
    print(f"dataset: {len(CLASSES)} classes x ({args.train_videos} + {args.val_videos}) videos "
          f"in {time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip

    # The settings without a flag go in a config file, which the flags then complete.
    config = args.out / "synthetic.toml"
    config.write_text("[recipe]\ndropout_keep_prob = 1.0\nbn_momentum = 0.1\n")
    argv = [
        "train", "--config", str(config), "--format", "folders", "--root", str(data / "train"), "--val-root", str(data / "val"),
        "--out", str(run), "--weights", "none", "--device", "cpu",
        "--clip-frames", str(FRAMES), "--short-side", str(SHORT_SIDE), "--crop", str(CROP), "--fps", str(FPS),
        "--val-clips", "1", "--steps", str(args.steps), "--batch", str(args.batch), "--accumulate", "1",
        "--lr", str(args.lr), "--schedule", "cosine", "--warmup-steps", str(max(args.steps // 10, 1)),
        "--weight-decay", "1e-4", "--val-every", str(max(args.steps // 2, 1)), "--log-every", "5",
        "--checkpoint-every", str(args.steps), "--workers", str(args.workers), "--seed", str(args.seed),
    ]  # fmt: skip
    print("command: i3d " + " ".join(argv), flush=True)
    started = time.perf_counter()
    status = i3d_main(argv)
    if status:
        return status
    seconds = time.perf_counter() - started
    records = [json.loads(line) for line in (run / "train.jsonl").read_text().splitlines()]
    val = [r for r in records if r["event"] == "val"][-1]
    rates = [r["clips_per_s"] for r in records if r["event"] == "train"]
    chance = 1 / len(CLASSES)
    print(
        f"validation top-1 {val['top1']:.3f} (chance {chance:.3f}, {val['top1'] / chance:.1f}x), "
        f"mean class accuracy {val['mean_class_acc']:.3f}, {val['videos']} videos; "
        f"training {np.mean(rates):.2f} clips/s; {seconds / 60:.1f} min in all"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
