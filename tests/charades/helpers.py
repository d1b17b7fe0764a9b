"""Writers of small Charades-format files for the tests."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from i3d.charades.annotations import NUM_CLASSES

# The mini-Charades of conftest.py: frames at 24 fps, classes 0..3 drawn in the frames.
FPS = 24
ENCODED_CLASSES = 4
# The header of the official Charades_v1_train.csv and Charades_v1_test.csv.
CSV_COLUMNS = (
    "id",
    "subject",
    "scene",
    "quality",
    "relevance",
    "verified",
    "script",
    "objects",
    "descriptions",
    "actions",
    "length",
)


def write_classes(path: Path, num_classes: int = NUM_CLASSES) -> Path:
    path.write_text("".join(f"c{c:03d} Class number {c}, made up\n" for c in range(num_classes)))
    return path


def write_csv(path: Path, rows: Sequence[tuple[str, str, float]], description: str = "A person, then a door.") -> Path:
    """``rows``: ``(id, actions field, length)``; the other columns hold quoted commas and line breaks."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for video_id, actions, length in rows:
            writer.writerow(
                [
                    video_id,
                    "HR43",
                    "Kitchen",
                    "6",
                    "7",
                    "Yes",
                    "A person opens a door,\nthen sits.",
                    "door;chair",
                    description,
                    actions,
                    f"{length}",
                ]
            )
    return path


def format_actions(actions: Sequence[tuple[int, float, float]]) -> str:
    return ";".join(f"c{c:03d} {s:.2f} {e:.2f}" for c, s, e in actions)
