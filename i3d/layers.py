"""Temporal spans and TensorFlow "SAME" padding: the geometry of I3D's layers.

TensorFlow "SAME" padding is asymmetric and depends on the input size: a
layer with kernel ``k`` and stride ``s`` over ``n`` cells outputs
``ceil(n / s)`` cells and pads ``max((ceil(n / s) - 1) * s + k - n, 0)``
cells in total, the smaller half in front.

A :class:`Span` is a window ``[start, stop)`` of a longer temporal axis.
Every layer of :mod:`i3d.model` can take one and then computes exactly the
outputs the full sequence would give at the positions the window holds
enough context for (:class:`SpanStage`); :mod:`i3d.chunked` builds exact
chunked inference on that.

The layers themselves are :class:`MaxPool3dSame` and :class:`Unit3D`
(Sonnet's convolution + BatchNorm + ReLU); in eval mode without autograd
both hand their work to the fast path of :mod:`i3d.fast`.

Tensor layout everywhere: ``(B, C, T, H, W)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from i3d import fast
from i3d.fast import InferenceOptions

__all__ = [
    "Span",
    "SpanStage",
    "ChunkTooSmall",
    "SameWindow3d",
    "MaxPool3dSame",
    "Unit3D",
    "BN_EPS",
    "BN_MOMENTUM",
    "tf_same_padding",
    "same_padding",
    "temporal_window",
]

BN_EPS = 1e-3  # Sonnet's BatchNorm default; PyTorch's is 1e-5.
BN_MOMENTUM = 0.01  # TF decay 0.99 expressed as PyTorch momentum.


def tf_same_padding(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding ``(front, back)`` for ``n`` cells."""
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


