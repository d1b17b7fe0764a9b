"""Fréchet and kernel distances against direct float64 computations."""

from __future__ import annotations

import itertools
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from i3d.fvd.distance import frechet_distance, kernel_distance, kernel_distance_and_std, trace_sqrt_product
from i3d.fvd.stats import Statistics

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "fvd" / "tfgan.npz"


def two_sets(n1: int, n2: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(dim, dim)) / math.sqrt(dim)  # correlated dimensions
    a = rng.normal(size=(n1, dim)) @ mix * 3 + 1
    b = rng.normal(size=(n2, dim)) @ (mix + 0.1 * rng.normal(size=(dim, dim))) * 2 + rng.normal(size=dim)
    return a, b


def frechet_with_sqrtm(a: np.ndarray, b: np.ndarray) -> float:
    c1, c2 = np.cov(a, rowvar=False, ddof=1), np.cov(b, rowvar=False, ddof=1)
    root = scipy.linalg.sqrtm(c1 @ c2)
    mean_term = np.sum((a.mean(0) - b.mean(0)) ** 2)
    return float(mean_term + np.trace(c1) + np.trace(c2) - 2 * np.trace(root).real)


@pytest.mark.parametrize("n1, n2, dim", [(300, 250, 64), (900, 1000, 400)])
def test_frechet_equals_scipy_sqrtm(n1, n2, dim):
    a, b = two_sets(n1, n2, dim)
    want = frechet_with_sqrtm(a, b)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = frechet_distance(Statistics().update(a), Statistics().update(b))
    assert got == pytest.approx(want, rel=1e-6)
    # Activations directly, as arrays or tensors, give the same number.
    assert frechet_distance(a, torch.from_numpy(b)) == pytest.approx(got, rel=1e-12)


def test_identical_sets_are_at_zero_and_few_videos_warn_nothing():
    a, b = two_sets(16, 20, 100)  # fewer videos than dimensions: singular covariances
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert abs(frechet_distance(a, a)) < 1e-9 * np.trace(np.cov(a, rowvar=False))
        assert frechet_distance(a, b) > 0


def test_trace_sqrt_product_and_the_error_beyond_round_off():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 30))
    s1, s2 = x @ x.T, np.diag(rng.uniform(0.5, 2, size=30))
    want = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trace_sqrt_product(s1, s2) == pytest.approx(want, rel=1e-9)
    with pytest.raises(ValueError, match="second covariance is not positive semi-definite"):
        trace_sqrt_product(s1, -s2)  # not a covariance: its "square root" would be imaginary


def test_a_covariance_that_is_not_psd_is_refused_naming_it():
    a, b = two_sets(40, 40, 8)
    bad = Statistics().update(b)
    bad.sum_outer -= 50 * np.trace(bad.sum_outer) * np.outer(np.eye(8)[0], np.eye(8)[0])
    bad.source = "gen.npz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"covariance of gen\.npz is not positive semi-definite"):
            frechet_distance(a, bad)


def direct_kernel_distance(x: np.ndarray, y: np.ndarray, block_size: int) -> tuple[float, float]:
    """tfgan's block estimator written out pair by pair."""
    dim = x.shape[1]
    blocks = math.ceil(max(len(x), len(y)) / block_size)

    def split(n: int) -> list[tuple[int, int]]:
        sizes = [n // blocks + (i >= blocks - n % blocks) for i in range(blocks)]
        ends = list(itertools.accumulate(sizes))
        return list(zip([0, *ends[:-1]], ends))

    def k(p: np.ndarray, q: np.ndarray) -> float:
        return (float(p @ q) / dim + 1) ** 3

    estimates = []
    for (r0, r1), (g0, g1) in zip(split(len(x)), split(len(y))):
        r, g = x[r0:r1], y[g0:g1]
        rr = sum(k(r[i], r[j]) for i in range(len(r)) for j in range(len(r)) if i != j) / (len(r) * (len(r) - 1))
        gg = sum(k(g[i], g[j]) for i in range(len(g)) for j in range(len(g)) if i != j) / (len(g) * (len(g) - 1))
        rg = sum(k(p, q) for p in r for q in g) / (len(r) * len(g))
        estimates.append(rr + gg - 2 * rg)
    mean = float(np.mean(estimates))
    std = math.sqrt(np.var(estimates, ddof=1) / blocks) if blocks > 1 else float("nan")
    return mean, std


@pytest.mark.parametrize("n1, n2, block", [(13, 11, 5), (9, 12, 1024), (20, 20, 7)])
def test_kernel_distance_equals_a_direct_computation(n1, n2, block):
    a, b = two_sets(n1, n2, 6, seed=n1)
    got, got_std = kernel_distance_and_std(a, b, max_block_size=block)
    want, want_std = direct_kernel_distance(a, b, block)
    assert got == pytest.approx(want, rel=1e-10)
    if math.isnan(want_std):
        assert math.isnan(got_std)
    else:
        assert got_std == pytest.approx(want_std, rel=1e-10)
    assert kernel_distance(torch.from_numpy(a), b, max_block_size=block) == pytest.approx(got, rel=1e-12)


def test_kernel_distance_needs_activations_and_enough_of_them():
    a, b = two_sets(10, 10, 4)
    with pytest.raises(ValueError, match="did not keep them"):
        kernel_distance(Statistics().update(a), b)
    assert kernel_distance(Statistics(keep_activations=True).update(a), b) == pytest.approx(kernel_distance(a, b))
    with pytest.raises(ValueError, match="at least 6"):
        kernel_distance(a, b[:5], max_block_size=4)


def test_equals_tfgan():
    """tfgan's own functions' numbers (tests/fixtures/fvd, written by make_tfgan_fixture.py)."""
    with np.load(FIXTURE) as fixture:
        for k in range(4):
            a, b = fixture[f"a{k}"].astype(np.float64), fixture[f"b{k}"].astype(np.float64)
            assert frechet_distance(a, b) == pytest.approx(float(fixture[f"fid{k}"]), rel=1e-9), k
            kid, kid_std = kernel_distance_and_std(a, b, max_block_size=int(fixture[f"block{k}"]))
            assert kid == pytest.approx(float(fixture[f"kid{k}"]), rel=1e-9), k
            assert kid_std == pytest.approx(float(fixture[f"kid_std{k}"]), rel=1e-9, nan_ok=True), k
