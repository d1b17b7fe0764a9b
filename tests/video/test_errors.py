"""Every kind of bad input gets a one-line VideoError naming the file and the cause."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from i3d.errors import VideoError
from i3d.video import KINETICS_FLOW, KINETICS_RGB, open_input
from i3d.video.flow import FlowEngine, write_flow_frames
from i3d.video.inputs import compute_flow
from i3d.video.readers import FlowArrayReader
from tests.video.helpers import encode, indexed_frames, write_flow_folder, write_rgb_folder


def noise_frames(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(count)]


def check(path: Path, cause: str, preset=KINETICS_RGB) -> VideoError:
    """open_input, then a full iteration, must raise VideoError(path, ...cause...)."""
    with pytest.raises(VideoError) as info:
        stream = open_input(path, preset)
        for _ in stream.chunks(8):
            pass
    err = info.value
    message = str(err)
    assert "\n" not in message and err.path == str(path) and message.startswith(f"{path}: ")
    assert cause in err.cause, message
    return err


def test_missing_file(tmp_path):
    check(tmp_path / "nope.mp4", "no such file")


def test_zero_bytes(tmp_path):
    (tmp_path / "empty.mp4").touch()
    check(tmp_path / "empty.mp4", "empty file (0 bytes)")


def test_not_a_video(tmp_path):
    (tmp_path / "notes.mp4").write_text("these are not the frames you are looking for\n" * 20)
    check(tmp_path / "notes.mp4", "not a video file")


def test_no_video_stream(tmp_path):
    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    check(path, "no video stream")


def test_no_frames(tmp_path):
    path = tmp_path / "hollow.avi"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height = 64, 48
        container.start_encoding()
    check(path, "no frames (at least 1 needed)")


def test_truncated_mp4(tmp_path):
    full = encode(tmp_path / "full.mp4", noise_frames(40), container_options={"movflags": "faststart"})
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    check(cut, "truncated")


def test_truncated_mkv(tmp_path):
    full = encode(tmp_path / "full.mkv", noise_frames(90), rate=25)
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    check(cut, "truncated stream")


def test_corrupt_stream(tmp_path):
    full = encode(
        tmp_path / "full.mp4", noise_frames(40), container_options={"movflags": "faststart"}, options={"g": "10"}
    )
    data = bytearray(full.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 3000] = np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    check(bad, "corrupt stream")


def test_frame_folder_with_a_gap(tmp_path):
    folder = write_rgb_folder(tmp_path, "GAP01", indexed_frames(6), skip=3)
    err = check(folder, "gap in the frame numbering")
    assert "GAP01-000004.jpg is missing" in err.cause


def test_flow_folder_missing_a_y_frame(tmp_path):
    folder = write_flow_folder(tmp_path, "FL01", [np.zeros((48, 64, 2), np.float32)] * 3)
    (folder / "FL01-000002y.jpg").unlink()
    check(folder, "FL01-000002y.jpg is missing", KINETICS_FLOW)


def test_folder_without_frames(tmp_path):
    (tmp_path / "EMPTY").mkdir()
    check(tmp_path / "EMPTY", "no frames named EMPTY-000001.jpg")


def test_flow_folder_for_an_rgb_preset(tmp_path):
    folder = write_flow_folder(tmp_path, "FL02", [np.zeros((48, 64, 2), np.float32)] * 2)
    check(folder, "holds flow frames")


def test_flow_needs_two_frames(tmp_path):
    path = encode(tmp_path / "one.mp4", indexed_frames(1), rate=25)
    assert open_input(path, KINETICS_RGB).num_frames == 1  # one frame is enough for RGB
    check(path, "flow needs at least 2 frames", KINETICS_FLOW)


def test_npy_of_the_wrong_layout_or_range(tmp_path):
    np.save(tmp_path / "flat.npy", np.zeros((8, 224, 224, 3), np.float32))
    check(tmp_path / "flat.npy", "expected an array of shape (1, T, H, W, C)")
    np.save(tmp_path / "wide.npy", np.full((1, 2, 8, 8, 3), 3.0, np.float32))
    check(tmp_path / "wide.npy", "values outside [-1, 1]")
    np.save(tmp_path / "flow.npy", np.zeros((1, 2, 8, 8, 2), np.float32))
    check(tmp_path / "flow.npy", "expected 3 channels")
    (tmp_path / "junk.npy").write_bytes(b"\x93NUMPY garbage")
    check(tmp_path / "junk.npy", "not a readable .npy")


def test_flow_cache_that_does_not_match_is_not_used(tmp_path):
    path = encode(tmp_path / "clip.mp4", indexed_frames(10), rate=25)
    # Under the video's name but without a record of its source: never reused (recomputed instead).
    write_flow_frames([np.zeros((256, 341, 2), np.float32)] * 4, tmp_path / "cache", "clip", format="npy", num_frames=4)
    stream = open_input(path, KINETICS_FLOW, flow_dir=tmp_path / "cache")
    assert stream.num_frames == 10 and "compute_flow" in stream._mode


def test_an_npz_is_not_an_npy(tmp_path):
    path = tmp_path / "archive.npy"
    with path.open("wb") as f:
        np.savez(f, clip=np.zeros((1, 2, 8, 8, 3), np.float32))
    check(path, "not a .npy array")
    with pytest.raises(VideoError, match="not a .npy array"):
        FlowArrayReader(path)


def test_flow_of_an_unreadable_video_names_it(tmp_path):
    (tmp_path / "bad.mp4").write_text("not a video\n")
    with pytest.raises(VideoError) as info:
        compute_flow(tmp_path / "bad.mp4", tmp_path / "out", engine=FlowEngine(workers=1))
    assert str(info.value).startswith(f"{tmp_path / 'bad.mp4'}: not a video file")
