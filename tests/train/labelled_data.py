"""A tiny labelled dataset in each layout ``i3d train`` reads: class folders, a plain CSV, Kinetics' CSV.

Class ``top`` lights the top half of 32x32 frames, class ``bottom`` the
bottom half, so that :class:`tests.train.helpers.TinyNet` can learn them.
Videos are 1 s at 25 fps: mp4 files (``v*.mp4``) and one frame folder each.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from i3d.train.cli import add_train_arguments
from tests.train.helpers import FRAME_SIZE
from tests.video.helpers import encode, write_rgb_folder

CLASSES = ("bottom", "top")
FPS = 25
FRAMES = 20
VIDEOS_PER_CLASS = 3


def frames_of(label: str, frames: int = FRAMES, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    half = FRAME_SIZE // 2
    out = []
    for _ in range(frames):
        image = rng.integers(0, 60, (FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
        if label == "top":
            image[:half] = 230
        else:
            image[half:] = 230
        out.append(image)
    return out


def make_class_folders(root: Path, frame_folders: bool = True) -> Path:
    """``root/CLASS/vK.mp4`` (and ``root/CLASS/fK/`` frame folders)."""
    for c, label in enumerate(CLASSES):
        folder = root / label
        folder.mkdir(parents=True)
        for k in range(VIDEOS_PER_CLASS):
            frames = frames_of(label, seed=10 * c + k)
            encode(folder / f"v{k}.mp4", frames, rate=FPS, options={"qp": "0"})
            if frame_folders:
                write_rgb_folder(folder, f"f{k}", frames)
    return root


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def parse(*argv: str) -> argparse.Namespace:
    """``i3d train``'s flags parsed as the command would."""
    parser = argparse.ArgumentParser(prog="i3d train")
    add_train_arguments(parser)
    return parser.parse_args(list(argv))


# The smallest run of the real I3D: 2 clips of 8 frames of 32x32, from a random start.
TINY = (
    "--format", "folders", "--weights", "none", "--steps", "2", "--batch", "2", "--accumulate", "1",
    "--clip-frames", "8", "--crop", "32", "--short-side", "40", "--workers", "0", "--device", "cpu",
    "--val-clips", "2", "--no-plots",
)  # fmt: skip
