"""The fast inference path of :mod:`i3d.model`, behind one hook.

Every SAME layer of the network asks :func:`active` first; when it is true
the layer hands its window to :func:`unit_span` (convolution, BatchNorm,
ReLU) or :func:`pool_span` (max pool) here, and otherwise runs its plain
PyTorch reference code. The path is on, by default, whenever the model is
in eval mode without autograd (``torch.no_grad`` or
``torch.inference_mode``); :class:`InferenceOptions` switches its parts.

What it does, all exact in fp32 (it only reorders floating-point sums or
selects the same maxima):

* channels-last activations from the first convolution to the head;
* BatchNorm folded into the convolution, in float64, computed once and
  cached until a parameter changes (:class:`FoldCache`);
* max pools as maxima of strided views, without padded copies, and on the
  CPU a slab of frames at a time that stays in the cache;
* 1x1 convolutions as matrix multiplies over the channels, and oneDNN's
  fused convolution + ReLU on the CPU, in float32 and in bfloat16
  (:mod:`i3d.ops`);
* in each Inception module, the 1x1 branch and the narrow 1x1 that feeds a
  3x3 as one matrix multiply (:func:`merged_pointwise`);
* in bfloat16 on the CPU, the stem's seven time taps folded into its three
  input channels (:func:`i3d.ops.fold_time`);
* on the CPU, freed activation memory kept for the next pass instead of
  being returned to the kernel and faulted in again (:mod:`i3d.heap`, set
  by :func:`i3d.runtime.prepare`).

Tensor layout: ``(B, C, T, H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from i3d import ops

if TYPE_CHECKING:  # the layers call in; this module never calls them
    from i3d.layers import MaxPool3dSame, Span, Unit3D
    from i3d.model import InceptionModule

__all__ = [
    "InferenceOptions",
    "FoldCache",
    "StackedWeights",
    "active",
    "exporting",
    "unit_span",
    "pool_span",
    "merged_pointwise",
    "inception_branches",
]


@dataclass(frozen=True)
class InferenceOptions:
    """The fast inference path, one switch per optimisation (all exact in
    fp32: they only reorder floating-point sums or select the same maxima).

    Every model runs it, by default, whenever it is in eval mode without
    autograd (``torch.no_grad`` or ``torch.inference_mode``): training,
    and anything that needs gradients, takes the reference path of plain
    convolution, BatchNorm and ReLU layers, and the parameters and state dict
    never change. :meth:`i3d.model.InceptionI3d.configure_inference` switches
    parts of it off (benchmarks time them one by one; :meth:`off` is the
    reference path everywhere).
    """

    channels_last: bool = True  # activations in channels-last 3D memory
    fold_batch_norm: bool = True  # BatchNorm folded into the convolution
    strided_pools: bool = True  # max pools as maxima of strided views, no padded copies
    fuse_relu: bool = True  # ReLU fused into oneDNN's convolution where PyTorch ships it (CPU, fp32 and bf16)
    merge_pointwise: bool = True  # an Inception module's 1x1 branch and its narrowest 1x1 as one matmul
    fold_time_taps: bool = True  # CPU bf16: the stem's time taps folded into its 3 input channels (i3d.ops.fold_time)
    keep_freed_memory: bool = True  # CPU: freed activations stay in the process for the next pass (i3d.heap)

    @classmethod
    def off(cls) -> InferenceOptions:
        """The reference path: every optimisation off."""
        return cls(**{f.name: False for f in fields(cls)})


OFF = InferenceOptions.off()
ON = InferenceOptions()

_is_exporting = getattr(getattr(torch, "compiler", None), "is_exporting", None)  # torch >= 2.5


def active(layer: nn.Module) -> bool:
    """The hook: whether ``layer`` runs the fast path (some option on, eval
    mode, no autograd, not being exported: exports trace the reference
    path, whose operators every runtime has)."""
    options: InferenceOptions = getattr(layer, "options", ON)
    return options != OFF and not layer.training and not torch.is_grad_enabled() and not exporting()


def exporting() -> bool:
    """Whether an export traces the model (``torch.export``, ``torch.onnx``,
    ``torch.jit.trace``): the layers then run on whole inputs, with no
    branch on sizes (see :mod:`i3d.export`)."""
    return torch.jit.is_tracing() or (_is_exporting is not None and _is_exporting())


def _autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """The dtype autocast runs convolutions in on ``x``'s device, or None:
    the fast path keeps its weights cached in that dtype instead of letting
    autocast cast them at every call."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None


