"""Streaming statistics: moments, shards merged into one pass, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i3d.errors import InputError
from i3d.fvd.stats import Statistics, is_statistics_file

META = {"weights": "w", "preprocess": {"resize": "reference"}}


def activations(n: int = 50, dim: int = 7, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)) * 4 + 10


def test_moments_equal_numpy():
    x = activations()
    stats = Statistics()
    for part in np.array_split(x, 6):
        stats.update(torch.from_numpy(part))  # tensors are accepted
    assert stats.count == 50 and stats.dim == 7
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-13)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False, ddof=1), rtol=1e-11, atol=1e-12)


def test_merged_shards_equal_one_pass():
    x = activations(61)
    indices = np.arange(len(x))
    one = Statistics(keep_activations=True, meta=META).update(x)
    shards = []
    for i in range(3):  # every 3rd video from the i-th, as --shard i/3 takes them
        shard = Statistics(keep_activations=True, meta=META)
        for rows in np.array_split(indices[i::3], 2):
            shard.update(x[rows], indices=rows)
        shards.append(shard)
    merged = Statistics(keep_activations=True).merge(*shards[::-1])  # any order
    assert merged.count == one.count and merged.meta == META
    np.testing.assert_allclose(merged.sum, one.sum, rtol=1e-14)
    np.testing.assert_allclose(merged.sum_outer, one.sum_outer, rtol=1e-14)
    np.testing.assert_array_equal(merged.activations, one.activations)  # the single pass's order
    np.testing.assert_array_equal(merged.indices, indices)


def test_merge_refuses_different_embeddings():
    a = Statistics(meta=META).update(activations(5))
    b = Statistics(meta={**META, "weights": "other"}).update(activations(5))
    with pytest.raises(ValueError, match="made differently"):
        a.merge(b)
    with pytest.raises(ValueError, match="dimensions"):
        Statistics(meta=META).update(activations(5)).merge(Statistics(meta=META).update(activations(5, dim=3)))


@pytest.mark.parametrize("keep", [False, True])
def test_save_load_round_trip(tmp_path, keep):
    stats = Statistics(keep_activations=keep, meta=META).update(activations())
    path = tmp_path / "s.npz"
    stats.save(path)
    assert is_statistics_file(path) and not list(tmp_path.glob(".*tmp"))
    back = Statistics.load(path)
    assert back.count == stats.count and back.meta == META and back.keep_activations == keep
    np.testing.assert_array_equal(back.sum_outer, stats.sum_outer)
    if keep:
        np.testing.assert_array_equal(back.activations, stats.activations)
    else:
        assert back.activations is None


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "videos.npz", np.zeros((1, 2, 3, 3, 3), np.uint8))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert not is_statistics_file(tmp_path / "videos.npz") and not is_statistics_file(tmp_path / "junk.npz")
    with pytest.raises(InputError, match=r"videos\.npz: not an FVD statistics file"):
        Statistics.load(tmp_path / "videos.npz")
    with pytest.raises(InputError, match=r"junk\.npz: cannot read"):
        Statistics.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError, match="at least 2"):
        _ = Statistics().update(activations(1)).cov
