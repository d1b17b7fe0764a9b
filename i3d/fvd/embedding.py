"""The FVD embedding: uint8 videos in, I3D's 400 Kinetics logits per clip out.

The reference's pipeline, step by step:

1. uint8 frames ``(N, T, H, W, 3)``, values 0..255;
2. every frame resized to 224x224 by TensorFlow 1's ``resize_bilinear``
   (:func:`i3d.fvd.resize.resize_bilinear_tf1`);
3. scaled to ``2 * x / 255 - 1``;
4. TF-Hub's ``i3d-kinetics-400``, which is DeepMind's ``rgb_scratch``
   checkpoint: the logits of each time step, averaged over time
   (``RGB/inception_i3d/Mean``), in float32;
5. cast to float64 for the statistics.

Other codebases' pipelines (``protocol``, :mod:`i3d.fvd.protocols`) change
steps 2 to 4: the resize rule, the value formulas around it, and the
BatchNorm epsilon of their network copies.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from i3d.choices import DEFAULT_BACKEND, Backend
from i3d.chunked import LOGITS, run_clips
from i3d.fvd.choices import DEFAULT_BATCH
from i3d.fvd.protocols import Protocol, get_protocol
from i3d.fvd.resize import (
    FVD_SIZE,
    RESIZE_METHODS,
    ResizeMethod,
    apply_formula,
    resize_frames,
    resize_short_side_crop,
)
from i3d.model import InceptionI3d
from i3d.network import load_network
from i3d.runtime import Placement, Precision, precision_context

__all__ = ["Embedder", "embed", "clip_logits", "preprocess_videos", "FVD_WEIGHTS", "EMBEDDING_DIM", "DEFAULT_BATCH"]

# TF-Hub's i3d-kinetics-400, the reference's network, is this checkpoint.
FVD_WEIGHTS = get_protocol("reference").weights
EMBEDDING_DIM = 400


def preprocess_videos(
    videos: torch.Tensor, resize: ResizeMethod = "reference", protocol: str | Protocol = "reference"
) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` -> network input ``(B, 3, T, 224, 224)`` float32, as ``protocol`` does it.

    ``resize`` chooses between TF1's rule and ``F.interpolate``'s for the
    ``reference`` protocol only (``torch`` is a variant, not the reference).
    """
    p = get_protocol(protocol)
    x = apply_formula(videos.to(torch.float32), p.before_resize)
    if p.resize == "short-side-crop":
        x = resize_short_side_crop(x, FVD_SIZE)
    else:
        method = resize if p.resize == "tf1" else "torch"
        x = resize_frames(x, (FVD_SIZE, FVD_SIZE), method)  # (B, T, 224, 224, 3)
    return apply_formula(x, p.after_resize).permute(0, 4, 1, 2, 3).contiguous()


def clip_logits(
    model: InceptionI3d, clips: torch.Tensor, precision: Precision = "fp32", backend: Backend = DEFAULT_BACKEND
) -> torch.Tensor:
    """Network input ``(B, 3, T, 224, 224)`` -> logits averaged over time ``(B, classes)`` float32.

    The one place the network runs for FVD: a batched forward pass (the
    openvino backend's through :func:`i3d.chunked.run_clips`).
    """
    if backend != "torch":
        (logits,) = run_clips(model, [clips], LOGITS, device=clips.device, precision=precision, backend=backend)
    else:
        with precision_context(clips.device, precision):
            logits = model(clips)  # (B, classes, T')
    return logits.float().mean(dim=2)


def _batches(videos: Any, size: int) -> Iterator[Any]:
    for start in range(0, len(videos), size):
        yield videos[start : start + size]


