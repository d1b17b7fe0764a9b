"""A synthetic mini-Charades on disk: frames, flow frames, CSV and classes file.

Each frame shows which of classes 0..3 are active at its time: quadrant k
(top-left, top-right, bottom-left, bottom-right) is white in RGB, and a
+10 pixel x-flow in flow, when class k is, black (-10 pixels) otherwise.
A "model" that reads the quadrants back then scores perfectly, so any
misalignment of frames, labels or sample times shows up in the mAP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from i3d.charades.annotations import Video, frame_labels, read_csv
from tests.charades.helpers import ENCODED_CLASSES, FPS, format_actions, write_classes, write_csv

HEIGHT = WIDTH = 48
# Flow frames store value 255 * (f + 20) / 40 for a flow of f pixels.
FLOW_ON, FLOW_OFF = 10.0, -10.0

# (id, actions, frames). Lengths are frames / 24 s, exact in decimal, and frame
# counts are multiples of 25, so that the 25 localization frames fall on video
# frames; no action boundary falls on a video frame or a localization time.
VIDEOS = [
    ("VID01", [(0, 0.55, 1.95), (1, 1.05, 3.1)], 75),
    ("VID02", [(2, 0.0, 2.99), (0, 4.01, 6.25), (3, 2.05, 4.95)], 150),
    ("VID03", [], 50),
    ("VID04", [(1, 0.3, 0.7), (3, 0.0, 3.125)], 75),
]


@dataclass(frozen=True)
class MiniCharades:
    root: Path
    csv: Path
    classes: Path
    rgb: Path
    flow: Path
    videos: list[Video]
    frames: dict[str, int]


def quadrant_mask(height: int, width: int, k: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    rows = slice(0, height // 2) if k < 2 else slice(height // 2, height)
    cols = slice(0, width // 2) if k % 2 == 0 else slice(width // 2, width)
    mask[rows, cols] = True
    return mask


def flow_to_gray(flow: np.ndarray) -> np.ndarray:
    return np.round(255 * (flow + 20) / 40).astype(np.uint8)


@pytest.fixture(scope="session")
def mini_charades(tmp_path_factory) -> MiniCharades:
    root = tmp_path_factory.mktemp("charades")
    csv_path = write_csv(
        root / "Charades_v1_test.csv",
        [(vid, format_actions(actions), f"{frames / FPS:g}") for vid, actions, frames in VIDEOS],
        description="Someone, somewhere, does something; then, nothing.",
    )
    videos = read_csv(csv_path)
    frames = {vid: n for vid, _, n in VIDEOS}
    for video in videos:
        labels = frame_labels(video, frames[video.id], FPS)[:ENCODED_CLASSES] > 0
        (root / "rgb" / video.id).mkdir(parents=True)
        (root / "flow" / video.id).mkdir(parents=True)
        for f in range(frames[video.id]):
            rgb = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
            flow_x = np.full((HEIGHT, WIDTH), FLOW_OFF)
            for k in np.flatnonzero(labels[:, f]):
                rgb[quadrant_mask(HEIGHT, WIDTH, k)] = 255
                flow_x[quadrant_mask(HEIGHT, WIDTH, k)] = FLOW_ON
            name = f"{video.id}-{f + 1:06d}"
            cv2.imwrite(str(root / "rgb" / video.id / f"{name}.jpg"), rgb)
            cv2.imwrite(str(root / "flow" / video.id / f"{name}x.jpg"), flow_to_gray(flow_x))
            cv2.imwrite(str(root / "flow" / video.id / f"{name}y.jpg"), flow_to_gray(np.zeros((HEIGHT, WIDTH))))
    return MiniCharades(
        root=root,
        csv=csv_path,
        classes=write_classes(root / "Charades_v1_classes.txt"),
        rgb=root / "rgb",
        flow=root / "flow",
        videos=videos,
        frames=frames,
    )
