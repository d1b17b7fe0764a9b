"""FVD inputs: raw frames at native size from video files, frame folders and arrays."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from i3d.errors import VideoError
from i3d.fvd.compute import read_ahead
from i3d.fvd.inputs import clip_batches, list_videos, read_clip
from i3d.sharding import shard_inputs
from i3d.video import VideoReader
from tests.fvd.conftest import tiny_videos
from tests.video.helpers import encode, indexed_frames, write_rgb_folder


def fail(message: str) -> None:
    raise AssertionError(message)


def test_video_files_and_frame_folders_give_native_uint8_frames(tmp_path):
    frames = indexed_frames(5, height=24, width=40)
    video = encode(tmp_path / "clip.mp4", frames)
    folder = write_rgb_folder(tmp_path / "frames", "vid", frames)
    items = list_videos([str(video), str(folder)], on_error=fail)
    assert [i.name for i in items] == [str(video), str(folder)]
    clip = read_clip(items[0], 3)
    assert clip.dtype == np.uint8 and clip.shape == (3, 24, 40, 3)  # no resize, no crop
    np.testing.assert_array_equal(clip, next(VideoReader(video).chunks(3)).frames)
    folder_clip = read_clip(items[1])
    assert folder_clip.shape == (5, 24, 40, 3)
    assert np.abs(folder_clip.astype(int) - np.stack(frames)).mean() < 3  # JPEG


def test_arrays_rows_shards_and_batches(tmp_path):
    np.save(tmp_path / "a.npy", tiny_videos(5, seed=0, frames=3))
    np.savez(tmp_path / "b.npz", videos=tiny_videos(2, seed=1, frames=3, size=(8, 8)))
    items = list_videos([str(tmp_path / "a.npy"), str(tmp_path / "b.npz")], on_error=fail)
    assert [(i.row, i.index) for i in items] == [(r, r) for r in range(5)] + [(0, 5), (1, 6)]
    assert [i.index for i in shard_inputs(items, 1, 3)] == [1, 4]
    batches = list(clip_batches(items, 2, 2, on_error=fail))
    # Batches hold at most 2 clips, of one shape.
    assert [[i.index for i in b] for b, _ in batches] == [[0, 1], [2, 3], [4], [5, 6]]
    np.testing.assert_array_equal(batches[1][1], np.load(tmp_path / "a.npy")[2:4, :2])
    assert batches[3][1].shape == (2, 2, 8, 8, 3)


def test_read_ahead_keeps_order_and_raises_in_order():
    assert list(read_ahead(iter(range(50)), depth=3)) == list(range(50))

    def failing():
        yield 1
        raise VideoError("x.mp4", "corrupt")

    got = []
    with pytest.raises(VideoError, match="x.mp4: corrupt"):
        for value in read_ahead(failing()):
            got.append(value)
    assert got == [1]
    endless = read_ahead(itertools.count())
    assert next(endless) == 0
    endless.close()  # stops the thread