class Embedder:
    """FVD embeddings with one loaded network.

    Args:
        weights: a registry name or checkpoint path (default: the
            protocol's, ``rgb_scratch`` for the reference).
        protocol: whose preprocessing and network settings (BatchNorm
            epsilon) to use; see :mod:`i3d.fvd.protocols`.
        device: where the network runs (default: CUDA if available).
        precision: ``fp32`` (default: FVD is compared across papers), or
            ``tf32``, ``bf16``, ``fp16`` (see :mod:`i3d.runtime`).
        backend: ``"torch"`` (default) or ``"openvino"`` (CPU, fp32 or
            bf16; :mod:`i3d.openvino`).
        resize: ``reference`` (TensorFlow 1's rule) or ``torch`` (half-pixel
            centres; a variant, not the reference).
        batch_size: clips per network call; results do not depend on it.
    """

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        *,
        protocol: str | Protocol = "reference",
        device: str | torch.device | None = None,
        precision: Precision = "fp32",
        backend: Backend = DEFAULT_BACKEND,
        resize: ResizeMethod = "reference",
        batch_size: int = DEFAULT_BATCH,
        progress: bool = False,
    ) -> None:
        self.protocol = get_protocol(protocol)
        _check_options(resize, batch_size, self.protocol)
        self.placement = Placement.resolve(device, precision, backend)
        self.device, self.precision = self.placement.device, self.placement.precision
        self.resize = resize
        self.batch_size = batch_size
        self.network = load_network(
            weights or self.protocol.weights,
            self.placement,
            in_channels=3,
            bn_eps=self.protocol.bn_eps,
            progress=progress,
        )
        self.model = self.network.model
        self.weights = self.network.weights
        self.weights_sha256 = self.network.sha256

    def settings(self, num_frames: int | None = None) -> dict:
        """What the embeddings depend on; stored with statistics and compared when they meet."""
        if self.protocol.name == "reference":
            preprocess = {"resize": self.resize, "size": FVD_SIZE, "range": "2*x/255-1"}
        else:
            preprocess = {"size": FVD_SIZE, **self.protocol.embedding_settings()}
        return {
            "protocol": self.protocol.name,
            "weights": self.weights,
            "weights_sha256": self.weights_sha256,
            "preprocess": {**preprocess, "num_frames": num_frames},
            "precision": self.precision,
        }

    def __call__(self, videos: Any) -> torch.Tensor:
        """uint8 videos ``(N, T, H, W, 3)`` (NumPy or torch, any device) ->
        ``(N, 400)`` float64 on :attr:`device`."""
        if videos.ndim != 5 or videos.shape[-1] != 3:
            raise ValueError(f"videos must be (N, T, H, W, 3), got shape {tuple(videos.shape)}")
        if videos.dtype not in (np.uint8, torch.uint8):
            raise ValueError(f"videos must be uint8 (values 0..255), got {videos.dtype}")
        out = []
        for batch in _batches(videos, self.batch_size):
            batch = torch.as_tensor(np.ascontiguousarray(batch) if isinstance(batch, np.ndarray) else batch)
            clips = preprocess_videos(batch.to(self.device, non_blocking=True), self.resize, self.protocol)
            out.append(clip_logits(self.model, clips, self.precision, self.placement.backend).double())
        if not out:
            return torch.zeros((0, self.model.num_classes), dtype=torch.float64, device=self.device)
        return torch.cat(out)


def _check_options(resize: str, batch_size: int, protocol: Protocol) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if resize not in RESIZE_METHODS:
        raise ValueError(f"resize must be one of {RESIZE_METHODS}, got {resize!r}")
    if resize != "reference" and protocol.name != "reference":
        raise ValueError(f"the {protocol.name} protocol fixes its resize ({protocol.resize}); resize is for reference")


_cached: dict[tuple, Embedder] = {}


def embed(
    videos: Any,
    *,
    protocol: str | Protocol = "reference",
    weights: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    precision: Precision = "fp32",
    backend: Backend = DEFAULT_BACKEND,
    resize: ResizeMethod = "reference",
    batch_size: int = DEFAULT_BATCH,
) -> torch.Tensor:
    """FVD embeddings of uint8 videos ``(N, T, H, W, 3)``: ``(N, 400)`` float64,
    preprocessed as ``protocol`` does (see :mod:`i3d.fvd.protocols`).

    The network is loaded on the first call and kept for later calls with
    the same weights, device and precision (for a training loop). A torch
    tensor on a GPU runs there unless ``device`` says otherwise.
    """
    if device is None and isinstance(videos, torch.Tensor) and videos.device.type != "cpu":
        device = videos.device
    placement = Placement.resolve(device, precision, backend)
    protocol = get_protocol(protocol)
    key = (os.fspath(weights or protocol.weights), protocol.name, placement)
    if key not in _cached:
        _cached.clear()  # one network at a time: they are large
        _cached[key] = Embedder(
            weights, protocol=protocol, device=placement.device, precision=precision, backend=backend
        )
    embedder = _cached[key]
    _check_options(resize, batch_size, protocol)
    embedder.resize, embedder.batch_size = resize, batch_size
    return embedder(videos)