def same_padding(n: int | torch.SymInt, kernel: int, stride: int) -> tuple[int, int]:
    """:func:`tf_same_padding` without a branch, for ``kernel >= stride``
    (every layer of I3D), so that ``n`` may be a symbolic size in an export.

    ``(ceil(n / s) - 1) * s + k - n >= k - s >= 0``: the ``max`` is not
    needed. Written so that the padded size, ``n + front + back``, reduces
    to ``(ceil(n / s) - 1) * s + k`` and the output size to ``ceil(n / s)``
    in the exporter's symbolic arithmetic.
    """
    if kernel < stride:
        raise ValueError(f"kernel {kernel} is smaller than stride {stride}")
    # ceil(n / s) with no negative operand: ONNX's integer Div truncates
    # towards zero where Python's // floors.
    total = ((n + stride - 1) // stride - 1) * stride + kernel - n
    front = total // 2
    return front, total - front


@dataclass(frozen=True)
class Span:
    """A window ``[start, stop)`` of a temporal axis of ``length`` cells.

    A tensor that carries a span holds cells ``start .. stop - 1`` of a
    sequence that is ``length`` cells long in full. Padding is only applied
    at the true ends of the sequence (``start == 0``, ``stop == length``).
    """

    start: int
    stop: int
    length: int

    @classmethod
    def full(cls, length: int) -> Span:
        return cls(0, length, length)

    @property
    def size(self) -> int:
        return self.stop - self.start

    def intersect(self, other: Span) -> Span:
        if self.length != other.length:
            raise ValueError(f"spans of different sequences: {self} and {other}")
        return Span(max(self.start, other.start), min(self.stop, other.stop), self.length)


class ChunkTooSmall(ValueError):
    """A temporal window holds too little context to compute any output."""


@runtime_checkable
class SpanStage(Protocol):
    """One stage of the network as :mod:`i3d.chunked` drives it.

    Every trunk endpoint and the head's pool implement it; the chunked
    engine needs nothing else from the model (see
    :meth:`i3d.model.InceptionI3d.stages`).
    """

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        """Outputs of the window ``x`` (cells ``span`` of the input) and
        where they lie in the full output; raises :class:`ChunkTooSmall`
        if no output is computable yet."""
        ...

    def input_start(self, out_start: int, length: int) -> int:
        """First input cell that output cell ``out_start`` reads."""
        ...

    def output_length(self, length: int) -> int:
        """Output cells along time for ``length`` input cells."""
        ...


def temporal_window(
    x: torch.Tensor, span: Span, kernel: int, stride: int, same: bool
) -> tuple[torch.Tensor, int, int, Span]:
    """Select the input cells a temporal window op needs, and its padding.

    Returns ``(x', front, back, out_span)``: apply the op with ``front`` and
    ``back`` cells of temporal padding to ``x'`` (no other temporal padding)
    and the result holds the cells ``out_span`` of the full output. Output
    ``j`` reads input cells ``[s*j - f, s*j - f + k)`` of the full sequence,
    ``f`` being the full sequence's front padding; it is computed here when
    all of those that exist lie in ``span`` (padding exists only at the ends).
    """
    n, a, b = span.length, span.start, span.stop
    if same:
        front, _ = tf_same_padding(n, kernel, stride)
        out_len = -(-n // stride)
    else:
        front, out_len = 0, (n - kernel) // stride + 1
    first = 0 if a == 0 else -(-(a + front) // stride)
    last = out_len if b == n else min(out_len, (b + front - kernel) // stride + 1)
    if last <= first:
        raise ChunkTooSmall(f"cells [{a}, {b}) of {n} are too few for a window of {kernel} (stride {stride})")
    lo = stride * first - front
    hi = stride * (last - 1) - front + kernel
    x = x[:, :, max(lo, 0) - a : min(hi, n) - a]
    return x, max(-lo, 0), max(hi - n, 0), Span(first, last, out_len)


class SameWindow3d(nn.Module):
    """A window op (convolution, max pool) with TF SAME padding over
    ``(T, H, W)``: where its outputs lie and which padding they need."""

    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    options: InferenceOptions = fast.ON  # set by InceptionI3d.configure_inference

    def input_start(self, out_start: int, length: int) -> int:
        """First input cell that output cell ``out_start`` reads, for an input
        of ``length`` cells (padding aside)."""
        front, _ = tf_same_padding(length, self.kernel[0], self.stride[0])
        return max(self.stride[0] * out_start - front, 0)

    def output_length(self, length: int) -> int:
        """Output cells along time for ``length`` input cells."""
        return -(-length // self.stride[0])

    def window(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, tuple[tuple[int, int], ...], Span]:
        """The cells of ``x`` the outputs need, TF SAME padding ``(front,
        back)`` for each of T, H, W, and the output span."""
        x, tf, tb, out_span = temporal_window(x, span, self.kernel[0], self.stride[0], same=True)
        hpad = tf_same_padding(x.shape[3], self.kernel[1], self.stride[1])
        wpad = tf_same_padding(x.shape[4], self.kernel[2], self.stride[2])
        return x, ((tf, tb), hpad, wpad), out_span

    def pad(self, x: torch.Tensor, span: Span, value: float) -> tuple[torch.Tensor, tuple[int, int, int] | None, Span]:
        """Pad ``x`` as TF SAME would. Returns the tensor, a symmetric padding
        to hand to the op instead (or None), and the output span."""
        x, pads, out_span = self.window(x, span)
        if all(f == b for f, b in pads):
            # Symmetric: let the kernel pad, which avoids a copy of the input.
            return x, tuple(f for f, _ in pads), out_span  # type: ignore[return-value]
        (tf, tb), (hf, hb), (wf, wb) = pads
        return F.pad(x, (wf, wb, hf, hb, tf, tb), value=value), None, out_span

    def pad_whole(self, x: torch.Tensor, value: float) -> torch.Tensor:
        """``x`` (a whole input) padded as TF SAME would, with no branch on
        its size (:func:`same_padding`): the form that exports trace."""
        pads: list = []
        for d in (4, 3, 2):  # F.pad lists the last dimension first
            pads += same_padding(x.shape[d], self.kernel[d - 2], self.stride[d - 2])
        return F.pad(x, pads, value=value)


class MaxPool3dSame(SameWindow3d):
    """Max pool with TF SAME padding; padded cells are never selected.

    ``nonnegative``: the input is never negative (the pool follows a ReLU),
    which lets the fast path compare bfloat16 as integers
    (:func:`i3d.ops.max_pool_strided`)."""

    def __init__(
        self, kernel_size: tuple[int, int, int], stride: tuple[int, int, int], *, nonnegative: bool = False
    ) -> None:
        super().__init__()
        self.kernel = tuple(kernel_size)  # type: ignore[assignment]
        self.stride = tuple(stride)  # type: ignore[assignment]
        self.nonnegative = nonnegative

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        if fast.active(self) and (out := fast.pool_span(self, x, span)) is not None:
            return out
        x, padding, out_span = self.pad(x, span, value=-math.inf)
        # max_pool3d's own padding never selects a padded cell either.
        return F.max_pool3d(x, self.kernel, self.stride, padding=padding or 0), out_span

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast.exporting():
            return F.max_pool3d(self.pad_whole(x, -math.inf), self.kernel, self.stride)
        return self.forward_span(x, Span.full(x.shape[2]))[0]


class Unit3D(SameWindow3d):
    """SAME convolution, then BatchNorm and ReLU (Sonnet's ``Unit3D``).

    In eval mode without autograd it runs :func:`i3d.fast.unit_span`: one
    convolution with the BatchNorm folded into its weights
    (:class:`i3d.fast.FoldCache`).
    """

    def __init__(
        self,
        in_channels: int,
        output_channels: int,
        kernel_shape: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        activation_fn: bool = True,
        use_batch_norm: bool = True,
        use_bias: bool = False,
        name: str = "unit_3d",
    ) -> None:
        super().__init__()
        self.kernel = tuple(kernel_shape)  # type: ignore[assignment]
        self.stride = tuple(stride)  # type: ignore[assignment]
        self.name = name
        self.activation = activation_fn
        self.conv3d = nn.Conv3d(in_channels, output_channels, self.kernel, self.stride, bias=use_bias)
        self.bn = nn.BatchNorm3d(output_channels, eps=BN_EPS, momentum=BN_MOMENTUM) if use_batch_norm else None
        self.fold_cache = fast.FoldCache()

    def __getstate__(self) -> dict:
        # Copies and pickles leave the folded weights behind: they are
        # recomputed on first use.
        return {**super().__getstate__(), "fold_cache": fast.FoldCache()}

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        # Inference tensors keep no version counter for the cache to see.
        self.fold_cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    @property
    def pointwise(self) -> bool:
        return self.kernel == (1, 1, 1) and self.stride == (1, 1, 1)

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        if fast.active(self):
            return fast.unit_span(self, x, span)
        if self.pointwise:
            y = self.conv3d(x)
            out_span = span
        else:
            x, padding, out_span = self.pad(x, span, value=0.0)
            conv = self.conv3d
            y = F.conv3d(x, conv.weight, conv.bias, conv.stride, padding if padding is not None else 0)
        return self._normalize(y), out_span

    def _normalize(self, y: torch.Tensor) -> torch.Tensor:
        if self.bn is not None:
            y = self.bn(y)
        return F.relu(y, inplace=True) if self.activation else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast.exporting():
            return self._normalize(self.conv3d(self.pad_whole(x, 0.0)))
        return self.forward_span(x, Span.full(x.shape[2]))[0]
