"""Random weights and tiny uint8 video sets for the FVD tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import random_weights_file

# A network input side for tests whose property does not depend on it (the
# same embeddings by two routes): 64x64 frames cost 12x less than 224x224.
# Mixed_5c then holds 2x2 cells, which the head's pooling window adapts to.
SMALL_SIDE = 64


@pytest.fixture(scope="session")
def fvd_weights(tmp_path_factory) -> Path:
    return random_weights_file(tmp_path_factory.mktemp("fvd") / "random.pt", seed=5)


def tiny_videos(n: int, seed: int, high: int = 256, frames: int = 4, size: tuple[int, int] = (20, 26)) -> np.ndarray:
    """uint8 ``(n, frames, H, W, 3)``: smooth random blobs plus noise."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, high, size=(n, 1, 1, 1, 3))
    noise = rng.integers(0, high // 4 + 1, size=(n, frames, *size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.fixture
def small_frames(monkeypatch) -> int:
    """Embed at :data:`SMALL_SIDE` instead of FVD's 224 during the test."""
    import i3d.fvd.embedding

    monkeypatch.setattr(i3d.fvd.embedding, "FVD_SIZE", SMALL_SIDE)
    return SMALL_SIDE
