"""Readers: containers and codecs, frame-rate resampling, orientation, frame folders, arrays, real clips."""

from __future__ import annotations

import av
import numpy as np
import pytest

from i3d.video.readers import FlowArrayReader, FrameFolderReader, NpyReader, VideoReader, read_sample_gif
from tests.video.helpers import (
    encode,
    frame_index,
    indexed_frames,
    reference_picks,
    write_flow_folder,
    write_rgb_folder,
)


def delivered(reader, size: int = 4) -> np.ndarray:
    chunks = list(reader.chunks(size))
    assert all(len(c.frames) <= size for c in chunks)
    assert [c.start for c in chunks] == list(range(0, reader.num_frames, size))
    return np.concatenate([c.frames for c in chunks])


# (suffix, codec, pix_fmt, options): every container the issue names.
FORMATS = [
    ("mp4", "libx264", "yuv420p", {}),
    ("avi", "mpeg4", "yuv420p", {"bf": "2", "qscale": "1"}),
    ("mkv", "ffv1", "bgr0", {}),
    ("webm", "libvpx-vp9", "yuv420p", {"deadline": "realtime", "cpu-used": "8", "lossless": "1"}),
    ("mov", "libx264", "yuv420p", {"bf": "2"}),
    ("gif", "gif", "rgb8", {}),
]


@pytest.mark.parametrize(("suffix", "codec", "pix_fmt", "options"), FORMATS, ids=[f[0] for f in FORMATS])
def test_containers_and_codecs_resample_30_to_25_fps(tmp_path, suffix, codec, pix_fmt, options):
    count = 30 if suffix != "gif" else 20  # gif stores 1/100 s delays: 30 fps is 3.33 ticks
    rate = 30 if suffix != "gif" else 25
    frames = indexed_frames(count)
    path = encode(tmp_path / f"v.{suffix}", frames, rate=rate, codec=codec, pix_fmt=pix_fmt, options=options)
    reader = VideoReader(path, 25.0)
    expected = reference_picks([i / rate for i in range(count)], count / rate, 25)
    assert reader.num_frames == len(expected)
    frames = delivered(reader)
    assert frames.shape == (len(expected), 48, 64, 3) and frames.dtype == np.uint8
    assert [frame_index(f) for f in frames] == expected


def test_variable_frame_rate(tmp_path):
    rng = np.random.default_rng(0)
    times = [0.0, *np.cumsum(rng.uniform(0.01, 0.12, 24)).round(3)]
    path = encode(tmp_path / "vfr.mkv", indexed_frames(len(times)), codec="ffv1", pix_fmt="bgr0", times=times)
    with av.open(str(path)) as container:
        last = [p for p in container.demux(video=0) if p.size][-1]
        end = float((last.pts + last.duration) * last.time_base)
    reader = VideoReader(path, 24.0)
    expected = reference_picks(times, end, 24)
    assert reader.num_frames == len(expected) == round(end * 24)
    assert [frame_index(f) for f in delivered(reader, 5)] == expected


def test_source_rate_by_default_and_times(tmp_path):
    path = encode(tmp_path / "v.mp4", indexed_frames(12), rate=30)
    reader = VideoReader(path)
    assert reader.fps == 30 and reader.num_frames == 12
    chunks = list(reader.chunks(5))
    np.testing.assert_allclose(np.concatenate([c.times for c in chunks]), np.arange(12) / 30)
    assert [frame_index(f) for f in np.concatenate([c.frames for c in chunks])] == list(range(12))


def test_resizes_while_decoding(tmp_path):
    path = encode(tmp_path / "v.mp4", indexed_frames(3), rate=25)
    reader = VideoReader(path, 25.0, short_side=256)
    assert reader.source_size == (48, 64) and reader.frame_size == (256, 341)
    assert delivered(reader).shape == (3, 256, 341, 3)


