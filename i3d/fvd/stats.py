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
made the embeddings), ``parts`` (a JSON string: which videos, see below) and,
where kept, ``activations`` and ``indices``.

A file is checked when read: finite numbers, consistent shapes, and a
``sum_outer`` that is symmetric and leaves a positive semi-definite scatter
matrix, within the round-off of its own accumulation. Merging refuses parts
that share videos: the same statistics twice (equal :attr:`Statistics.digest`,
a hash of the sums: the same file, or a copy of it), or shards of one input
list that overlap (``parts``: the hash of the input list, and ``I/N``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from i3d.atomic import open_atomic
from i3d.errors import InputError, shorten

__all__ = ["Statistics", "FORMAT", "is_statistics_file", "Part", "parts_overlap", "moments_problem"]

FORMAT = "i3d-fvd-statistics/1"
_KEYS = ("count", "sum", "sum_outer", "meta")
_EPS = float(np.finfo(np.float64).eps)
# A shard of an input list: (hash of the whole list of videos, I, N).
Part = tuple[str, int, int]
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile)


def parts_overlap(a: Part, b: Part) -> bool:
    """Whether shards ``a`` and ``b`` can hold a common video: same input list,
    and some position ``p`` with ``p % N_a == I_a`` and ``p % N_b == I_b``
    (by the Chinese remainder theorem: ``I_a = I_b`` modulo ``gcd(N_a, N_b)``)."""
    (list_a, index_a, count_a), (list_b, index_b, count_b) = a, b
    return list_a == list_b and (index_a - index_b) % math.gcd(count_a, count_b) == 0


def scatter_round_off(count: int, dim: int, sum_outer: np.ndarray) -> float:
    """Bound on the float64 round-off in the eigenvalues of ``sum_outer - sum sum^T / count``.

    Each entry of ``sum_outer`` is a sum of ``count`` products ``x_i x_j``
    (plus one addition per merged part), so its error is at most about
    ``count * eps * sqrt(S_ii S_jj)``; the error matrix's norm is then at
    most ``count * eps * Tr(S)``. Centring adds ``eps * Tr(S)`` or so, and
    ``eigh`` ``dim * eps * ||S||``: in all ``(count + dim + 2) * eps * Tr(S)``.
    """
    return (count + dim + 2) * _EPS * float(np.trace(sum_outer))


