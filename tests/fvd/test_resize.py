"""The reference's resize: TensorFlow 1's resize_bilinear, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from i3d.fvd.embedding import preprocess_videos
from i3d.fvd.resize import resize_bilinear_tf1, resize_frames, to_network_range

F32 = np.float32
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fvd" / "tf_resize.npz"


def tf1_resize_numpy(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1's legacy rule written pixel by pixel, every operation in float32."""
    in_h, in_w, channels = image.shape
    image = image.astype(F32)

    def sample(i: int, in_size: int, out_size: int) -> tuple[int, int, F32]:
        scale = F32(in_size) / F32(out_size)
        x = F32(i) * scale
        lo = max(int(np.floor(x)), 0)
        hi = min(int(np.ceil(x)), in_size - 1)
        return lo, hi, F32(x - F32(np.floor(x)))

    out = np.empty((out_h, out_w, channels), dtype=F32)
    for y in range(out_h):
        y0, y1, wy = sample(y, in_h, out_h)
        for x in range(out_w):
            x0, x1, wx = sample(x, in_w, out_w)
            for c in range(channels):
                tl, tr, bl, br = image[y0, x0, c], image[y0, x1, c], image[y1, x0, c], image[y1, x1, c]
                top = F32(tl + F32(F32(tr - tl) * wx))
                bottom = F32(bl + F32(F32(br - bl) * wx))
                out[y, x, c] = F32(top + F32(F32(bottom - top) * wy))
    return out


@pytest.mark.parametrize(
    "in_size, out_size",
    [((7, 9), (13, 10)), ((8, 6), (5, 3)), ((5, 5), (16, 16)), ((17, 12), (4, 11)), ((3, 4), (3, 7)), ((1, 5), (3, 2))],
)
def test_equals_an_independent_tf1_implementation(in_size, out_size):
    rng = np.random.default_rng(sum(in_size) * 100 + sum(out_size))
    frames = rng.integers(0, 256, size=(2, *in_size, 3), dtype=np.uint8)
    got = resize_bilinear_tf1(torch.from_numpy(frames), out_size).numpy()
    want = np.stack([tf1_resize_numpy(f, *out_size) for f in frames])
    assert got.dtype == np.float32 and got.shape == (2, *out_size, 3)
    np.testing.assert_array_equal(got, want)


def test_known_values_and_not_half_pixel():
    # 2 -> 4 upsampling samples 0, 0.5, 1, 1.5: the last is clamped to the edge.
    row = torch.tensor([[10.0, 30.0]]).reshape(1, 2, 1)
    assert resize_bilinear_tf1(row, (1, 4)).flatten().tolist() == [10.0, 20.0, 30.0, 30.0]
    # 2x downsampling takes every other pixel, exactly.
    image = torch.arange(64.0).reshape(8, 8, 1)
    np.testing.assert_array_equal(resize_bilinear_tf1(image, (4, 4)), image[::2, ::2])
    # torch's half-pixel rule averages neighbours instead.
    torch_values = resize_frames(image, (4, 4), "torch")
    assert not torch.equal(torch_values, image[::2, ::2])
    np.testing.assert_allclose(torch_values[0, 0, 0], (0 + 1 + 8 + 9) / 4)


def test_same_size_is_the_identity_and_range():
    frames = torch.randint(0, 256, (3, 5, 6, 3), dtype=torch.uint8)
    assert torch.equal(resize_bilinear_tf1(frames, (5, 6)), frames.float())
    scaled = to_network_range(torch.tensor([0, 255, 128], dtype=torch.uint8))
    assert scaled.tolist() == [-1.0, 1.0, F32(F32(256) / F32(255)) - F32(1)]


def test_leading_dimensions_are_kept():
    frames = torch.randint(0, 256, (2, 3, 9, 7, 3), dtype=torch.uint8)  # (N, T, H, W, 3)
    out = resize_frames(frames, (5, 4), "reference")
    assert out.shape == (2, 3, 5, 4, 3)
    torch.testing.assert_close(out[1, 2], resize_bilinear_tf1(frames[1, 2], (5, 4)), rtol=0, atol=0)
    assert resize_frames(frames, (5, 4), "torch").shape == (2, 3, 5, 4, 3)
    with pytest.raises(ValueError, match="resize method"):
        resize_frames(frames, (5, 4), "area")


def test_equals_tensorflow():
    """Bit for bit what TensorFlow's own op gave (tests/fixtures/fvd, written by make_tf_resize_fixture.py)."""
    with np.load(FIXTURE) as fixture:
        cases = sorted(int(k[2:]) for k in fixture.files if k.startswith("in"))
        assert len(cases) == 5
        for k in cases:
            videos, want = fixture[f"in{k}"], fixture[f"out{k}"]
            size = tuple(int(v) for v in fixture[f"size{k}"])
            got = resize_bilinear_tf1(torch.from_numpy(videos), size)[:, :, : want.shape[2]]
            np.testing.assert_array_equal(got.numpy(), want, err_msg=f"case {k}: {videos.shape} -> {size}")
            if size == (224, 224):  # and the reference's scaling after it
                scaled = preprocess_videos(torch.from_numpy(videos)).permute(0, 2, 3, 4, 1)[:, :, : want.shape[2]]
                np.testing.assert_array_equal(scaled.numpy(), 2.0 * want / np.float32(255) - np.float32(1))