class FoldCache:
    """The convolution weights the fast path runs for one :class:`Unit3D`,
    computed once and kept until a parameter or statistic changes (in place,
    by the optimizer or ``load_state_dict``, or by a move to another device
    or dtype) or the options or compute dtype do.

    A change is seen through each tensor's storage and in-place version.
    Inference tensors (a model built inside ``torch.inference_mode``) keep
    no version: they can only change in place inside inference mode, and
    :meth:`clear` is called by ``load_state_dict``; other in-place writes to
    them need :meth:`i3d.model.InceptionI3d.configure_inference` afterwards.
    """

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._weights: tuple[torch.Tensor, torch.Tensor | None] | None = None

    def clear(self) -> None:
        self._key = self._weights = None

    @staticmethod
    def key(unit: Unit3D, dtype: torch.dtype | None) -> tuple:
        """Identifies the parameters' current values, the options and the compute dtype."""
        tensors = [unit.conv3d.weight, unit.conv3d.bias]
        if unit.bn is not None:
            tensors += [unit.bn.weight, unit.bn.bias, unit.bn.running_mean, unit.bn.running_var]
        versions = (None if t is None else (t.data_ptr(), None if t.is_inference() else t._version) for t in tensors)
        return (unit.options, dtype, *versions)

    def weights(self, unit: Unit3D, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight, bias)`` of the convolution the fast path runs: with the
        BatchNorm folded in if ``options.fold_batch_norm``, in channels-last
        layout if ``options.channels_last``, cast to ``dtype`` (autocast's)
        if given."""
        key = self.key(unit, dtype)
        if self._weights is not None and self._key == key:
            return self._weights
        options = unit.options
        with torch.no_grad():
            weight, bias = unit.conv3d.weight.detach(), unit.conv3d.bias
            bias = bias.detach() if bias is not None else None
            if options.fold_batch_norm and unit.bn is not None:
                # In float64, so that folding adds no rounding of its own.
                bn = unit.bn
                scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                shift = bn.bias.double() - bn.running_mean.double() * scale
                if bias is not None:
                    shift = shift + bias.double() * scale
                weight = (weight.double() * scale.view(-1, 1, 1, 1, 1)).to(weight.dtype)
                bias = shift.to(weight.dtype)
            if dtype is not None:
                weight, bias = weight.to(dtype), bias.to(dtype) if bias is not None else None
            if options.channels_last:
                weight = weight.contiguous(memory_format=torch.channels_last_3d)
        self._key, self._weights = key, (weight, bias)
        return weight, bias


class StackedWeights:
    """The folded weights of units that read the same input, stacked along
    the output channels for one matrix multiply; restacked whenever a
    unit's :class:`FoldCache` computes new ones."""

    def __init__(self) -> None:
        # The units' weights it was stacked from, and the stacked weight and bias.
        self._cache: tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]] | None = None

    def weights(self, units: tuple[Unit3D, ...], dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(weight (sum of C', C), bias)`` of ``units`` (pointwise, folded), in order."""
        parts = [unit.fold_cache.weights(unit, dtype) for unit in units]
        if self._cache is None or any(a is not w for a, (w, _) in zip(self._cache[0], parts)):
            weight = torch.cat([w.flatten(1) for w, _ in parts])
            bias = None
            if any(b is not None for _, b in parts):
                bias = torch.cat([b if b is not None else w.new_zeros(w.shape[0]) for w, b in parts])
            self._cache = ([w for w, _ in parts], (weight, bias))
        return self._cache[1]


def _folded(unit: Unit3D) -> bool:
    return unit.bn is None or unit.options.fold_batch_norm


def _fuse_relu(unit: Unit3D, x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN's fused ReLU applies: CPU, input and weights both
    float32, or both bfloat16 (autocast's, cast by the fast path itself)
    where oneDNN runs bfloat16 (:func:`i3d.ops.onednn_bf16`)."""
    return (
        ops.FUSED_RELU
        and unit.options.fuse_relu
        and unit.activation
        and _folded(unit)
        and x.device.type == "cpu"
        and x.dtype == weight.dtype
        and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and ops.onednn_bf16()))
    )


def _fold_time(unit: Unit3D, x: torch.Tensor) -> bool:
    """Whether the convolution runs on :func:`i3d.ops.fold_time`'s input.

    oneDNN's bfloat16 kernels multiply input channels in pairs, so the RGB
    stem's 3 channels run as 4 and a quarter of its work is wasted; with
    its 7 time taps in the channels, 21 run as 22. On 2 Zen 4 cores at 64
    frames the stem's convolution took 121 ms instead of 156, and the
    folding 9. In float32, and with an even channel count (flow's 2),
    nothing is wasted and the folding would not pay.
    """
    return (
        unit.options.fold_time_taps
        and unit.options.channels_last
        and x.dtype == torch.bfloat16
        and x.shape[1] % 2 == 1
        and unit.kernel[0] > 1
    )


def unit_span(unit: Unit3D, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span]:
    """:meth:`Unit3D.forward_span` on the fast path."""
    dtype = _autocast_dtype(x)
    weight, bias = unit.fold_cache.weights(unit, dtype)
    x = x.to(dtype) if dtype is not None else x  # autocast would cast it anyway
    fused = _fuse_relu(unit, x, weight)
    if unit.pointwise and unit.options.channels_last:
        y = ops.pointwise_conv(x, weight.flatten(1), bias, relu=fused)
        out_span = span
    else:
        x, pads, out_span = unit.window(x, span)
        x, padding = ops.pad_zeros(x, pads, unit.options.channels_last)
        stride = unit.stride
        if fused and _fold_time(unit, x):
            x = ops.fold_time(x, unit.kernel[0], unit.stride[0], padding[0])
            weight = ops.fold_time_weight(weight)
            stride, padding = (1, *unit.stride[1:]), [0, *padding[1:]]
        if fused:
            y = ops.conv3d_relu(x, weight, bias, stride, padding)
        else:
            y = F.conv3d(x, weight, bias, stride, padding)
    if not _folded(unit):
        y = unit.bn(y)  # type: ignore[misc]
    if unit.activation and not fused:
        y = F.relu(y, inplace=True)
    return y, out_span


def pool_span(pool: MaxPool3dSame, x: torch.Tensor, span: Span) -> tuple[torch.Tensor, Span] | None:
    """A SAME max pool's window on the fast path, or None where its option
    is off (the pool then runs its reference code)."""
    if not pool.options.strided_pools:
        return None
    x, pads, out_span = pool.window(x, span)
    slabs = ops.pool_slab_frames(x)
    return ops.max_pool_strided(
        x, pool.kernel, pool.stride, pads, nonnegative=pool.nonnegative, slab_frames=slabs
    ), out_span


def merged_pointwise(module: InceptionModule, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """An Inception module's 1x1 branch (``b0``) and the 1x1 before its
    narrower 3x3 (``b2a``) on its input ``x`` as one matrix multiply:
    ``(b0's output, a view; b2a's, channels-last)``, or None where
    ``merge_pointwise`` does not apply.

    ``b2a`` has 16 to 48 channels, and its matrix multiply alone runs at
    about half the rate of the wider ones. ``b0``'s channels go to the
    concatenation as a view; ``b2a``'s are copied out for the 3x3
    convolution, which reads its input contiguous. Each output channel is
    the same dot product as before.
    """
    units = (module.b0, module.b2a)
    options = module.b0.options
    if not (options.merge_pointwise and options.channels_last and all(_folded(u) and u.activation for u in units)):
        return None
    dtype = _autocast_dtype(x)
    weight, bias = module.stacked.weights(units, dtype)
    x = x.to(dtype) if dtype is not None else x
    fused = _fuse_relu(module.b0, x, weight)
    y = ops.pointwise_conv(x, weight, bias, relu=fused)  # (B, c0 + c2a, T, H, W)
    if not fused:
        y = F.relu(y, inplace=True)
    c0 = module.b0.conv3d.out_channels
    return y[:, :c0], y[:, c0:].contiguous(memory_format=torch.channels_last_3d)


def inception_branches(module: InceptionModule, x: torch.Tensor, span: Span) -> list[tuple[torch.Tensor, Span]] | None:
    """An Inception module's four branches ``(output, span)`` on the fast
    path, with ``b0`` and ``b2a`` as one matrix multiply
    (:func:`merged_pointwise`); or None where that does not apply (the
    module then runs its branches one by one)."""
    merged = merged_pointwise(module, x)
    if merged is None:
        return None
    y0, y2a = merged
    return [
        (y0, span),
        module.b1b.forward_span(*module.b1a.forward_span(x, span)),
        module.b2b.forward_span(y2a, span),
        module.b3b.forward_span(*module.b3a.forward_span(x, span)),
    ]
