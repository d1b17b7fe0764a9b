"""Resize, crop, flip, scale jitter and value scaling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from i3d.video import transforms as T
from i3d.video.presets import KINETICS_FLOW, KINETICS_RGB, Preprocess

SMALL_RGB = Preprocess("rgb", fps=25.0, resize_short_side=40, crop=32)
SMALL_FLOW = Preprocess("flow", fps=25.0, resize_short_side=40, crop=32)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((240, 320), (256, 341)),
        ((320, 240), (341, 256)),
        ((720, 1280), (256, 455)),
        ((47, 63), (256, 343)),
        ((256, 256), (256, 256)),
    ],
)
def test_resized_size_keeps_the_aspect_ratio(size, expected):
    assert T.resized_size(*size, 256) == expected


@pytest.mark.parametrize("size", [(720, 1280), (47, 63), (48, 64), (300, 200)])
def test_uint8_resize_matches_float_bilinear_within_one_grey_level(size):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    out = T.resize_frame(frame, 256)
    reference = (
        F.interpolate(
            torch.from_numpy(frame).permute(2, 0, 1)[None].double(),
            size=out.shape[:2],
            mode="bilinear",
            align_corners=False,
            antialias=False,
        )[0]
        .permute(1, 2, 0)
        .numpy()
    )
    error = np.abs(out - reference)
    assert error.max() < 1.0 and error.mean() < 0.3


def test_tensor_resize_agrees_with_the_frame_resize():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    by_frame = np.stack([T.resize_frame(f, 40) for f in frames])
    video = T.resize_short_side(torch.from_numpy(frames).permute(3, 0, 1, 2), 40)
    assert video.shape == (3, 3, 40, 53)
    assert (video.permute(1, 2, 3, 0).numpy() - by_frame).__abs__().max() < 1.0


def test_resizing_flow_scales_its_values():
    field = np.zeros((48, 64, 2), np.float32)
    field[..., 0], field[..., 1] = 3.0, -2.0
    out = T.resize_flow_field(field, (96, 128))
    np.testing.assert_allclose(out[..., 0], 6.0, rtol=1e-6)
    np.testing.assert_allclose(out[..., 1], -4.0, rtol=1e-6)
    video = torch.from_numpy(field).permute(2, 0, 1)[:, None]
    resized = T.resize_short_side(video, 24, flow=True)
    assert resized.shape == (2, 1, 24, 32)
    torch.testing.assert_close(resized[0], torch.full((1, 24, 32), 1.5))
    torch.testing.assert_close(resized[1], torch.full((1, 24, 32), -1.0))


def test_center_crop_takes_the_middle():
    video = torch.arange(10 * 12).reshape(1, 1, 10, 12)
    out = T.center_crop(video, 4)
    assert out[0, 0, 0, 0] == 3 * 12 + 4 and out.shape == (1, 1, 4, 4)
    with pytest.raises(ValueError):
        T.center_crop(video, 11)


def test_random_crop_is_seedable_and_per_clip_on_batches():
    batch = torch.arange(8 * 20 * 20, dtype=torch.float32).reshape(8, 1, 1, 20, 20)
    a = T.random_crop(batch, 5, torch.Generator().manual_seed(3))
    b = T.random_crop(batch, 5, torch.Generator().manual_seed(3))
    assert a.shape == (8, 1, 1, 5, 5) and torch.equal(a, b)
    corners = {float(clip[0, 0, 0, 0] - batch[0, 0, 0, 0, 0]) for clip in a}
    assert len(corners) > 1  # clips got different crops


def test_flip_mirrors_and_negates_flow_x_only():
    flow = torch.zeros(2, 1, 2, 3)
    flow[0, 0, :, 0], flow[1, 0, :, 0] = 5.0, 7.0  # left column moves right by 5, down by 7
    flipped = T.horizontal_flip(flow, flow=True)
    assert torch.all(flipped[0, 0, :, 2] == -5.0) and torch.all(flipped[1, 0, :, 2] == 7.0)
    assert torch.all(flipped[:, 0, :, :2] == 0)
    rgb = torch.arange(6.0).reshape(3, 1, 1, 2)
    assert torch.equal(T.horizontal_flip(rgb), rgb.flip(-1))
    assert torch.equal(T.horizontal_flip(T.horizontal_flip(flow, flow=True), flow=True), flow)


def test_random_flip_draws_per_clip():
    batch = torch.arange(2.0).repeat(16, 1, 1, 1, 1)  # (16, 1, 1, 1, 2)
    out = T.random_horizontal_flip(batch, generator=torch.Generator().manual_seed(0))
    flipped = [bool(clip[0, 0, 0, 0] == 1) for clip in out]
    assert 0 < sum(flipped) < 16


def test_scale_jitter_range():
    generator = torch.Generator().manual_seed(0)
    sides = {T.random_short_side(256, generator) for _ in range(200)}
    assert min(sides) >= 256 and max(sides) <= 320 and len(sides) > 30


def test_value_scaling():
    rgb = torch.tensor([0, 255, 51], dtype=torch.uint8)
    torch.testing.assert_close(T.normalize_rgb(rgb), torch.tensor([-1.0, 1.0, -0.6]))
    flow = torch.tensor([-30.0, -20.0, 5.0, 25.0])
    torch.testing.assert_close(T.normalize_flow(flow, 20.0), torch.tensor([-1.0, -1.0, 0.25, 1.0]))


def test_eval_transform_matches_the_preset():
    video = torch.randint(0, 256, (3, 4, 240, 320), dtype=torch.uint8)
    out = T.eval_transform(video, KINETICS_RGB)
    assert out.shape == (3, 4, 224, 224) and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    flow = torch.randn(2, 4, 240, 320) * 30
    out = T.eval_transform(flow, KINETICS_FLOW)
    assert out.shape == (2, 4, 224, 224) and out.abs().max() <= 1


def test_train_transform_on_clips_and_batches_is_seedable():
    batch = torch.randint(0, 256, (4, 3, 2, 48, 64), dtype=torch.uint8)
    a = T.train_transform(batch, SMALL_RGB, torch.Generator().manual_seed(1))
    b = T.train_transform(batch, SMALL_RGB, torch.Generator().manual_seed(1))
    assert a.shape == (4, 3, 2, 32, 32) and torch.equal(a, b)
    flow = torch.randn(2, 2, 48, 64)
    assert T.train_transform(flow, SMALL_FLOW, torch.Generator().manual_seed(1)).shape == (2, 2, 32, 32)