def moments_problem(count: int, total: np.ndarray, sum_outer: np.ndarray) -> str | None:
    """Why ``(count, sum, sum_outer)`` cannot be the moments of real embeddings, or ``None``."""
    dim = total.shape[0]
    if count < 0:
        return f"a negative count ({count})"
    if sum_outer.shape != (dim, dim):
        return f"sum_outer of shape {sum_outer.shape} for a sum of {dim} dimensions"
    for name, array in (("sum", total), ("sum_outer", sum_outer)):
        if not np.isfinite(array).all():
            return f"non-finite values (NaN or infinity) in {name}"
    diagonal = np.diag(sum_outer)
    if (diagonal < 0).any():
        return "a negative sum of squares in sum_outer (its diagonal)"
    # x.T @ x may order its sums differently for (i, j) and (j, i): each
    # entry carries at most count * eps of its Cauchy-Schwarz bound.
    bound = np.sqrt(np.outer(diagonal, diagonal))
    if (np.abs(sum_outer - sum_outer.T) > 2 * (count + 2) * _EPS * bound).any():
        return "sum_outer is not symmetric"
    if count >= 2:
        scatter = sum_outer - np.outer(total, total) / count
        lowest = float(np.linalg.eigvalsh((scatter + scatter.T) / 2)[0])
        if lowest < -scatter_round_off(count, dim, sum_outer):
            return f"sum_outer is not positive semi-definite once centred (eigenvalue {lowest:.4g})"
    return None


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
    except _READ_ERRORS:
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
        parts: the shards of input lists these statistics hold (see
            :data:`Part`; empty when not made from an input list).
        source: the file they were loaded from, or ``None``; names them in
            errors.
    """

    def __init__(self, dim: int | None = None, *, keep_activations: bool = False, meta: dict | None = None) -> None:
        self.count = 0
        self.sum: np.ndarray | None = None
        self.sum_outer: np.ndarray | None = None
        self.keep_activations = keep_activations
        self._activations: list[np.ndarray] = []
        self._indices: list[np.ndarray] = []
        self.meta: dict = dict(meta or {})
        self.parts: list[Part] = []
        self.source: str | None = None
        if dim is not None:
            self._allocate(dim)

    def _allocate(self, dim: int) -> None:
        self.sum = np.zeros(dim, dtype=np.float64)
        self.sum_outer = np.zeros((dim, dim), dtype=np.float64)

    @property
    def dim(self) -> int | None:
        return None if self.sum is None else self.sum.shape[0]

    @property
    def digest(self) -> str:
        """A hash of ``count``, ``sum`` and ``sum_outer``: equal for the same statistics (a file and its copy)."""
        h = hashlib.sha256(np.int64(self.count).tobytes())
        if self.sum is not None:
            h.update(np.ascontiguousarray(self.sum, dtype="<f8").tobytes())
            h.update(np.ascontiguousarray(self.sum_outer, dtype="<f8").tobytes())
        return h.hexdigest()[:16]

    def _name(self, position: int) -> str:
        return self.source or f"part {position}"

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
        if not bool((x.isfinite() if hasattr(x, "isfinite") else np.isfinite(x)).all()):
            raise ValueError("activations hold NaN or infinity (broken weights or inputs?)")
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
            ValueError: different dimensions, different ``meta`` (the
                embeddings would not be comparable), or parts that share
                videos (see :meth:`check_disjoint`).
        """
        everything = [self, *others]
        filled = [(k, p) for k, p in enumerate(everything) if p.count]
        for k, part in filled[1:]:  # all checked before anything is added
            j, first = filled[0]
            if part.meta != first.meta:
                raise ValueError(
                    f"cannot merge statistics made differently: {first._name(j)} {first.meta} vs "
                    f"{part._name(k)} {part.meta}"
                )
            if part.dim != first.dim:
                raise ValueError(f"cannot merge statistics of {first.dim} and {part.dim} dimensions")
        self.check_disjoint(everything)
        for other in others:
            if not self.count:
                self.meta = dict(other.meta)
            if other.sum is None:
                continue
            if self.sum is None:
                self._allocate(other.sum.shape[0])
            self.sum += other.sum
            self.sum_outer += other.sum_outer
            self.keep_activations = self.keep_activations and other.keep_activations
            if self.keep_activations:
                self._activations.append(other.activations)
                self._indices.append(other.indices)
            self.count += other.count
            self.parts += other.parts
        if self.keep_activations and self._indices:
            order = np.argsort(np.concatenate(self._indices), kind="stable")
            self._activations = [np.concatenate(self._activations)[order]]
            self._indices = [np.concatenate(self._indices)[order]]
        else:
            self._activations, self._indices = [], []
        return self

    @staticmethod
    def check_disjoint(parts: Sequence[Statistics]) -> None:
        """Raise ``ValueError``, naming both, if two of ``parts`` share videos:
        equal :attr:`digest` (the same statistics twice), or overlapping shards
        of one input list. Empty statistics share nothing."""
        seen: dict[str, int] = {}
        shards: list[tuple[Part, int]] = []
        for k, part in enumerate(parts):
            if not part.count:
                continue
            first = seen.setdefault(part.digest, k)
            if first != k:
                raise ValueError(
                    f"{parts[first]._name(first)} and {part._name(k)} hold the same statistics: "
                    "the same videos would count twice"
                )
            for shard in part.parts:
                for other, j in shards:
                    if j != k and parts_overlap(shard, other):
                        raise ValueError(
                            f"{parts[j]._name(j)} and {part._name(k)} hold overlapping shards of one input list "
                            f"({other[1]}/{other[2]} and {shard[1]}/{shard[2]}): some videos would count twice"
                        )
            shards += [(shard, k) for shard in part.parts]

    # ---- moments

    @property
    def mean(self) -> np.ndarray:
        """``(D,)`` float64."""
        self._check_count(1)
        return self.sum / self.count

    @property
    def cov(self) -> np.ndarray:
        """``(D, D)`` float64 sample covariance, normalised by ``N - 1`` (as tfgan)."""
        return self.covariance(ddof=1)

    def covariance(self, ddof: int = 1) -> np.ndarray:
        """``(D, D)`` float64 covariance normalised by ``N - ddof`` (StyleGAN-V and cd-fvd: 0)."""
        self._check_count(2)
        mean = self.mean
        # (sum x x^T - n mu mu^T) / (n - ddof). In float64 the cancellation costs
        # about log10(|mu|^2 / var) digits of 16: nothing for logits.
        cov = (self.sum_outer - self.count * np.outer(mean, mean)) / (self.count - ddof)
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
            "parts": np.array(json.dumps([list(p) for p in self.parts])),
        }
        if self.keep_activations:
            arrays["activations"] = self.activations
            arrays["indices"] = self.indices
        with open_atomic(path, binary=True) as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Statistics:
        """Read and check a file written by :meth:`save`.

        Raises:
            InputError: not such a file, or one whose numbers cannot be the
                statistics of real embeddings (naming it and the cause).
        """
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = [k for k in _KEYS if k not in archive.files]
                if missing:
                    raise InputError(path, f"not an FVD statistics file (no {', '.join(missing)})")
                arrays = {k: archive[k] for k in archive.files}
        except _READ_ERRORS as err:
            raise InputError(path, f"cannot read statistics ({type(err).__name__}: {err})") from None
        meta = _json_field(path, arrays, "meta", dict)
        if meta.pop("format", None) != FORMAT:
            raise InputError(path, f"not a {FORMAT} file")
        total, sum_outer, count = arrays["sum"], arrays["sum_outer"], arrays["count"]
        if total.ndim != 1 or count.shape != () or count.dtype.kind not in "iu":
            raise InputError(path, f"malformed statistics (sum {total.shape}, count {count.dtype} {count.shape})")
        problem = moments_problem(int(count), total.astype(np.float64), sum_outer.astype(np.float64))
        if problem:
            raise InputError(path, f"holds {problem}; not the statistics of real embeddings")
        kept = "activations" in arrays
        stats = cls(total.shape[0], keep_activations=kept, meta=meta)
        stats.count = int(count)
        stats.sum[:] = total
        stats.sum_outer[:] = sum_outer
        stats.source = os.fspath(path)
        stats.parts = [_part(path, p) for p in _json_field(path, arrays, "parts", list, default=[])]
        if kept:
            activations = arrays["activations"].astype(np.float64)
            stats._activations = [activations]
            stats._indices = [arrays["indices"].astype(np.int64)]
            if activations.shape != (stats.count, stats.dim) or len(stats._indices[0]) != stats.count:
                raise InputError(path, f"holds activations {activations.shape} for a count of {stats.count}")
            if not np.isfinite(activations).all():
                raise InputError(path, "holds non-finite values (NaN or infinity) in activations")
        return stats


def _json_field(path: str | os.PathLike[str], arrays: dict, key: str, kind: type, default: Any = None) -> Any:
    if key not in arrays and default is not None:
        return default
    try:
        value = json.loads(str(arrays[key]))
    except (json.JSONDecodeError, UnicodeError) as err:
        raise InputError(path, f"its {key} is not valid JSON ({err.__class__.__name__}: {err})") from None
    if not isinstance(value, kind):
        raise InputError(path, f"its {key} is a JSON {type(value).__name__}, not a {kind.__name__}")
    return value


def _part(path: str | os.PathLike[str], value: Any) -> Part:
    if not (
        isinstance(value, list)
        and len(value) == 3
        and isinstance(value[0], str)
        and all(isinstance(v, int) for v in value[1:])
        and 0 <= value[1] < value[2]
    ):
        raise InputError(path, f"malformed parts entry {shorten(repr(value))} (want [input-list hash, I, N])")
    return value[0], value[1], value[2]
