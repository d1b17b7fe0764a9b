"""The Fréchet and kernel distances between two sets of embeddings, as tfgan computes them.

Fréchet (tfgan's ``frechet_classifier_distance_from_activations``): the
Gaussians fitted to both sets, in float64, covariances with ``N - 1``::

    ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr(sqrt(S1 S2))

``S1 S2`` is not symmetric, and ``scipy.linalg.sqrtm`` of it returns a
complex matrix whose imaginary part ports drop without a word. Here
``Tr(sqrt(S1 S2))`` is the sum of the square roots of the eigenvalues of
``A S2 A`` with ``A = sqrt(S1)``: that matrix is symmetric positive
semi-definite and has the eigenvalues of ``S1 S2`` (tfgan's identity), so
``eigh`` applies. Eigenvalues within round-off of zero are set to zero; a
covariance with a negative eigenvalue beyond the round-off of its own
accumulation (not the covariance of any embeddings) raises ``ValueError``
instead of a silently dropped imaginary part.

Kernel (tfgan's ``kernel_classifier_distance_and_std_from_activations``):
the unbiased MMD^2 estimate with the polynomial kernel
``k(x, y) = (x.y / D + 1)^3``, computed on blocks of at most
``max_block_size`` consecutive embeddings of each set and averaged over
the blocks; the standard error comes from the spread of the blocks.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from i3d.fvd.choices import MAX_BLOCK_SIZE
from i3d.fvd.protocols import Protocol, get_protocol
from i3d.fvd.stats import Statistics, scatter_round_off

__all__ = [
    "frechet_distance",
    "trace_sqrt_product",
    "kernel_distance",
    "kernel_distance_and_std",
    "MAX_BLOCK_SIZE",
    "TFGAN_SVD_EPS",
]

# eigh computes the eigenvalues of a symmetric D x D matrix M to within about
# D * eps * ||M||; this multiple of that bound is what round-off may reach.
_ROUND_OFF_FACTOR = 100.0
# tfgan's _symmetric_matrix_square_root, as VideoGPT and TATS copy it:
# singular values below this stay un-rooted.
TFGAN_SVD_EPS = 1e-10
_EPS = float(np.finfo(np.float64).eps)


def _as_statistics(x: Statistics | Any) -> Statistics:
    return x if isinstance(x, Statistics) else Statistics().update(x)


def _psd_eigenvalues(matrix: np.ndarray, tolerance: float | None, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a symmetric PSD matrix, eigenvalues within round-off of 0 set to 0.

    Zeroing them, not only the negative ones, matters when there are fewer
    videos than dimensions: the covariance is then singular, and the square
    root of a round-off eigenvalue (1e-14 -> 1e-7) would be amplified into
    the trace. (tfgan leaves singular values below 1e-10 un-rooted, to the
    same end, on an absolute scale.)

    Args:
        tolerance: how far below zero round-off can put an eigenvalue; one
            further below raises ``ValueError`` naming ``what``. ``None``:
            no check (the matrix is PSD by construction).
    """
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    round_off = _ROUND_OFF_FACTOR * matrix.shape[0] * _EPS * np.abs(values).max()
    if tolerance is not None and values.min() < -max(tolerance, round_off):
        raise ValueError(
            f"{what} is not positive semi-definite (eigenvalue {values.min():.4g}, largest {values.max():.4g}, "
            f"round-off at most {max(tolerance, round_off):.3g}): not the covariance of any embeddings"
        )
    return np.where(values > round_off, values, 0.0), vectors


def trace_sqrt_product(
    cov1: np.ndarray,
    cov2: np.ndarray,
    tolerances: tuple[float, float] = (0.0, 0.0),
    names: tuple[str, str] = ("the first covariance", "the second covariance"),
) -> float:
    """``Tr(sqrt(cov1 cov2))`` for symmetric PSD ``cov1``, ``cov2`` (float64).

    Args:
        tolerances: how far below zero round-off may have put each
            covariance's eigenvalues (beyond ``eigh``'s own round-off).

    Raises:
        ValueError: a covariance is not PSD within its tolerance.
    """
    cov1 = np.asarray(cov1, dtype=np.float64)
    cov2 = np.asarray(cov2, dtype=np.float64)
    _psd_eigenvalues(cov2, tolerances[1], names[1])  # checked only: its root is not needed
    values, vectors = _psd_eigenvalues(cov1, tolerances[0], names[0])
    root1 = (vectors * np.sqrt(values)) @ vectors.T  # sqrt(cov1), symmetric
    # Congruent to cov2 on the range of root1, hence PSD: what falls below
    # zero is round-off, and is dropped.
    product, _ = _psd_eigenvalues(root1 @ cov2 @ root1, None, "sqrt(S1) S2 sqrt(S1)")
    return float(np.sqrt(np.maximum(product, 0.0)).sum())


