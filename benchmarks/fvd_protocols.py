"""Every FVD protocol's number on one generated data set, side by side (the README's compatibility table).

::

    I3D_HOME=~/.cache/i3d python benchmarks/fvd_protocols.py [--videos 16] [--frames 16] [--weights rgb_scratch]

The data set: ``--videos`` "real" clips of moving, coloured squares over a
gradient (80x64, ``--frames`` frames), and as many "generated" ones from the
same process with another seed, blurred and with their colours shifted. Every
protocol embeds both sets its own way and prints its FVD; ``--max-videos`` is
the number of videos for all of them (cd-fvd would otherwise repeat the
generated set up to 2048 clips, StyleGAN-V and VideoGPT cap at 2048 and 256).

``--weights`` replaces each protocol's network weights: VideoGPT's and
cd-fvd's ``i3d_pretrained_400.pt`` is TF-Hub's network, i.e. ``rgb_scratch``'s
tensors, so ``--weights rgb_scratch`` runs them where GitHub is unreachable
(the protocols keep their BatchNorm epsilon).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from i3d.fvd.compute import compute_statistics
from i3d.fvd.distance import frechet_distance
from i3d.fvd.embedding import Embedder
from i3d.fvd.protocols import PROTOCOLS

HEIGHT, WIDTH = 64, 80
SQUARE = 12  # side of the moving squares, pixels


def generate(videos: int, frames: int, seed: int, blur: bool) -> np.ndarray:
    """uint8 ``(videos, frames, 64, 80, 3)``: two squares moving over a gradient."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH]
    out = np.empty((videos, frames, HEIGHT, WIDTH, 3), np.float32)
    for v in range(videos):
        base = rng.uniform(0, 255, 3)
        tilt = rng.uniform(-1.5, 1.5, 2)
        background = base + (tilt[0] * ys + tilt[1] * xs)[..., None]
        starts = rng.uniform(0, [HEIGHT - SQUARE, WIDTH - SQUARE], size=(2, 2))
        speeds = rng.uniform(-2.5, 2.5, size=(2, 2))
        colours = rng.uniform(0, 255, size=(2, 3))
        room = np.array([HEIGHT - SQUARE, WIDTH - SQUARE])
        for t in range(frames):
            frame = background.copy()
            # bouncing off the edges: a triangle wave over [0, room]
            for (y, x), colour in zip(room - np.abs((starts + t * speeds) % (2 * room) - room), colours):
                frame[int(y) : int(y) + SQUARE, int(x) : int(x) + SQUARE] = colour
            out[v, t] = frame
    if blur:  # a 3x3 box blur and a colour shift: what a generator gets slightly wrong
        padded = np.pad(out, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        out = sum(padded[:, :, dy : dy + HEIGHT, dx : dx + WIDTH] for dy in range(3) for dx in range(3)) / 9
        out = out * np.array([1.05, 0.95, 1.0]) + 6
    return np.clip(out + rng.normal(0, 4, out.shape), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=16)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--weights", default=None, help="weights for every protocol (default: each protocol's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        real, gen = Path(tmp, "real.npy"), Path(tmp, "gen.npy")
        np.save(real, generate(args.videos, args.frames, seed=1, blur=False))
        np.save(gen, generate(args.videos, args.frames, seed=2, blur=True))
        print(f"{args.videos} real and {args.videos} generated videos, {args.frames} frames of {WIDTH}x{HEIGHT}\n")
        print("| protocol | weights | FVD | vs reference |")
        print("| --- | --- | --: | --: |")
        reference = None
        for name in ["reference", *(p for p in args.protocols if p != "reference")]:  # the ratios' base first
            protocol = PROTOCOLS[name]
            embedder = Embedder(args.weights, protocol=name, device=args.device)
            sides = [
                compute_statistics(
                    [str(path)], embedder, num_frames=args.frames, role=role, max_videos=args.videos, seed=0
                )
                for path, role in ((real, "real"), (gen, "gen"))
            ]
            fvd = frechet_distance(*sides, protocol=name)
            reference = fvd if reference is None else reference
            weights = args.weights or protocol.weights
            print(f"| {name} | {weights}, eps {protocol.bn_eps:g} | {fvd:.2f} | {fvd / reference:.3f} |")


if __name__ == "__main__":
    main()