def marked_frames(count: int, height: int, width: int) -> list[np.ndarray]:
    frames = indexed_frames(count, height, width)
    for frame in frames:
        frame[:8, :8] = (255, 0, 0)  # red top-left corner
    return frames


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    frames = marked_frames(2, 48, 64)
    path = encode(tmp_path / "r.mp4", frames, rotation=rotation, pix_fmt="yuv444p", options={"qp": "0"})
    reader = VideoReader(path)
    out = delivered(reader)
    # The display matrix's angle is counter-clockwise, as np.rot90's.
    expected = np.rot90(frames[0], rotation // 90)
    assert reader.source_size == expected.shape[:2] == out.shape[1:3]
    assert np.abs(out[0].astype(int) - expected).max() <= 2


@pytest.mark.parametrize(
    ("codec", "pix_fmt", "size"),
    [
        ("ffv1", "gray", (47, 63)),
        ("ffv1", "gray16le", (48, 64)),
        ("libx264", "yuv420p10le", (48, 64)),
        ("mjpeg", "yuvj444p", (33, 45)),
    ],
    ids=["gray-odd-size", "gray16", "10-bit", "mjpeg-odd-size"],
)
def test_grayscale_high_bit_depth_and_odd_sizes(tmp_path, codec, pix_fmt, size):
    path = encode(tmp_path / "v.mkv", indexed_frames(4, *size), codec=codec, pix_fmt=pix_fmt, rate=25)
    frames = delivered(VideoReader(path, 25.0))
    assert frames.shape == (4, *size, 3) and frames.dtype == np.uint8
    assert [frame_index(f) for f in frames] == [0, 1, 2, 3]


def test_rgb_frame_folder(tmp_path):
    folder = write_rgb_folder(tmp_path, "ABC12", indexed_frames(24))
    reader = FrameFolderReader(folder)
    assert (reader.kind, reader.fps, reader.num_frames) == ("rgb", 24.0, 24)
    assert [frame_index(f) for f in delivered(reader)] == list(range(24))
    at_25 = FrameFolderReader(folder, 25.0, short_side=32)
    frames = delivered(at_25)
    assert frames.shape == (25, 32, 43, 3)
    assert [frame_index(f) for f in frames] == reference_picks([i / 24 for i in range(24)], 1.0, 25)


def test_flow_frame_folder_decodes_pixels_and_scales_with_resize(tmp_path):
    fields = [np.full((48, 64, 2), (i - 2.0, 1.5), np.float32) for i in range(5)]
    reader = FrameFolderReader(write_flow_folder(tmp_path, "F", fields))
    assert reader.kind == "flow" and reader.channels == 2
    out = delivered(reader)
    assert out.shape == (5, 48, 64, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, np.stack(fields), atol=40 / 255 / 2 + 1e-6)
    doubled = delivered(FrameFolderReader(tmp_path / "F", short_side=96))
    np.testing.assert_allclose(doubled[:, 10, 10], 2 * out[:, 10, 10], atol=1e-4)


def test_npy_is_delivered_as_is(tmp_path):
    array = np.random.default_rng(0).uniform(-1, 1, (1, 7, 16, 16, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", array)
    reader = NpyReader(tmp_path / "x.npy", channels=3)
    assert reader.fps is None and reader.num_frames == 7
    np.testing.assert_array_equal(delivered(reader, 3), array[0])


def test_flow_array(tmp_path):
    array = np.random.default_rng(0).normal(0, 5, (6, 8, 10, 2)).astype(np.float16)
    np.save(tmp_path / "f.npy", array)
    reader = FlowArrayReader(tmp_path / "f.npy", fps=25.0)
    np.testing.assert_array_equal(delivered(reader, 4), array.astype(np.float32))


def test_cricket_sample_gifs(upstream):
    folder = upstream / "kinetics-i3d"
    rgb = read_sample_gif(folder / "v_CricketShot_g04_c01_rgb.gif")
    assert rgb.shape == (1, 79, 224, 224, 3) and rgb.dtype == np.float32
    assert rgb.min() >= -1 and rgb.max() <= 1 and rgb.min() < -0.9 and rgb.max() > 0.9
    flow = read_sample_gif(folder / "v_CricketShot_g04_c01_flow.gif", "flow")
    assert flow.shape == (1, 79, 224, 224, 2)
    assert np.abs(flow).max() <= 0.5 and abs(float(flow.mean())) < 0.05
    # The GIF's third channel is the +0.5 offset alone.
    third = VideoReader(folder / "v_CricketShot_g04_c01_flow.gif")
    assert np.all(np.abs(next(third.chunks(79)).frames[..., 2].astype(np.float32) / 255 - 0.5) < 1 / 255)


@pytest.mark.parametrize("name", ["v_GGSY1Qvo990.mp4", "v_ZNVhz7ctTq0.mp4"])
def test_real_clips_decode_at_25_fps(upstream, name):
    path = upstream / "video-features" / name
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(stream.duration * stream.time_base)
    reader = VideoReader(path, 25.0, short_side=64)
    # The stream's header duration and the rule's count agree to a frame
    # (the header may end at the last frame's start, the rule at its end).
    assert abs(reader.num_frames - duration * 25) <= 1.5
    count = sum(len(c.frames) for c in reader.chunks(64))
    assert count == reader.num_frames


@pytest.mark.slow
def test_real_clip_frame_choice_matches_the_rule(upstream):
    path = upstream / "video-features" / "v_ZNVhz7ctTq0.mp4"  # 30 fps
    source = [f.to_ndarray(format="rgb24") for f in av.open(str(path)).decode(video=0)][:60]
    reader = VideoReader(path, 25.0)
    frames = next(reader.chunks(50)).frames
    picks = reference_picks([i / 30 for i in range(420)], 14.0, 25)[:50]
    for frame, pick in zip(frames, picks):
        assert np.array_equal(frame, source[pick])
