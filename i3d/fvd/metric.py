"""FVD as a torchmetrics ``Metric``: accumulate in a training or evaluation loop, synchronised across processes.

::

    from i3d.fvd import FrechetVideoDistance

    fvd = FrechetVideoDistance(protocol="reference").to(device)
    for real, fake in loader:              # uint8 (N, T, H, W, 3), any device
        fvd.update(real, real=True)
        fvd.update(fake, real=False)
    print(fvd.compute())                   # the same number as `i3d fvd` on the same clips

The states are each side's count, float64 sum and float64 sum of outer
products, summed across processes (``dist_reduce_fx="sum"``), so that DDP
gives the statistics of all videos exactly (up to the order of float64
additions) whatever their split. The metric embeds the clips it is given
with the protocol's network and preprocessing and computes the protocol's
distance; which clips and how many (the protocol's draws and video counts)
are the caller's loop.

torchmetrics is an optional dependency (``pip install torchmetrics``).
"""

from __future__ import annotations

import os
from typing import Any

import torch

try:
    from torchmetrics import Metric
except ImportError as err:  # an optional extra
    raise ImportError("i3d.fvd.FrechetVideoDistance needs torchmetrics: pip install torchmetrics") from err

from i3d.fvd.distance import frechet_distance
from i3d.fvd.embedding import DEFAULT_BATCH, EMBEDDING_DIM, Embedder
from i3d.fvd.protocols import Protocol, get_protocol
from i3d.fvd.stats import Statistics
from i3d.runtime import Precision

__all__ = ["FrechetVideoDistance"]

_SIDES = ("real", "gen")


class FrechetVideoDistance(Metric):
    """FVD between the clips given with ``real=True`` and those with ``real=False``.

    Args:
        protocol: whose FVD (see :mod:`i3d.fvd.protocols`).
        weights: registry name or checkpoint path (default: the protocol's).
        precision: the network's precision (``fp32`` for numbers comparable
            with papers).
        batch_size: clips per network call.
        kwargs: torchmetrics ``Metric`` options (``sync_on_compute``, ...).
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        protocol: str | Protocol = "reference",
        weights: str | os.PathLike[str] | None = None,
        *,
        precision: Precision = "fp32",
        batch_size: int = DEFAULT_BATCH,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.protocol = get_protocol(protocol)
        self.weights = weights
        self.precision = precision
        self.batch_size = batch_size
        self._embedder: Embedder | None = None
        for side in _SIDES:
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
            self.add_state(f"{side}_sum", torch.zeros(EMBEDDING_DIM, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(
                f"{side}_outer", torch.zeros(EMBEDDING_DIM, EMBEDDING_DIM, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def _embedder_here(self) -> Embedder:
        """The network on the metric's device (loaded again if the metric moved)."""
        if self._embedder is None or self._embedder.device != self.device:
            self._embedder = Embedder(
                self.weights,
                protocol=self.protocol,
                device=self.device,
                precision=self.precision,
                batch_size=self.batch_size,
            )
        return self._embedder

    def update(self, videos: Any, real: bool) -> None:  # type: ignore[override]
        """Add uint8 clips ``(N, T, H, W, 3)`` (NumPy or torch) to the real or the generated side."""
        embeddings = self._embedder_here()(videos).to(self.device, torch.float64)  # (N, 400)
        side = "real" if real else "gen"
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + embeddings.shape[0])
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + embeddings.sum(0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + embeddings.T @ embeddings)

    def _statistics(self, side: str) -> Statistics:
        stats = Statistics(EMBEDDING_DIM)
        stats.count = int(getattr(self, f"{side}_count"))
        stats.sum[:] = getattr(self, f"{side}_sum").detach().cpu().numpy()
        stats.sum_outer[:] = getattr(self, f"{side}_outer").detach().cpu().numpy()
        return stats

    def compute(self) -> torch.Tensor:
        """The protocol's Fréchet distance, a float64 scalar tensor."""
        real, gen = self._statistics("real"), self._statistics("gen")
        for side, stats in (("real", real), ("gen", gen)):
            if stats.count < 2:
                raise ValueError(f"{side}: {stats.count} clip(s) given; FVD needs at least 2")
        return torch.tensor(frechet_distance(real, gen, self.protocol), dtype=torch.float64)
