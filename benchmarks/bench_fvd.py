"""``i3d fvd stats`` throughput, and FVD/KVD between two synthetic sets.

Two synthetic sets of uint8 videos (``(N, T, H, W, 3)``, defined below):

* ``real``: a bright square moving across a smooth colour gradient;
* ``gen``: the same videos, with Gaussian noise (sigma 24) and the square
  moving twice as fast.

Throughput: :func:`i3d.fvd.compute_statistics` over ``real`` saved as
``.npy`` (reading, the reference resize, the network, the sums), against
the baseline timed in the same run: the network alone on the same clips,
already resized and scaled, in memory, with the same batch. Prints videos/s
of both and their ratio; compare ratios, not absolute numbers across runs.

Then FVD and KVD between the two sets, and with ``--write DIR`` the sets as
``DIR/real.npy`` and ``DIR/gen.npy`` so that the command line reproduces
them: ``i3d fvd DIR/real.npy DIR/gen.npy --kvd --json``.

    python benchmarks/bench_fvd.py                          # random weights (the tests'), CPU
    python benchmarks/bench_fvd.py --weights rgb_scratch --device cuda --videos 256
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from i3d.fvd import Embedder, compute_statistics, frechet_distance, kernel_distance_and_std
from i3d.fvd.embedding import clip_logits, preprocess_videos
from i3d.model import InceptionI3d
from i3d.weights import save_state_dict

NOISE_SIGMA = 24.0
SQUARE = 0.25  # side of the square, as a fraction of the frame's short side


def synthetic_videos(n: int, frames: int, height: int, width: int, *, gen: bool, seed: int) -> np.ndarray:
    """uint8 ``(n, frames, height, width, 3)``; see the module docstring."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    side = int(SQUARE * min(height, width))
    speed = 2 if gen else 1
    out = np.empty((n, frames, height, width, 3), np.uint8)
    for i in range(n):
        colours = rng.uniform(0, 255, size=(2, 3))
        background = colours[0] * (1 - ys[..., None]) + colours[1] * xs[..., None]  # (H, W, 3)
        y0, x0 = rng.integers(0, height - side), rng.integers(0, width - side)
        dy, dx = rng.integers(-2, 3, size=2) * speed
        for t in range(frames):
            frame = background.copy()
            y, x = (y0 + dy * t) % (height - side), (x0 + dx * t) % (width - side)
            frame[y : y + side, x : x + side] = 255
            if gen:
                frame += rng.normal(0, NOISE_SIGMA, size=frame.shape)
            out[i, t] = np.clip(frame, 0, 255).round()
    return out


def random_weights(folder: Path) -> Path:
    """The tests' random weights: activations at unit scale, so the distances are not all zero."""
    from tests.conftest import randomize

    return save_state_dict(randomize(InceptionI3d(), seed=0).state_dict(), folder / "random.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="registry name or path (default: random weights)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--videos", type=int, default=16, help="videos per set (default: 16)")
    parser.add_argument("--frames", type=int, default=16, help="frames per video (default: 16, FVD's usual clip)")
    parser.add_argument("--height", type=int, default=64, help="frame height before the resize to 224 (default: 64)")
    parser.add_argument("--width", type=int, default=80, help="frame width (default: 80)")
    parser.add_argument("--batch", type=int, default=8, help="clips per network call (default: 8)")
    parser.add_argument("--write", type=Path, default=None, help="also save the two sets as DIR/real.npy, DIR/gen.npy")
    args = parser.parse_args()

    shape = (args.videos, args.frames, args.height, args.width)
    real = synthetic_videos(*shape, gen=False, seed=0)
    gen = synthetic_videos(*shape, gen=True, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.write or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "real.npy", real)
        np.save(folder / "gen.npy", gen)
        weights = args.weights or random_weights(Path(tmp))
        embedder = Embedder(weights, device=args.device, batch_size=args.batch)
        device = embedder.device

        def sync() -> None:
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        clips = [
            preprocess_videos(torch.from_numpy(real[i : i + args.batch]).to(device))
            for i in range(0, len(real), args.batch)
        ]
        clip_logits(embedder.model, clips[0])  # warm-up
        sync()
        start = time.perf_counter()
        for x in clips:
            clip_logits(embedder.model, x)
        sync()
        model_seconds = time.perf_counter() - start

        start = time.perf_counter()
        real_stats = compute_statistics([str(folder / "real.npy")], embedder, keep_activations=True)
        sync()
        stats_seconds = time.perf_counter() - start
        gen_stats = compute_statistics([str(folder / "gen.npy")], embedder, keep_activations=True)

    n = args.videos
    print(f"device {device}, weights {embedder.weights}, {n} videos of {args.frames} x {args.height} x {args.width}")
    print(f"{'':28} {'videos/s':>9} {'vs network alone':>17}")
    print(f"{'network alone (in memory)':28} {n / model_seconds:9.2f} {1.0:16.2f}x")
    print(f"{'i3d fvd stats (.npy input)':28} {n / stats_seconds:9.2f} {model_seconds / stats_seconds:16.2f}x")
    kvd, kvd_std = kernel_distance_and_std(real_stats, gen_stats)
    print(f"FVD(real, gen) = {frechet_distance(real_stats, gen_stats):.4f}")
    print(f"KVD(real, gen) = {kvd:.6g}" + ("" if np.isnan(kvd_std) else f" (standard error {kvd_std:.3g})"))
    print(f"FVD(real, real) = {frechet_distance(real_stats, real_stats):.3g}")


if __name__ == "__main__":
    main()
