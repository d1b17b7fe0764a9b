"""Streaming statistics: moments, shards merged into one pass, files."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from i3d.errors import InputError
from i3d.fvd.stats import Statistics, is_statistics_file, moments_problem, parts_overlap

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


def saved(path, x=None, seed: int = 0, **arrays) -> str:
    """A statistics file of ``x``, with ``arrays`` replaced as given."""
    Statistics(meta=META).update(activations(seed=seed) if x is None else x).save(path)
    if arrays:
        with np.load(path) as archive:
            content = {k: archive[k] for k in archive.files}
        np.savez(path, **{**content, **arrays})
    return str(path)


def test_broken_files_are_refused_naming_the_file_and_cause(tmp_path):
    good = saved(tmp_path / "good.npz")
    stats = Statistics.load(good)
    nan_sum = stats.sum.copy()
    nan_sum[3] = np.nan
    not_psd = stats.sum_outer - 100 * np.trace(stats.sum_outer) * np.eye(7)
    asymmetric = stats.sum_outer.copy()
    asymmetric[0, 1] *= 1.001
    cases = {
        "nan.npz": ({"sum": nan_sum}, r"non-finite values \(NaN or infinity\) in sum"),
        "inf.npz": ({"sum_outer": stats.sum_outer * np.inf}, "non-finite values"),
        "psd.npz": ({"sum_outer": not_psd}, "negative sum of squares"),
        "asym.npz": ({"sum_outer": asymmetric}, "not symmetric"),
        "meta.npz": ({"meta": np.array("{not json")}, r"its meta is not valid JSON \(JSONDecodeError"),
        "list.npz": ({"meta": np.array("[1]")}, "its meta is a JSON list, not a dict"),
        "parts.npz": ({"parts": np.array('[["x", 3, 2]]')}, "malformed parts entry"),
    }
    for name, (arrays, message) in cases.items():
        path = saved(tmp_path / name, **arrays)
        with pytest.raises(InputError, match=f"^{tmp_path / name}: .*{message}"):
            Statistics.load(path)
    # Centred, the scatter must be PSD too: a sum_outer below n mu mu^T is not.
    centred = stats.sum_outer - 2 * (stats.sum_outer - np.outer(stats.sum, stats.sum) / stats.count)
    path = saved(tmp_path / "centred.npz", sum_outer=centred)
    with pytest.raises(InputError, match="not positive semi-definite once centred"):
        Statistics.load(path)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes((tmp_path / "good.npz").read_bytes()[:300])
    with pytest.raises(InputError, match=r"truncated\.npz: cannot read statistics \(BadZipFile"):
        Statistics.load(truncated)
    assert not is_statistics_file(truncated)


def test_round_off_does_not_trip_the_checks():
    # Large means and few videos: the worst case for the centred check.
    for seed in range(5):
        x = activations(3 + seed, dim=400, seed=seed) * 1e3 + 1e5
        stats = Statistics().update(x[:1]).update(x[1:])
        assert moments_problem(stats.count, stats.sum, stats.sum_outer) is None


def test_update_refuses_non_finite_activations():
    x = activations()
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        Statistics().update(torch.from_numpy(x))


def test_duplicate_and_overlapping_parts_are_refused():
    x = activations(30)
    a, b = Statistics(meta=META).update(x[:10]), Statistics(meta=META).update(x[10:])
    a.source, b.source = "a0.npz", "a1.npz"
    copy = Statistics(meta=META).update(x[:10])
    copy.source = "copy.npz"
    with pytest.raises(ValueError, match="^a0.npz and copy.npz hold the same statistics"):
        Statistics().merge(a, b, copy)
    with pytest.raises(ValueError, match="^part 1 and part 2 hold the same statistics"):
        Statistics().merge(Statistics(meta=META).update(x), Statistics(meta=META).update(x))
    # Shards of one input list: 0/2 and 1/2 are disjoint; 0/2 and 2/4 are not.
    a.parts, b.parts = [("list", 0, 2)], [("list", 1, 2)]
    merged = Statistics().merge(a, b)
    assert merged.count == 30 and merged.parts == [("list", 0, 2), ("list", 1, 2)]
    b.parts = [("list", 2, 4)]
    with pytest.raises(
        ValueError, match=r"a0.npz and a1.npz hold overlapping shards of one input list \(0/2 and 2/4\)"
    ):
        Statistics().merge(a, b)
    b.parts = [("other list", 0, 2)]
    assert Statistics().merge(a, b).count == 30
    assert [parts_overlap(("l", i, 4), ("l", 1, 6)) for i in range(4)] == [False, True, False, True]
