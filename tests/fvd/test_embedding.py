"""The embedding: resize, scale, I3D logits averaged over time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i3d.fvd.embedding import Embedder, embed, preprocess_videos
from i3d.fvd.resize import resize_bilinear_tf1
from i3d.video import VideoReader
from i3d.weights import inception_i3d
from tests.fvd.conftest import tiny_videos
from tests.tolerances import NETWORK_RTOL


def assert_same_embedding(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal up to float32 summation order (convolution algorithms differ with the batch size)."""
    torch.testing.assert_close(got, want, rtol=NETWORK_RTOL, atol=NETWORK_RTOL * want.abs().max().item())


def averaged_logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, T, H, W)`` -> the reference's embedding, written out here."""
    with torch.no_grad():
        return model(x).mean(dim=2).double()


@pytest.mark.slow
def test_embedding_is_the_averaged_logits_of_the_resized_scaled_clip(fvd_weights):
    videos = tiny_videos(2, seed=0)
    got = Embedder(fvd_weights, device="cpu", batch_size=2)(videos)
    assert got.shape == (2, 400) and got.dtype == torch.float64

    frames = resize_bilinear_tf1(torch.from_numpy(videos), (224, 224))  # (N, T, 224, 224, 3)
    x = (2.0 * frames / 255.0 - 1.0).permute(0, 4, 1, 2, 3)
    assert_same_embedding(got, averaged_logits(inception_i3d(weights=fvd_weights), x))
    # The function form takes tensors too; one clip per call gives the same numbers.
    assert_same_embedding(embed(torch.from_numpy(videos), weights=fvd_weights, device="cpu", batch_size=1), got)


def test_bad_videos_are_refused(fvd_weights):
    embedder = Embedder(fvd_weights, device="cpu")
    with pytest.raises(ValueError, match="uint8"):
        embedder(np.zeros((1, 2, 8, 8, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(N, T, H, W, 3\)"):
        embedder(np.zeros((2, 8, 8, 3), np.uint8))


def scaled(frames: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, T, H, W, 3)`` -> ``(N, 3, T, H, W)`` float32 ``2 * x / 255 - 1``."""
    x = 2 * frames.astype(np.float32) / np.float32(255) - 1
    return torch.from_numpy(x).permute(0, 4, 1, 2, 3)


def cricket_frames(upstream, count: int | None = None) -> np.ndarray:
    """DeepMind's sample: 224x224 frames, uint8 as stored in the GIF."""
    reader = VideoReader(upstream / "kinetics-i3d" / "v_CricketShot_g04_c01_rgb.gif")
    return next(reader.chunks(count or reader.num_frames)).frames  # (T, 224, 224, 3)


@pytest.mark.slow
def test_cricket_sample_random_weights(upstream, fvd_weights):
    frames = cricket_frames(upstream, 9)
    got = Embedder(fvd_weights, device="cpu")(frames[None])
    x = preprocess_videos(torch.from_numpy(frames[None]))  # 224x224 already: scaling only
    torch.testing.assert_close(x, scaled(frames[None]), rtol=0, atol=0)
    assert_same_embedding(got, averaged_logits(inception_i3d(weights=fvd_weights), x))


@pytest.mark.slow
def test_cricket_sample_rgb_scratch(upstream, rgb_scratch):
    frames = cricket_frames(upstream)  # all 79 frames
    got = Embedder("rgb_scratch", device="cpu")(frames[None])
    x = scaled(frames[None])
    want = averaged_logits(inception_i3d(weights="rgb_scratch"), x)
    assert_same_embedding(got, want)
    # The sample is a cricket shot, and rgb_scratch knows it.
    assert int(got.argmax()) == 227  # "playing cricket" in Kinetics-400's label map
