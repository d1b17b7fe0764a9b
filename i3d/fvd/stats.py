"""Streaming sufficient statistics of embeddings: count, sum, sum of outer products.

A :class:`Statistics` holds, in float64, ``n``, ``sum_i x_i`` and
``sum_i x_i x_i^T`` of the embeddings seen so far: enough for the mean and
the covariance (with ``N - 1``, as tfgan computes it), in memory that does
not grow with the number of videos. Statistics of disjoint parts (shards,
machines) add up to the statistics of the whole, so :meth:`Statistics.merge`
is exact up to the order of float64 additions.

The kernel distance (KVD) needs the embeddings themselves, not moments: a
:class:`Statistics` made with ``keep_activations=True`` also keeps them
(``N x 400`` float64: 3.2 kB a video), each with its position in the input
list, so that merged shards come back in the order of a single pass (KVD's
block estimator depends on the order).

Files are ``.npz`` archives (no pickles) with the arrays ``count``, ``sum``,
``sum_outer``, ``meta`` (a JSON string: the weights and preprocessing that
made the embeddings) and, where kept, ``activations`` and ``indices``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from i3d.atomic import open_atomic
from i3d.errors import InputError

__all__ = ["Statistics", "FORMAT", "is_statistics_file"]

FORMAT = "i3d-fvd-statistics/1"
_KEYS = ("count", "sum", "sum_outer", "meta")


def _as_float64(activations: Any) -> Any:
    """A 2-D float64 array or tensor, on the device it came from."""
    if hasattr(activations, "detach"):  # a torch tensor: stay on its device
        x = activations.detach().double()
    else:
        x = np.asarray(activations, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"activations must be (N, D), got shape {tuple(x.shape)}")
    return x


def _to_numpy(x: Any) -> np.ndarray:
    return x.cpu().numpy() if hasattr(x, "cpu") else np.asarray(x)


def is_statistics_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an ``.npz`` written by :meth:`Statistics.save`."""
    path = os.fspath(path)
    if not (path.lower().endswith(".npz") and os.path.isfile(path)):
        return False
    try:
        with np.load(path, allow_pickle=False) as archive:
            return all(k in archive.files for k in _KEYS)
    except (OSError, ValueError):
        return False


