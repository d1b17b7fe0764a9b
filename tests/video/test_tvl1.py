"""The PyTorch TV-L1 (i3d.video.tvl1) against OpenCV's DualTVL1OpticalFlow, piece by piece and whole."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from i3d.video.tvl1 import (
    EAGER,
    MIN_PYRAMID_SIDE,
    TVL1Params,
    compiled_kernels,
    median5,
    pyramid_sizes,
    remap_cubic,
    resize_linear,
    tvl1_flow_batch,
)

HEIGHT, WIDTH = 32, 48
# The agreement goal, per pair. OpenCV and torch add floats in other
# orders, and a last-bit difference can end a warp's iterations one step
# earlier or later or pick another median, which moves the field by far more
# than rounding. How far depends on the pair: on small frames OpenCV's own
# field moves by more than the goal when one pixel changes by one grey
# level. So a pair passes if it meets the goal or is as close to OpenCV as
# OpenCV is to itself under such a change (OpenCV's own conditioning).
MAX_MEAN_EPE = 0.02
JPEG_STEP = 40 / 255  # one Charades grey level
MIN_WITHIN_STEP = 0.99
# Pixels of the second frame changed by one grey level, one at a time, to measure that conditioning.
NUDGED_PIXELS = ((10, 20), (15, 20), (20, 20))
# Bilinear resizes of 0..255 images: a few float32 operations on values
# below 256 (ulp 2**-16), in another order than OpenCV's.
RESIZE_ATOL = 8 * 2**-16
# Bicubic remaps: positions pass through grid_sample's [-1, 1] coordinates,
# ~4 ulps of a coordinate below 64 (2**-18 each), times the steepest slope
# of a cubic-interpolated 0..255 image (~1.3 * 255 per pixel), plus rounding.
REMAP_ATOL = 4 * 2**-18 * 1.3 * 255 + RESIZE_ATOL


def texture(height: int = HEIGHT, width: int = WIDTH, seed: int = 0, pad: int = 20) -> np.ndarray:
    """Smooth random texture, float32 0..255, ``pad`` pixels larger on each side."""
    noise = np.random.default_rng(seed).random((height + 2 * pad, width + 2 * pad)).astype(np.float32)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.0), None, 0, 255, cv2.NORM_MINMAX)


def warped_pair(matrix: np.ndarray, height: int = HEIGHT, width: int = WIDTH, pad: int = 20, base=None):
    """uint8 frames: ``base`` and ``base`` moved by the 2x3 affine ``matrix`` (padded, so content enters)."""
    base = texture(height, width, pad=pad) if base is None else base
    moved = cv2.warpAffine(base, np.float32(matrix), base.shape[::-1], flags=cv2.INTER_CUBIC)
    inner = np.s_[pad : pad + height, pad : pad + width]
    return tuple(np.clip(x[inner].round(), 0, 255).astype(np.uint8) for x in (base, moved))


def opencv_flow(prev: np.ndarray, current: np.ndarray) -> np.ndarray:
    # A fresh instance: OpenCV lowers a reused one's scale count for good after a small frame.
    return cv2.optflow.DualTVL1OpticalFlow_create().calc(prev, current, None)


def torch_flow(prev: np.ndarray, current: np.ndarray, **kwargs) -> np.ndarray:
    return tvl1_flow_batch(torch.from_numpy(prev)[None], torch.from_numpy(current)[None], **kwargs)[0].numpy()


def agreement(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """Mean end-point error and the fraction of components within one grey level."""
    difference = got - expected
    return float(np.hypot(difference[..., 0], difference[..., 1]).mean()), float(
        (np.abs(difference) <= JPEG_STEP).mean()
    )


def assert_agrees(got: np.ndarray, prev: np.ndarray, current: np.ndarray) -> None:
    expected = opencv_flow(prev, current)
    epe, within = agreement(got, expected)
    if epe <= MAX_MEAN_EPE and within >= MIN_WITHIN_STEP:
        return
    nudged = []
    for y, x in NUDGED_PIXELS:
        changed = current.copy()
        changed[y % current.shape[0], x % current.shape[1]] ^= 1  # one grey level
        nudged.append(agreement(opencv_flow(prev, changed), expected))
    own_epe, own_within = max(e for e, _ in nudged), min(w for _, w in nudged)
    assert epe <= max(MAX_MEAN_EPE, own_epe), (epe, own_epe)
    assert within >= min(MIN_WITHIN_STEP, own_within), (within, own_within)


def translation(dx: float, dy: float) -> np.ndarray:
    return np.float32([[1, 0, dx], [0, 1, dy]])


def test_defaults_are_opencvs():
    algorithm = cv2.optflow.DualTVL1OpticalFlow_create()
    params = TVL1Params()
    assert (params.tau, params.lambda_, params.theta) == (
        algorithm.getTau(),
        algorithm.getLambda(),
        algorithm.getTheta(),
    )
    assert (params.scales, params.warps, params.epsilon) == (
        algorithm.getScalesNumber(),
        algorithm.getWarpingsNumber(),
        algorithm.getEpsilon(),
    )
    assert (params.inner_iterations, params.outer_iterations, params.scale_step) == (
        algorithm.getInnerIterations(),
        algorithm.getOuterIterations(),
        algorithm.getScaleStep(),
    )
    assert algorithm.getGamma() == 0 and algorithm.getMedianFiltering() == 5


@pytest.mark.parametrize("size", [(37, 50), (16, 17), (20, 13)])
def test_resize_is_opencvs_bilinear(size):
    image = texture(*size, pad=0)
    batch = torch.from_numpy(image)[None]
    down = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    got = resize_linear(batch, down.shape, (1 / 0.8, 1 / 0.8))[0].numpy()
    np.testing.assert_allclose(got, down, rtol=0, atol=RESIZE_ATOL)
    up_size = (size[0] + 9, size[1] + 12)
    up = cv2.resize(image, up_size[::-1], interpolation=cv2.INTER_LINEAR)
    got = resize_linear(batch, up_size, (size[0] / up_size[0], size[1] / up_size[1]))[0].numpy()
    np.testing.assert_allclose(got, up, rtol=0, atol=RESIZE_ATOL)


def test_pyramid_sizes_round_and_stop_as_opencv():
    assert pyramid_sizes(256, 341) == [(256, 341), (205, 273), (164, 218), (131, 174), (105, 139)]
    assert pyramid_sizes(20, 40) == [(20, 40), (16, 32)]  # the next, 13x26, is under 16
    assert pyramid_sizes(12, 14) == [(12, 14)]
    image, sizes = np.zeros((101, 67), np.float32), []
    while min(image.shape) >= MIN_PYRAMID_SIDE and len(sizes) < TVL1Params().scales:
        sizes.append(image.shape)
        image = cv2.resize(image, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_LINEAR)
    assert pyramid_sizes(101, 67) == sizes


def test_median_is_opencvs_bit_for_bit():
    images = torch.from_numpy(np.random.default_rng(1).normal(0, 3, (3, 19, 23)).astype(np.float32))
    images[0, :6, :6] = 1.5  # ties
    expected = np.stack([cv2.medianBlur(image, 5) for image in images.numpy()])
    np.testing.assert_array_equal(median5(images).numpy(), expected)
    # The selection network that runs off the CPU selects the same values.
    padded = torch.nn.functional.pad(images[:, None], (2, 2, 2, 2), mode="replicate")[:, 0]
    np.testing.assert_array_equal(EAGER.median_of_windows(padded).numpy(), expected)


def test_remap_is_opencvs_bicubic_with_zeros_outside():
    rng = np.random.default_rng(2)
    image = texture(pad=0)
    # Positions anywhere, up to 4 px outside the image.
    map_x = rng.uniform(-4, WIDTH + 3, (HEIGHT, WIDTH)).astype(np.float32)
    map_y = rng.uniform(-4, HEIGHT + 3, (HEIGHT, WIDTH)).astype(np.float32)
    expected = cv2.remap(image, map_x, map_y, cv2.INTER_CUBIC)
    got = remap_cubic(torch.from_numpy(image)[None, None], torch.from_numpy(map_x)[None], torch.from_numpy(map_y)[None])
    np.testing.assert_allclose(got[0, 0].numpy(), expected, rtol=0, atol=REMAP_ATOL)


@pytest.mark.parametrize(
    "matrix",
    [
        translation(1.5, -0.75),
        translation(-3.0, 2.0),  # content enters at two borders
        cv2.getRotationMatrix2D((WIDTH / 2 + 20, HEIGHT / 2 + 20), 4, 1.0),
        cv2.getRotationMatrix2D((WIDTH / 2 + 20, HEIGHT / 2 + 20), -3, 1.05),  # rotation and zoom
    ],
    ids=["translation", "border", "rotation", "zoom"],
)
def test_agrees_with_opencv_on_moving_texture(matrix):
    prev, current = warped_pair(matrix)
    assert_agrees(torch_flow(prev, current), prev, current)


def test_agrees_with_opencv_on_textureless_regions():
    base = texture()
    base[25:55, 30:70] = 128.0  # a flat patch: no gradient, the data term does nothing there
    prev, current = warped_pair(translation(2.0, 1.0), base=base)
    assert_agrees(torch_flow(prev, current), prev, current)


def test_identical_and_flat_frames_give_zero_as_opencv():
    prev, _ = warped_pair(translation(0, 0))
    flat = np.full((HEIGHT, WIDTH), 77, np.uint8)
    for a, b in ((prev, prev), (flat, flat), (flat, np.full_like(flat, 90))):
        np.testing.assert_array_equal(opencv_flow(a, b), 0)
        np.testing.assert_array_equal(torch_flow(a, b), 0)


@pytest.mark.parametrize("size", [(12, 14), (19, 24), (5, 40)], ids=["one level", "two levels", "thin"])
def test_frames_smaller_than_the_pyramid_agree_with_opencv(size):
    prev, current = warped_pair(translation(1.0, 0.5), *size)
    assert_agrees(torch_flow(prev, current), prev, current)


def test_a_batch_gives_each_pair_its_own_field():
    pairs = [
        warped_pair(translation(1.5, -0.75)),
        warped_pair(cv2.getRotationMatrix2D((WIDTH / 2 + 20, HEIGHT / 2 + 20), 4, 1.0)),
        warped_pair(translation(0, 0)),  # identical: converges at once, frozen while the others go on
    ]
    prev = torch.from_numpy(np.stack([a for a, _ in pairs]))
    current = torch.from_numpy(np.stack([b for _, b in pairs]))
    batched = tvl1_flow_batch(prev, current).numpy()
    assert batched.shape == (3, HEIGHT, WIDTH, 2) and batched.dtype == np.float32
    for i, (a, b) in enumerate(pairs):
        # Per-pair arithmetic does not depend on the batch: the same floats.
        np.testing.assert_array_equal(batched[i], torch_flow(a, b))


def test_float_frames_in_the_0_255_scale_give_the_uint8_field():
    prev, current = warped_pair(translation(1.0, 1.0))
    as_float = tvl1_flow_batch(torch.from_numpy(prev)[None].float(), torch.from_numpy(current)[None].float())
    np.testing.assert_array_equal(as_float[0].numpy(), torch_flow(prev, current))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        tvl1_flow_batch(torch.zeros(1, 8, 8), torch.zeros(1, 8, 9))
    with pytest.raises(ValueError, match="one shape"):
        tvl1_flow_batch(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="at least 2x2"):
        tvl1_flow_batch(torch.zeros(1, 1, 8), torch.zeros(1, 1, 8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_agrees_with_opencv():
    prev, current = warped_pair(cv2.getRotationMatrix2D((WIDTH / 2 + 20, HEIGHT / 2 + 20), 4, 1.0))
    field = tvl1_flow_batch(torch.from_numpy(prev)[None].cuda(), torch.from_numpy(current)[None].cuda())
    assert field.device.type == "cuda"
    assert_agrees(field[0].cpu().numpy(), prev, current)


@pytest.mark.slow
def test_compiled_agrees_with_opencv():
    if compiled_kernels() is EAGER:
        pytest.skip("torch.compile is unavailable here")
    prev, current = warped_pair(cv2.getRotationMatrix2D((WIDTH / 2 + 20, HEIGHT / 2 + 20), 4, 1.0))
    assert_agrees(torch_flow(prev, current, compile=True), prev, current)
