"""Fréchet Video Distance (FVD) and kernel video distance (KVD), exactly as the reference computes them,
or as another codebase does (``protocol``: see :mod:`i3d.fvd.protocols`).

::

    from i3d.fvd import embed, Statistics, frechet_distance, kernel_distance

    real = Statistics()
    for videos in loader:                 # uint8 (N, T, H, W, 3), NumPy or torch, any device
        real.update(embed(videos))        # (N, 400) float64
    fvd = frechet_distance(real, Statistics.load("gen.npz"))

See :mod:`i3d.fvd.embedding` for the reference's pipeline (weights, resize,
value range), :mod:`i3d.fvd.distance` for the distances, and
:class:`FrechetVideoDistance` for a torchmetrics metric.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from i3d.lazy import lazy_exports

# Resolved on first use, so that the CLI's parser imports no torch.
_EXPORTS = {
    "Embedder": "i3d.fvd.embedding",
    "embed": "i3d.fvd.embedding",
    "FVD_WEIGHTS": "i3d.fvd.embedding",
    "Statistics": "i3d.fvd.stats",
    "frechet_distance": "i3d.fvd.distance",
    "kernel_distance": "i3d.fvd.distance",
    "kernel_distance_and_std": "i3d.fvd.distance",
    "compute_statistics": "i3d.fvd.compute",
    "resize_bilinear_tf1": "i3d.fvd.resize",
    "FrechetVideoDistance": "i3d.fvd.metric",
    "Protocol": "i3d.fvd.protocols",
    "PROTOCOLS": "i3d.fvd.protocols",
    "get_protocol": "i3d.fvd.protocols",
}

__all__ = [
    "Embedder",
    "embed",
    "FVD_WEIGHTS",
    "Statistics",
    "frechet_distance",
    "kernel_distance",
    "kernel_distance_and_std",
    "compute_statistics",
    "resize_bilinear_tf1",
    "FrechetVideoDistance",
    "Protocol",
    "PROTOCOLS",
    "get_protocol",
]

if TYPE_CHECKING:
    from i3d.fvd.compute import compute_statistics
    from i3d.fvd.distance import frechet_distance, kernel_distance, kernel_distance_and_std
    from i3d.fvd.embedding import FVD_WEIGHTS, Embedder, embed
    from i3d.fvd.metric import FrechetVideoDistance
    from i3d.fvd.protocols import PROTOCOLS, Protocol, get_protocol
    from i3d.fvd.resize import resize_bilinear_tf1
    from i3d.fvd.stats import Statistics


__getattr__ = lazy_exports(__name__, _EXPORTS)