class Statistics:
    """Sufficient statistics of ``D``-dimensional embeddings.

    Args:
        dim: ``D`` (400 for I3D's Kinetics logits); taken from the first
            update when ``None``.
        keep_activations: also keep the embeddings (needed for KVD).
        meta: what made the embeddings (weights, preprocessing), saved with
            them and compared by :meth:`merge` and the distances' callers.

    Attributes:
        count: number of embeddings.
        sum: ``(D,)`` float64.
        sum_outer: ``(D, D)`` float64.
        activations: ``(count, D)`` float64 or ``None``.
        indices: ``(count,)`` int64 positions of the activations in the input.
    """

    def __init__(self, dim: int | None = None, *, keep_activations: bool = False, meta: dict | None = None) -> None:
        self.count = 0
        self.sum: np.ndarray | None = None
        self.sum_outer: np.ndarray | None = None
        self.keep_activations = keep_activations
        self._activations: list[np.ndarray] = []
        self._indices: list[np.ndarray] = []
        self.meta: dict = dict(meta or {})
        if dim is not None:
            self._allocate(dim)

    def _allocate(self, dim: int) -> None:
        self.sum = np.zeros(dim, dtype=np.float64)
        self.sum_outer = np.zeros((dim, dim), dtype=np.float64)

    @property
    def dim(self) -> int | None:
        return None if self.sum is None else self.sum.shape[0]

    def __repr__(self) -> str:
        kept = ", with activations" if self.keep_activations else ""
        return f"Statistics(count={self.count}, dim={self.dim}{kept})"

    # ---- accumulating

    def update(self, activations: Any, indices: Any = None) -> Statistics:
        """Add embeddings ``(N, D)`` (a NumPy array or a torch tensor on any
        device; the sums are formed there in float64).

        Args:
            indices: ``(N,)`` positions of these embeddings in the input
                (default: the running count), kept with the activations.
        """
        x = _as_float64(activations)
        n, dim = x.shape
        if self.sum is None:
            self._allocate(dim)
        if dim != self.dim:
            raise ValueError(f"activations have {dim} dimensions, the statistics {self.dim}")
        if n == 0:
            return self
        self.sum += _to_numpy(x.sum(0))
        self.sum_outer += _to_numpy(x.T @ x)
        if self.keep_activations:
            self._activations.append(_to_numpy(x).copy())
            index = np.arange(self.count, self.count + n) if indices is None else _to_numpy(indices)
            self._indices.append(np.asarray(index, dtype=np.int64).reshape(n))
        self.count += n
        return self

    def merge(self, *others: Statistics) -> Statistics:
        """Add the statistics of disjoint sets of videos into this one.

        Activations are kept only if every part kept them; they are then
        ordered by their input position (stable), which restores the order
        of a single pass over inputs that were split with ``--shard``.

        Raises:
            ValueError: different dimensions, or different ``meta`` (the
                embeddings would not be comparable).
        """
        for other in others:
            if other.meta != self.meta and self.count and other.count:
                raise ValueError(f"cannot merge statistics made differently: {self.meta} vs {other.meta}")
            if not self.count:
                self.meta = dict(other.meta)
            if other.sum is None:
                continue
            if self.sum is None:
                self._allocate(other.sum.shape[0])
            if other.dim != self.dim:
                raise ValueError(f"cannot merge statistics of {self.dim} and {other.dim} dimensions")
            self.sum += other.sum
            self.sum_outer += other.sum_outer
            self.keep_activations = self.keep_activations and other.keep_activations
            if self.keep_activations:
                self._activations.append(other.activations)
                self._indices.append(other.indices)
            self.count += other.count
        if self.keep_activations and self._indices:
            order = np.argsort(np.concatenate(self._indices), kind="stable")
            self._activations = [np.concatenate(self._activations)[order]]
            self._indices = [np.concatenate(self._indices)[order]]
        else:
            self._activations, self._indices = [], []
        return self

    # ---- moments

    @property
    def mean(self) -> np.ndarray:
        """``(D,)`` float64."""
        self._check_count(1)
        return self.sum / self.count

    @property
    def cov(self) -> np.ndarray:
        """``(D, D)`` float64 sample covariance, normalised by ``N - 1`` (as tfgan)."""
        self._check_count(2)
        mean = self.mean
        # (sum x x^T - n mu mu^T) / (n - 1). In float64 the cancellation costs
        # about log10(|mu|^2 / var) digits of 16: nothing for logits.
        cov = (self.sum_outer - self.count * np.outer(mean, mean)) / (self.count - 1)
        return (cov + cov.T) / 2

    def _check_count(self, need: int) -> None:
        if self.count < need:
            raise ValueError(f"need at least {need} embeddings, the statistics hold {self.count}")

    @property
    def activations(self) -> np.ndarray | None:
        """``(count, D)`` float64 in update order (input order after a merge), or ``None``."""
        if not self.keep_activations or self.dim is None:
            return None
        if len(self._activations) != 1:
            self._activations = [np.concatenate(self._activations or [np.zeros((0, self.dim))])]
        return self._activations[0]

    @property
    def indices(self) -> np.ndarray | None:
        if not self.keep_activations:
            return None
        if len(self._indices) != 1:
            self._indices = [np.concatenate(self._indices or [np.zeros(0, dtype=np.int64)])]
        return self._indices[0]

    # ---- files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write an ``.npz`` atomically (a reader never sees a partial file)."""
        if self.sum is None:
            raise ValueError("no embeddings to save (the statistics have no dimension yet)")
        arrays = {
            "count": np.int64(self.count),
            "sum": self.sum,
            "sum_outer": self.sum_outer,
            "meta": np.array(json.dumps({"format": FORMAT, **self.meta}, sort_keys=True)),
        }
        if self.keep_activations:
            arrays["activations"] = self.activations
            arrays["indices"] = self.indices
        with open_atomic(path, binary=True) as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Statistics:
        """Read a file written by :meth:`save`.

        Raises:
            InputError: not such a file (naming it and the cause).
        """
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [k for k in _KEYS if k not in archive.files]
                if missing:
                    raise InputError(path, f"not an FVD statistics file (no {', '.join(missing)})")
                arrays = {k: archive[k] for k in archive.files}
        except (OSError, ValueError, EOFError) as err:
            raise InputError(path, f"cannot read statistics ({err})") from None
        meta = json.loads(str(arrays["meta"]))
        if meta.pop("format", None) != FORMAT:
            raise InputError(path, f"not a {FORMAT} file")
        kept = "activations" in arrays
        stats = cls(arrays["sum"].shape[0], keep_activations=kept, meta=meta)
        stats.count = int(arrays["count"])
        stats.sum[:] = arrays["sum"]
        stats.sum_outer[:] = arrays["sum_outer"]
        if kept:
            stats._activations = [arrays["activations"].astype(np.float64)]
            stats._indices = [arrays["indices"].astype(np.int64)]
            if len(stats._activations[0]) != stats.count:
                raise InputError(path, f"holds {len(stats._activations[0])} activations for a count of {stats.count}")
        return stats