def covariance_round_off(stats: Statistics) -> float:
    """How far below zero round-off may put the eigenvalues of ``stats.cov``."""
    return scatter_round_off(stats.count, stats.dim, stats.sum_outer) / (stats.count - 1)


def frechet_distance(s1: Statistics | Any, s2: Statistics | Any, protocol: str | Protocol = "reference") -> float:
    """Fréchet distance between two sets of embeddings (FVD when they are I3D's).

    Args:
        s1, s2: :class:`Statistics`, or embeddings ``(N, D)`` (arrays or
            tensors), at least two each: the real set, then the generated one.
        protocol: whose covariance and square root (see
            :mod:`i3d.fvd.protocols`): ``reference``, tfgan's, in float64
            with ``N - 1`` and a symmetric root; ``styleganv``, ``cdfvd``,
            ``junyaohu``: ``scipy.linalg.sqrtm`` of the product, real part
            (``N`` or ``N - 1``); ``videogpt``: tfgan's SVD root in float32.

    Returns:
        The distance, a float.

    Raises:
        ValueError: a covariance is not positive semi-definite beyond the
            round-off of its accumulation (statistics not made from
            embeddings).
    """
    p = get_protocol(protocol)
    s1, s2 = _as_statistics(s1), _as_statistics(s2)
    if s1.dim != s2.dim:
        raise ValueError(f"embeddings of {s1.dim} and {s2.dim} dimensions")
    cov1, cov2 = s1.covariance(p.ddof), s2.covariance(p.ddof)
    tolerances = (covariance_round_off(s1), covariance_round_off(s2))
    sides = ((s1, "the first set"), (s2, "the second set"))
    names = tuple(f"the covariance of {s.source or name}" for s, name in sides)
    if p.square_root != "symmetric":  # the codebases do not check: here the inputs are, all the same
        for cov, tolerance, name in zip((cov1, cov2), tolerances, names):
            _psd_eigenvalues(cov, tolerance, name)
    if p.square_root == "symmetric":
        mean_term = float(np.sum((s1.mean - s2.mean) ** 2))
        root_term = trace_sqrt_product(cov1, cov2, tolerances, names)
        return mean_term + float(np.trace(cov1) + np.trace(cov2)) - 2.0 * root_term
    if p.gen_first:
        s1, s2, cov1, cov2 = s2, s1, cov2, cov1
    if p.square_root == "sqrtm":
        return _frechet_sqrtm(s1.mean, s2.mean, cov1, cov2)
    return _frechet_svd_float32(s1.mean, s2.mean, cov1, cov2)


def _frechet_sqrtm(mean1: np.ndarray, mean2: np.ndarray, cov1: np.ndarray, cov2: np.ndarray) -> float:
    """StyleGAN-V's (and cd-fvd's, JunyaoHu's) formula, in their order of operations:
    ``real(|m1 - m2|^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)))``."""
    try:
        import scipy.linalg
    except ImportError:
        raise ValueError("this protocol's square root is scipy.linalg.sqrtm: pip install scipy") from None
    mean_term = np.square(mean1 - mean2).sum()
    # The codebases pass disp=False: no word on a singular product (few videos).
    # SciPy 1.17 deprecates that argument; silencing its warnings is the same.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = scipy.linalg.sqrtm(np.dot(cov1, cov2))
    return float(np.real(mean_term + np.trace(cov1 + cov2 - root * 2)))


