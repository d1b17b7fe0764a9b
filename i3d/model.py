"""Inception-v1 I3D (Carreira and Zisserman, CVPR 2017), exact to DeepMind's release.

The network follows DeepMind's ``kinetics-i3d`` Sonnet code layer for layer,
and keeps the module names and state-dict layout of the widely used PyTorch
port, so that its published ``.pt`` files load with ``strict=True``.

Exactness rests on three details that ports often get wrong:

* TensorFlow "SAME" padding is asymmetric and depends on the input size: a
  layer with kernel ``k`` and stride ``s`` over ``n`` cells outputs
  ``ceil(n / s)`` cells and pads ``max((ceil(n / s) - 1) * s + k - n, 0)``
  cells in total, the smaller half in front.
* TensorFlow's max pool never selects a padded cell, so pools pad with -inf.
* BatchNorm uses ``eps = 1e-3`` (Sonnet's default), not PyTorch's 1e-5.

Tensor layout everywhere: ``(B, C, T, H, W)``.

The temporal axis can also be processed in pieces: every layer can take a
:class:`Span`, a window ``[start, stop)`` of a longer sequence, and then
computes exactly the outputs that the full sequence would give at the
positions it has enough context for. :mod:`i3d.extract` builds chunked,
memory-bounded feature extraction on that.

In eval mode without autograd every layer runs a fast path
(:class:`InferenceOptions`): channels-last activations, BatchNorm folded into
the convolution (computed once, cached until a parameter changes), max pools
as maxima of strided views (no padded copies), 1x1 convolutions as matrix
multiplies over the channels, oneDNN's fused convolution + ReLU on the CPU. It differs from the reference path by floating-point
reassociation only (~1e-6 relative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from i3d import ops

__all__ = [
    "InceptionI3d",
    "InferenceOptions",
    "Span",
    "SpanStage",
    "ChunkTooSmall",
    "ENDPOINTS",
    "MIN_FRAMES",
    "tf_same_padding",
]

# Endpoints in network order, with DeepMind's names.
ENDPOINTS: tuple[str, ...] = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
    "Logits",
    "Predictions",
)

# With SAME padding every layer maps n >= 1 cells to ceil(n / s) >= 1 cells,
# so a single frame of a single pixel runs through the whole network.
MIN_FRAMES = 1
MIN_SIZE = 1

BN_EPS = 1e-3  # Sonnet's BatchNorm default; PyTorch's is 1e-5.
BN_MOMENTUM = 0.01  # TF decay 0.99 expressed as PyTorch momentum.

# The head averages a VALID [2, 7, 7] window: 2 time steps of Mixed_5c
# (16 input frames) and the full 7x7 map of a 224x224 input (224 / 32 = 7).
HEAD_POOL = (2, 7, 7)


def tf_same_padding(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding ``(front, back)`` for ``n`` cells."""
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


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
    """One stage of the network as :mod:`i3d.streaming` drives it.

    Every trunk endpoint and the head's pool implement it; the streaming
    engine needs nothing else from the model (see
    :meth:`InceptionI3d.stages`).
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


@dataclass(frozen=True)
class InferenceOptions:
    """The fast inference path, one switch per optimisation (all exact in
    fp32: they only reorder floating-point sums or select the same maxima).

    Every model runs it, by default, whenever it is in eval mode without
    autograd (``torch.no_grad`` or ``torch.inference_mode``): training,
    and anything that needs gradients, takes the reference path of plain
    convolution, BatchNorm and ReLU layers, and the parameters and state dict
    never change. :meth:`InceptionI3d.configure_inference` switches parts of
    it off (benchmarks time them one by one; :meth:`off` is the reference
    path everywhere).
    """

    channels_last: bool = True  # activations in channels-last 3D memory
    fold_batch_norm: bool = True  # BatchNorm folded into the convolution
    strided_pools: bool = True  # max pools as maxima of strided views, no padded copies
    fuse_relu: bool = True  # ReLU fused into oneDNN's convolution where PyTorch ships it (CPU)

    @classmethod
    def off(cls) -> InferenceOptions:
        """The reference path: every optimisation off."""
        return cls(**{f.name: False for f in fields(cls)})


OFF = InferenceOptions.off()
ON = InferenceOptions()


def _temporal_window(
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


def _inference_only(module: nn.Module) -> bool:
    """Whether the fast path may act: eval mode, no autograd."""
    return not module.training and not torch.is_grad_enabled()


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast runs convolutions in on ``x``'s device, or None:
    the fast path keeps its weights cached in that dtype instead of letting
    autocast cast them at every call."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None


class _Window3d(nn.Module):
    """Shared padding logic of SAME convolutions and max pools."""

    kernel: tuple[int, int, int]
    stride: tuple[int, int, int]
    options: InferenceOptions = ON

    def input_start(self, out_start: int, length: int) -> int:
        """First input cell that output cell ``out_start`` reads, for an input
        of ``length`` cells (padding aside)."""
        front, _ = tf_same_padding(length, self.kernel[0], self.stride[0])
        return max(self.stride[0] * out_start - front, 0)

    def output_length(self, length: int) -> int:
        """Output cells along time for ``length`` input cells."""
        return -(-length // self.stride[0])

    def _window(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, tuple[tuple[int, int], ...], Span]:
        """The cells of ``x`` the outputs need, TF SAME padding ``(front,
        back)`` for each of T, H, W, and the output span."""
        x, tf, tb, out_span = _temporal_window(x, span, self.kernel[0], self.stride[0], same=True)
        hpad = tf_same_padding(x.shape[3], self.kernel[1], self.stride[1])
        wpad = tf_same_padding(x.shape[4], self.kernel[2], self.stride[2])
        return x, ((tf, tb), hpad, wpad), out_span

    def _pad(self, x: torch.Tensor, span: Span, value: float) -> tuple[torch.Tensor, tuple[int, int, int] | None, Span]:
        """Pad ``x`` as TF SAME would. Returns the tensor, a symmetric padding
        to hand to the op instead (or None), and the output span."""
        x, pads, out_span = self._window(x, span)
        if all(f == b for f, b in pads):
            # Symmetric: let the kernel pad, which avoids a copy of the input.
            return x, tuple(f for f, _ in pads), out_span  # type: ignore[return-value]
        (tf, tb), (hf, hb), (wf, wb) = pads
        return F.pad(x, (wf, wb, hf, hb, tf, tb), value=value), None, out_span


class MaxPool3dSame(_Window3d):
    """Max pool with TF SAME padding; padded cells are never selected."""

    def __init__(self, kernel_size: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel = tuple(kernel_size)  # type: ignore[assignment]
        self.stride = tuple(stride)  # type: ignore[assignment]

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        if self.options.strided_pools and _inference_only(self):
            x, pads, out_span = self._window(x, span)
            return ops.max_pool_strided(x, self.kernel, self.stride, pads), out_span
        x, padding, out_span = self._pad(x, span, value=-math.inf)
        # max_pool3d's own padding never selects a padded cell either.
        return F.max_pool3d(x, self.kernel, self.stride, padding=padding or 0), out_span

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_span(x, Span.full(x.shape[2]))[0]


class Unit3D(_Window3d):
    """SAME convolution, then BatchNorm and ReLU (Sonnet's ``Unit3D``).

    With :class:`InferenceOptions` on (see :meth:`InceptionI3d.configure_inference`)
    and in eval mode without autograd, it runs one convolution with the
    BatchNorm folded into its weights and bias, computed once and cached
    until a parameter or statistic changes (in place, by the optimizer or
    ``load_state_dict``, or by a move to another device or dtype).
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
        self._cache: tuple[tuple, torch.Tensor, torch.Tensor | None] | None = None

    def __getstate__(self) -> dict:
        # Copies and pickles leave the folded weights behind: they are
        # recomputed on first use.
        return {**super().__getstate__(), "_cache": None}

    @property
    def pointwise(self) -> bool:
        return self.kernel == (1, 1, 1) and self.stride == (1, 1, 1)

    def cache_key(self, dtype: torch.dtype | None = None) -> tuple:
        """Identifies the parameters' current values (storage and in-place
        version), the options and the compute dtype."""
        tensors = [self.conv3d.weight, self.conv3d.bias]
        if self.bn is not None:
            tensors += [self.bn.weight, self.bn.bias, self.bn.running_mean, self.bn.running_var]
        return (self.options, dtype, *((t.data_ptr(), t._version) if t is not None else None for t in tensors))

    def inference_weights(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight, bias)`` of the convolution the fast path runs: with the
        BatchNorm folded in if ``options.fold_batch_norm``, in channels-last
        layout if ``options.channels_last``, cast to ``dtype`` (autocast's)
        if given. Cached."""
        key = self.cache_key(dtype)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1], self._cache[2]
        with torch.no_grad():
            weight, bias = self.conv3d.weight.detach(), self.conv3d.bias
            bias = bias.detach() if bias is not None else None
            if self.options.fold_batch_norm and self.bn is not None:
                # In float64, so that folding adds no rounding of its own.
                bn = self.bn
                scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                shift = bn.bias.double() - bn.running_mean.double() * scale
                if bias is not None:
                    shift = shift + bias.double() * scale
                weight = (weight.double() * scale.view(-1, 1, 1, 1, 1)).to(weight.dtype)
                bias = shift.to(weight.dtype)
            if dtype is not None:
                weight, bias = weight.to(dtype), bias.to(dtype) if bias is not None else None
            if self.options.channels_last:
                weight = weight.contiguous(memory_format=torch.channels_last_3d)
        self._cache = (key, weight, bias)
        return weight, bias

    @property
    def folded(self) -> bool:
        return self.bn is None or self.options.fold_batch_norm

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        if self.options != OFF and _inference_only(self):
            return self._forward_fast(x, span)
        if self.pointwise:
            y = self.conv3d(x)
            out_span = span
        else:
            x, padding, out_span = self._pad(x, span, value=0.0)
            conv = self.conv3d
            y = F.conv3d(x, conv.weight, conv.bias, conv.stride, padding if padding is not None else 0)
        if self.bn is not None:
            y = self.bn(y)
        if self.activation:
            y = F.relu(y, inplace=True)
        return y, out_span

    def _fuse_relu(self, x: torch.Tensor, weight: torch.Tensor) -> bool:
        """Whether oneDNN's fused ReLU applies: CPU, float32, no autocast."""
        return (
            ops.FUSED_RELU
            and self.options.fuse_relu
            and self.activation
            and self.folded
            and x.device.type == "cpu"
            and x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
        )

    def _forward_fast(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        dtype = _autocast_dtype(x)
        weight, bias = self.inference_weights(dtype)
        x = x.to(dtype) if dtype is not None else x  # autocast would cast it anyway
        fused = self._fuse_relu(x, weight)
        if self.pointwise and self.options.channels_last:
            y = ops.pointwise_conv(x, weight.flatten(1), bias, relu=fused)
            out_span = span
        else:
            x, pads, out_span = self._window(x, span)
            x, padding = ops.pad_zeros(x, pads, self.options.channels_last)
            if fused:
                y = ops.conv3d_relu(x, weight, bias, self.stride, padding)
            else:
                y = F.conv3d(x, weight, bias, self.stride, padding)
        if not self.folded:
            y = self.bn(y)  # type: ignore[misc]
        if self.activation and not fused:
            y = F.relu(y, inplace=True)
        return y, out_span

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_span(x, Span.full(x.shape[2]))[0]


class InceptionModule(nn.Module):
    """Four branches concatenated on channels: 1x1; 1x1 then 3x3; 1x1 then
    3x3; 3x3 max pool then 1x1. ``out_channels`` lists
    ``[b0, b1a, b1b, b2a, b2b, b3b]``."""

    def __init__(self, in_channels: int, out_channels: list[int], name: str) -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3b = out_channels
        self.name = name
        self.b0 = Unit3D(in_channels, c0, name=name + "/Branch_0/Conv3d_0a_1x1")
        self.b1a = Unit3D(in_channels, c1a, name=name + "/Branch_1/Conv3d_0a_1x1")
        self.b1b = Unit3D(c1a, c1b, kernel_shape=(3, 3, 3), name=name + "/Branch_1/Conv3d_0b_3x3")
        self.b2a = Unit3D(in_channels, c2a, name=name + "/Branch_2/Conv3d_0a_1x1")
        self.b2b = Unit3D(c2a, c2b, kernel_shape=(3, 3, 3), name=name + "/Branch_2/Conv3d_0b_3x3")
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, c3b, name=name + "/Branch_3/Conv3d_0b_1x1")
        self.out_channels = c0 + c1b + c2b + c3b

    def output_length(self, length: int) -> int:
        return length  # every branch has stride 1

    def input_start(self, out_start: int, length: int) -> int:
        """See :meth:`Unit3D.input_start`."""
        chains = ((self.b0,), (self.b1a, self.b1b), (self.b2a, self.b2b), (self.b3a, self.b3b))
        starts = []
        for chain in chains:
            o = out_start
            for unit in reversed(chain):
                o = unit.input_start(o, length)
            starts.append(o)
        return min(starts)

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        y0, s0 = self.b0.forward_span(x, span)
        y1, s1 = self.b1b.forward_span(*self.b1a.forward_span(x, span))
        y2, s2 = self.b2b.forward_span(*self.b2a.forward_span(x, span))
        y3, s3 = self.b3b.forward_span(*self.b3a.forward_span(x, span))
        out = s0.intersect(s1).intersect(s2).intersect(s3)
        # Inside a window the 3x3 branches lose a cell of context at each
        # end that the 1x1 branch keeps: crop all to the common cells.
        ys = [y[:, :, out.start - s.start : out.stop - s.start] for y, s in ((y0, s0), (y1, s1), (y2, s2), (y3, s3))]
        return torch.cat(ys, dim=1), out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_span(x, Span.full(x.shape[2]))[0]


class HeadPool(nn.Module):
    """The head's VALID average pool over ``[2, 7, 7]`` cells of Mixed_5c,
    shrunk to the extent that is left for small inputs (fewer than 2 time
    steps or 7x7 cells)."""

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        kt = min(HEAD_POOL[0], span.length)
        kh, kw = min(HEAD_POOL[1], x.shape[3]), min(HEAD_POOL[2], x.shape[4])
        x, _, _, out_span = _temporal_window(x, span, kt, 1, same=False)
        return F.avg_pool3d(x, (kt, kh, kw), stride=1), out_span

    def output_length(self, length: int) -> int:
        return length - min(HEAD_POOL[0], length) + 1

    def input_start(self, out_start: int, length: int) -> int:
        return out_start  # output o averages cells o and o + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_span(x, Span.full(x.shape[2]))[0]


# (name, in_channels, [b0, b1a, b1b, b2a, b2b, b3b]) from DeepMind's i3d.py.
_MIXED: dict[str, tuple[int, list[int]]] = {
    "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "Mixed_4b": (128 + 192 + 96 + 64, [192, 96, 208, 16, 48, 64]),
    "Mixed_4c": (192 + 208 + 48 + 64, [160, 112, 224, 24, 64, 64]),
    "Mixed_4d": (160 + 224 + 64 + 64, [128, 128, 256, 24, 64, 64]),
    "Mixed_4e": (128 + 256 + 64 + 64, [112, 144, 288, 32, 64, 64]),
    "Mixed_4f": (112 + 288 + 64 + 64, [256, 160, 320, 32, 128, 128]),
    "Mixed_5b": (256 + 320 + 128 + 128, [256, 160, 320, 32, 128, 128]),
    "Mixed_5c": (256 + 320 + 128 + 128, [384, 192, 384, 48, 128, 128]),
}

FEATURE_DIM = 384 + 384 + 128 + 128  # channels of Mixed_5c


class InceptionI3d(nn.Module):
    """Inflated Inception-v1 for video, as in DeepMind's ``kinetics-i3d``.

    Args:
        num_classes: number of logits.
        spatial_squeeze: if True, ``forward`` returns ``(B, num_classes, T')``
            (averaging the head's spatial positions when the input is larger
            than 224x224); if False, ``(B, num_classes, T', H', W')``.
        final_endpoint: build the network up to this endpoint (one of
            :data:`ENDPOINTS`); ``forward`` returns its output.
        name: scope name, kept for compatibility.
        in_channels: 3 for RGB, 2 for optical flow.
        dropout_keep_prob: probability of *keeping* an activation before the
            logits (the PyTorch port passed it as the drop probability).

    Input: ``(B, in_channels, T, H, W)`` in ``[-1, 1]``, any ``T, H, W >= 1``.
    The head averages a ``[2, 7, 7]`` window of Mixed_5c without padding, as
    DeepMind's does; where Mixed_5c is smaller than that (fewer than 9
    frames, or frames smaller than 193 pixels), the window shrinks to the
    extent that is left, so every input of at least one frame gives output.
    For ``T >= 9`` and 224x224 input, ``T' = ceil(T / 8) - 1``.
    """

    def __init__(
        self,
        num_classes: int = 400,
        spatial_squeeze: bool = True,
        final_endpoint: str = "Logits",
        name: str = "inception_i3d",
        in_channels: int = 3,
        dropout_keep_prob: float = 0.5,
    ) -> None:
        if final_endpoint not in ENDPOINTS:
            raise ValueError(f"unknown final_endpoint {final_endpoint!r}; choose one of {', '.join(ENDPOINTS)}")
        if not 0.0 < dropout_keep_prob <= 1.0:
            raise ValueError(f"dropout_keep_prob must be in (0, 1], got {dropout_keep_prob}")
        super().__init__()
        self.num_classes = num_classes
        self.spatial_squeeze = spatial_squeeze
        self.final_endpoint = final_endpoint
        self.name = name
        self.in_channels = in_channels
        self.dropout_keep_prob = dropout_keep_prob

        last = ENDPOINTS.index(final_endpoint)
        layers: dict[str, nn.Module] = {
            "Conv3d_1a_7x7": Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2), name="Conv3d_1a_7x7"),
            "MaxPool3d_2a_3x3": MaxPool3dSame((1, 3, 3), (1, 2, 2)),
            "Conv3d_2b_1x1": Unit3D(64, 64, name="Conv3d_2b_1x1"),
            "Conv3d_2c_3x3": Unit3D(64, 192, (3, 3, 3), name="Conv3d_2c_3x3"),
            "MaxPool3d_3a_3x3": MaxPool3dSame((1, 3, 3), (1, 2, 2)),
            "MaxPool3d_4a_3x3": MaxPool3dSame((3, 3, 3), (2, 2, 2)),
            "MaxPool3d_5a_2x2": MaxPool3dSame((2, 2, 2), (2, 2, 2)),
        }
        for endpoint in ENDPOINTS[: min(last + 1, ENDPOINTS.index("Logits"))]:
            if endpoint in _MIXED:
                cin, channels = _MIXED[endpoint]
                layers[endpoint] = InceptionModule(cin, channels, endpoint)
            # Registration order is network order, as in the PyTorch port.
            self.add_module(endpoint, layers[endpoint])
        self._features = [e for e in ENDPOINTS if e in self._modules]

        if last >= ENDPOINTS.index("Logits"):
            self.avg_pool = HeadPool()
            self.dropout = nn.Dropout(p=1.0 - dropout_keep_prob)
            self.logits = self._make_logits(num_classes)

    def _make_logits(self, num_classes: int) -> Unit3D:
        return Unit3D(FEATURE_DIM, num_classes, activation_fn=False, use_batch_norm=False, use_bias=True, name="logits")

    def replace_logits(self, num_classes: int) -> None:
        """Swap the classifier for a fresh one with ``num_classes`` outputs."""
        if not hasattr(self, "logits"):
            raise ValueError(f"the model ends at {self.final_endpoint}; it has no logits to replace")
        self.num_classes = num_classes
        device = self.logits.conv3d.weight.device
        self.logits = self._make_logits(num_classes).to(device)
        self.logits.options = self.inference_options  # a prepared model stays prepared

    reset_classifier = replace_logits

    def configure_inference(self, options: InferenceOptions | None = None) -> InceptionI3d:
        """Set the fast inference path's switches, in place (``None``: all
        on, the default; :meth:`InferenceOptions.off`: the reference path).
        It acts only in eval mode without autograd; parameters and state
        dict are untouched, so the model still trains as before."""
        options = InferenceOptions() if options is None else options
        for module in self.modules():
            if isinstance(module, _Window3d):
                module.options = options
        return self

    @property
    def inference_options(self) -> InferenceOptions:
        return self.Conv3d_1a_7x7.options  # type: ignore[return-value]

    # ---- the stages, for streaming -----------------------------------------

    @property
    def trunk(self) -> tuple[str, ...]:
        """The trunk endpoints this model has, in network order."""
        return tuple(self._features)

    @property
    def has_logits(self) -> bool:
        return hasattr(self, "logits")

    def stages(self, stop: str) -> list[tuple[str, SpanStage]]:
        """``(name, stage)`` in network order up to ``stop``: a trunk
        endpoint, or ``"avg_pool"`` for the trunk followed by the head's
        pool (then :meth:`classify` turns the result into logits)."""
        if stop == "avg_pool":
            if not self.has_logits:
                raise ValueError(f"the model ends at {self.final_endpoint}; it has no head")
            names = list(self._features) + ["avg_pool"]
        elif stop in self._features:
            names = self._features[: self._features.index(stop) + 1]
        else:
            raise ValueError(f"unknown endpoint {stop!r}; choose one of {', '.join(self._features)}")
        return [(name, getattr(self, name)) for name in names]

    def temporal_stride(self, stop: str) -> int:
        """Input frames per output cell along time at ``stop`` (a trunk endpoint)."""
        stride = 1
        for _, stage in self.stages(stop):
            stride *= getattr(stage, "stride", (1,))[0]
        return stride

    # ---- forward pieces ---------------------------------------------------

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 5:
            raise ValueError(f"expected input (B, C, T, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})")
        if x.shape[2] < MIN_FRAMES or x.shape[3] < MIN_SIZE or x.shape[4] < MIN_SIZE:
            raise ValueError(f"input must have T, H, W >= 1, got shape {tuple(x.shape)}")

    def forward_endpoints_span(
        self, x: torch.Tensor, span: Span, endpoints: tuple[str, ...] | None = None, stop: str | None = None
    ) -> dict[str, tuple[torch.Tensor, Span]]:
        """Run the convolutional trunk on a temporal window.

        Args:
            x: ``(B, C, t, H, W)``, cells ``span.start .. span.stop - 1`` of
                the full input.
            span: where ``x`` lies in the full input.
            endpoints: names to return (default: only ``stop``).
            stop: last trunk endpoint to compute (default: the last built).

        Returns: ``{name: (tensor, span)}``, each span in that endpoint's
        own time cells.
        """
        self._check_input(x)
        if x.shape[2] != span.size:
            raise ValueError(f"input has {x.shape[2]} frames but span {span} has {span.size}")
        stop = stop or self._features[-1]
        if stop not in self._features:
            raise ValueError(f"endpoint {stop!r} is not part of this model (built up to {self.final_endpoint})")
        wanted = set(endpoints or (stop,))
        out: dict[str, tuple[torch.Tensor, Span]] = {}
        for name in self._features:
            x, span = self._modules[name].forward_span(x, span)  # type: ignore[union-attr]
            if name in wanted:
                out[name] = (x, span)
            if name == stop:
                break
        return out

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> Mixed_5c ``(B, 1024, ceil(T/8), ceil(H/32), ceil(W/32))``."""
        return self.forward_endpoints_span(x, Span.full(x.shape[2]), stop="Mixed_5c")["Mixed_5c"][0]

    def forward_endpoints(self, x: torch.Tensor, endpoints: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """Read out intermediate endpoints, e.g. ``("Mixed_4f", "Mixed_5c")``."""
        unknown = [e for e in endpoints if e not in self._features]
        if unknown:
            raise ValueError(f"unknown or unbuilt endpoints {unknown}; available: {', '.join(self._features)}")
        last = max(endpoints, key=self._features.index)
        result = self.forward_endpoints_span(x, Span.full(x.shape[2]), endpoints, stop=last)
        return {name: t for name, (t, _) in result.items()}

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mixed_5c ``(B, 1024, t, h, w)`` -> logits as :meth:`forward` returns them
        (or the pooled features if ``pre_logits``)."""
        return self._head_span(x, Span.full(x.shape[2]), pre_logits)[0]

    def _head_span(self, x: torch.Tensor, span: Span, pre_logits: bool = False) -> tuple[torch.Tensor, Span]:
        x, span = self.avg_pool.forward_span(x, span)  # (B, 1024, T', H', W')
        if pre_logits:
            return x, span
        x = self.classify(x)
        if self.final_endpoint == "Predictions":
            return torch.softmax(x.mean(dim=2), dim=1), span  # (B, num_classes)
        return x, span

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, 1024, T', H', W')`` -> logits
        ``(B, num_classes, T')``, or ``(B, num_classes, T', H', W')`` without
        ``spatial_squeeze``. Acts on each time step alone."""
        x = self.logits(self.dropout(pooled))  # (B, num_classes, T', H', W')
        if self.spatial_squeeze or self.final_endpoint == "Predictions":
            x = x.mean(dim=(3, 4))  # (B, num_classes, T')
        return x

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> pooled Mixed_5c ``(B, 1024, T', H', W')``
        (``H' = W' = 1`` for 224x224 input)."""
        return self.avg_pool(self.forward_features(x))

    def forward_span(self, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
        """:meth:`forward` on a temporal window of a longer input (see :class:`Span`)."""
        feats, span = self.forward_endpoints_span(x, span)[self._features[-1]]
        if not hasattr(self, "logits"):
            return feats, span
        return self._head_span(feats, span)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, T, H, W)`` -> per-time logits ``(B, num_classes, T')``
        (see the class docstring for other endpoints and shapes)."""
        return self.forward_span(x, Span.full(x.shape[2]))[0]
