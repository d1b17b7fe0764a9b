"""open_input / load_input: exact counts up front, chunking, presets, augmentation, sources."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i3d.video import CHARADES_RGB, KINETICS_RGB, FlowEngine, NetworkInput, load_input, open_input
from i3d.video.presets import Preprocess
from tests.video.helpers import encode, frame_index, indexed_frames, write_rgb_folder

SMALL_RGB = Preprocess("rgb", fps=25.0, resize_short_side=48, crop=40)
SMALL_FLOW = Preprocess("flow", fps=25.0, resize_short_side=48, crop=40)


@pytest.fixture(scope="module")
def clip_30fps(tmp_path_factory) -> str:
    return str(encode(tmp_path_factory.mktemp("v") / "clip.mp4", indexed_frames(36), rate=30))


def test_kinetics_rgb_from_a_30_fps_video(clip_30fps):
    net_input = open_input(clip_30fps, KINETICS_RGB)
    assert isinstance(net_input, NetworkInput)
    assert (net_input.path, net_input.fps, net_input.num_frames, net_input.frame_size) == (
        clip_30fps,
        25.0,
        30,
        (256, 341),
    )
    chunks = list(net_input.chunks(8))
    assert [c.shape for c in chunks] == [(3, 8, 224, 224)] * 3 + [(3, 6, 224, 224)]
    video = torch.cat(chunks, dim=1)
    assert video.dtype == torch.float32 and video.min() >= -1 and video.max() <= 1
    # Chunking changes nothing, and load_input is the whole thing.
    torch.testing.assert_close(load_input(clip_30fps, KINETICS_RGB), video)


def test_chunk_tensors_cover_the_frames_in_order(tmp_path):
    frames = indexed_frames(20, 64, 64)
    path = encode(tmp_path / "v.mp4", frames, rate=25, pix_fmt="yuv444p", options={"qp": "0"})
    # resize_short_side = crop = frame size: the network input is the frame itself.
    same_size = Preprocess("rgb", fps=25.0, resize_short_side=64, crop=64)
    video = torch.cat(list(open_input(path, same_size).chunks(7)), dim=1)
    got = [frame_index(((f + 1) * 127.5).numpy()) for f in video.permute(1, 2, 3, 0)]
    assert got == list(range(20))


def test_training_augmentation_is_per_clip_seedable_and_chunking_independent(clip_30fps):
    def clip(seed: int, size: int) -> torch.Tensor:
        net_input = open_input(clip_30fps, SMALL_RGB, train=True, generator=torch.Generator().manual_seed(seed))
        return torch.cat(list(net_input.chunks(size)), dim=1)

    a = clip(0, 4)
    assert a.shape == (3, 30, 40, 40)
    torch.testing.assert_close(clip(0, 30), a)
    assert any(not torch.equal(clip(seed, 30), a) for seed in range(1, 4))
    centre = load_input(clip_30fps, SMALL_RGB)
    assert centre.shape == a.shape and not torch.equal(centre, a)


def test_npy_is_returned_as_is(tmp_path):
    array = np.random.default_rng(0).uniform(-1, 1, (1, 5, 224, 224, 3)).astype(np.float32)
    np.save(tmp_path / "sample.npy", array)
    net_input = open_input(tmp_path / "sample.npy", KINETICS_RGB)
    assert net_input.fps is None and net_input.num_frames == 5
    video = load_input(tmp_path / "sample.npy", KINETICS_RGB)
    np.testing.assert_array_equal(video.permute(1, 2, 3, 0).numpy(), array[0])


def test_cricket_gif_through_open_input(upstream):
    net_input = open_input(upstream / "kinetics-i3d" / "v_CricketShot_g04_c01_rgb.gif", KINETICS_RGB)
    assert (net_input.num_frames, net_input.fps) == (79, 25.0)
    assert sum(c.shape[1] for c in net_input.chunks(32)) == 79


def test_charades_rgb_frame_folder(tmp_path):
    folder = write_rgb_folder(tmp_path, "XYZ99", indexed_frames(30))
    net_input = open_input(folder, CHARADES_RGB)
    assert (net_input.fps, net_input.num_frames, net_input.frame_size) == (24.0, 30, (256, 341))
    assert load_input(folder, CHARADES_RGB).shape == (3, 30, 224, 224)


def test_flow_from_an_rgb_frame_folder(tmp_path):
    folder = write_rgb_folder(tmp_path, "XYZ98", indexed_frames(4))
    with FlowEngine(workers=1) as engine:
        net_input = open_input(folder, SMALL_FLOW, flow_engine=engine, source_fps=25.0)
        assert net_input.num_frames == 4
        assert torch.cat(list(net_input.chunks(3)), dim=1).shape == (2, 4, 40, 40)


@pytest.mark.parametrize("source", ["video", "folder", "npy", pytest.param("flow", marks=pytest.mark.slow)])
def test_chunks_from_a_start_frame_equal_the_whole_read(tmp_path, clip_30fps, source):
    frames = indexed_frames(12, 48, 64)
    preset = SMALL_FLOW if source == "flow" else SMALL_RGB
    if source == "video":
        path = clip_30fps
    elif source in ("folder", "flow"):
        path = write_rgb_folder(tmp_path, "ID", frames)
    else:
        path = tmp_path / "a.npy"
        np.save(path, np.random.default_rng(1).uniform(-1, 1, (1, 9, 8, 8, 3)).astype(np.float32))
    with FlowEngine(workers=1) as engine:
        net_input = open_input(path, preset, flow_engine=engine)
        whole = torch.cat(list(net_input.chunks(5)), dim=1)
        n = net_input.num_frames
        for start in (0, 3, n - 1):
            part = torch.cat(list(net_input.chunks(4, start=start)), dim=1)
            torch.testing.assert_close(part, whole[:, start:], rtol=0, atol=0)
        with pytest.raises(ValueError, match="start must be in"):
            next(net_input.chunks(4, start=n))