def _frechet_svd_float32(mean1: np.ndarray, mean2: np.ndarray, cov1: np.ndarray, cov2: np.ndarray) -> float:
    """VideoGPT's ``frechet_distance`` (tfgan's, written in torch) in float32:
    ``Tr(S1 + S2) - 2 Tr(sqrt(sqrt(S1) S2 sqrt(S1))) + |m1 - m2|^2``, each
    root ``U diag(s or sqrt(s)) V^T`` from ``torch.svd``."""
    import torch

    def root(matrix: torch.Tensor) -> torch.Tensor:
        u, s, v = torch.svd(matrix)
        s = torch.where(s < TFGAN_SVD_EPS, s, torch.sqrt(s))
        return u @ torch.diag(s) @ v.t()

    m1, m2, c1, c2 = (torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in (mean1, mean2, cov1, cov2))
    root1 = root(c1)
    trace_root = torch.trace(root(root1 @ (c2 @ root1)))
    return float(torch.trace(c1 + c2) - 2.0 * trace_root + torch.sum((m1 - m2) ** 2))


def _activations(x: Statistics | Any, name: str) -> np.ndarray:
    if isinstance(x, Statistics):
        if x.activations is None:
            raise ValueError(f"{name}: the kernel distance needs the embeddings; these statistics did not keep them")
        return x.activations
    a = x.detach().double().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name}: embeddings must be (N, D), got shape {a.shape}")
    return a


def _block_bounds(n: int, blocks: int) -> np.ndarray:
    """tfgan's split of ``n`` into ``blocks`` consecutive parts: sizes ``n // blocks``,
    the last ``n % blocks`` of them one larger."""
    small, larger = divmod(n, blocks)
    sizes = [small] * (blocks - larger) + [small + 1] * larger
    return np.concatenate([[0], np.cumsum(sizes)])


def kernel_distance_and_std(
    a: Statistics | Any, b: Statistics | Any, *, max_block_size: int = MAX_BLOCK_SIZE
) -> tuple[float, float]:
    """Kernel distance (KVD for I3D embeddings) and its standard error, as tfgan.

    Args:
        a, b: embeddings ``(N, D)`` (arrays or tensors), or
            :class:`Statistics` that kept them; each block needs at least two
            of each set.
        max_block_size: the largest block (tfgan: 1024). There are
            ``ceil(max(Na, Nb) / max_block_size)`` blocks, of consecutive
            embeddings: tfgan assumes both sets are in random order.

    Returns:
        ``(distance, standard error)``; the error is NaN for a single block.
        Computed in float64 (tfgan computes in the activations' dtype:
        float32 in the reference's pipeline).
    """
    x, y = _activations(a, "first set"), _activations(b, "second set")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"embeddings of {x.shape[1]} and {y.shape[1]} dimensions")
    if max_block_size < 1:
        raise ValueError(f"max_block_size must be >= 1, got {max_block_size}")
    blocks = math.ceil(max(len(x), len(y)) / max_block_size)
    if min(len(x), len(y)) < 2 * blocks:
        raise ValueError(
            f"{blocks} block(s) need at least {2 * blocks} embeddings in each set, got {len(x)} and {len(y)}"
        )
    dim = x.shape[1]

    def kernel(p: np.ndarray, q: np.ndarray) -> np.ndarray:
        return (p @ q.T / dim + 1.0) ** 3

    bx, by = _block_bounds(len(x), blocks), _block_bounds(len(y), blocks)
    estimates = np.empty(blocks)
    for i in range(blocks):
        r, g = x[bx[i] : bx[i + 1]], y[by[i] : by[i + 1]]
        m, n = len(r), len(g)
        k_rr, k_gg = kernel(r, r), kernel(g, g)
        within_r = (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
        within_g = (k_gg.sum() - np.trace(k_gg)) / (n * (n - 1))
        estimates[i] = within_r + within_g - 2.0 * kernel(r, g).mean()
    mean = float(estimates.mean())
    if blocks == 1:
        return mean, float("nan")
    variance = float(np.sum((estimates - mean) ** 2) / (blocks - 1))
    return mean, math.sqrt(variance / blocks)


def kernel_distance(a: Statistics | Any, b: Statistics | Any, *, max_block_size: int = MAX_BLOCK_SIZE) -> float:
    """The kernel distance alone; see :func:`kernel_distance_and_std`."""
    return kernel_distance_and_std(a, b, max_block_size=max_block_size)[0]
