"""A synthetic mini-Charades for training: 32x32 JPEG frames in the Charades layout and CSVs.

Class 0 lights the top half of a frame, class 1 the bottom half, so that a
model can learn the labels from the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from i3d.charades.annotations import Video, frame_labels, read_csv
from tests.charades.helpers import FPS, format_actions, write_csv
from tests.train.helpers import FRAME_SIZE

# (id, actions (class, start s, end s), frames at 24 fps)
TRAIN_VIDEOS = [
    ("TRN01", [(0, 0.0, 0.9), (1, 0.8, 1.6)], 40),
    ("TRN02", [(1, 0.0, 1.3)], 32),
    ("TRN03", [(0, 0.5, 1.5)], 36),
    ("TRN04", [(0, 0.0, 0.6), (1, 0.7, 1.3)], 32),
]
VAL_VIDEOS = [
    ("VAL01", [(0, 0.0, 1.0)], 24),
    ("VAL02", [(1, 0.2, 1.2)], 30),
    ("VAL03", [(0, 0.0, 0.5), (1, 0.5, 1.2)], 28),
]


@dataclass(frozen=True)
class MiniCharades:
    root: Path  # frame folders
    train_csv: Path
    val_csv: Path
    train: list[Video]
    val: list[Video]


def _write_frames(root: Path, videos: list[Video], frames: dict[str, int]) -> None:
    half = FRAME_SIZE // 2
    for video in videos:
        labels = frame_labels(video, frames[video.id], FPS) > 0
        folder = root / video.id
        folder.mkdir(parents=True)
        for f in range(frames[video.id]):
            image = np.full((FRAME_SIZE, FRAME_SIZE, 3), 40, dtype=np.uint8)
            if labels[0, f]:
                image[:half] = 255
            if labels[1, f]:
                image[half:] = 255
            cv2.imwrite(str(folder / f"{video.id}-{f + 1:06d}.jpg"), image)


@pytest.fixture(scope="session")
def mini_charades(tmp_path_factory) -> MiniCharades:
    base = tmp_path_factory.mktemp("train_charades")
    paths = {}
    for name, rows in (("train", TRAIN_VIDEOS), ("test", VAL_VIDEOS)):
        paths[name] = write_csv(
            base / f"Charades_v1_{name}.csv",
            [(vid, format_actions(actions), f"{frames / FPS:g}") for vid, actions, frames in rows],
        )
    train, val = read_csv(paths["train"]), read_csv(paths["test"])
    frames = {vid: n for vid, _, n in TRAIN_VIDEOS + VAL_VIDEOS}
    _write_frames(base / "rgb", train + val, frames)
    return MiniCharades(base / "rgb", paths["train"], paths["test"], train, val)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Class folders of small video files (see :func:`tests.train.labelled_data.make_class_folders`)."""
    from tests.train.labelled_data import make_class_folders

    return make_class_folders(tmp_path_factory.mktemp("classes"), frame_folders=False)
