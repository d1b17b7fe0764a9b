"""Tensor operations of the fast inference path (see :class:`i3d.fast.InferenceOptions`).

Layouts: ``(B, C, T, H, W)`` tensors, in PyTorch's default contiguous layout
or in channels-last 3D (channels innermost in memory), which the fast path
keeps from the first convolution to the head.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["FUSED_RELU", "conv3d_relu", "max_pool_strided", "onednn_bf16", "pad_zeros", "pointwise_conv"]

# oneDNN's fused convolution/linear + ReLU, which PyTorch's CPU builds ship
# for its compiler (torch.compile); absent from some builds.
_MKLDNN = getattr(torch.ops, "mkldnn", None)
FUSED_RELU = _MKLDNN is not None and hasattr(_MKLDNN, "_convolution_pointwise")


@functools.cache
def onednn_bf16() -> bool:
    """Whether oneDNN runs bfloat16 on this CPU (AVX-512 BW/VL/DQ, AMX or
    AVX-NE-CONVERT); elsewhere its fused ops refuse bfloat16 and PyTorch's
    own kernels run it instead."""
    return FUSED_RELU and bool(_MKLDNN._is_mkldnn_bf16_supported())


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and x.shape[1] > 1


def _empty_like_layout(x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    fmt = torch.channels_last_3d if _is_channels_last(x) else torch.contiguous_format
    return torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt)


def _strided(x: torch.Tensor, dim: int, start: int, count: int, step: int) -> torch.Tensor:
    """Cells ``start, start + step, ...`` (``count`` of them) along ``dim``, a view."""
    index = [slice(None)] * x.dim()
    index[dim] = slice(start, start + step * (count - 1) + 1, step)
    return x[tuple(index)]


def max_pool_strided(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    *,
    nonnegative: bool = False,
) -> torch.Tensor:
    """Max pool of ``x`` ``(B, C, T, H, W)`` with ``padding[d] = (front, back)``
    cells of -inf along each of the last three dims, never materialised.

    Max is separable, so the pool runs one axis at a time; along an axis,
    output ``j`` is the maximum of the strided views ``x[s*j - front + r]``,
    ``r < kernel``, each over the outputs it exists for. Offset ``r = front``
    (the cell ``s*j``) exists for every output whenever the padding is at
    most ``kernel - 1`` cells, as TF "SAME" padding is, so it seeds the
    result. Exact: it selects the same maxima as ``max_pool3d``.

    The seed is not copied on its own: its first maximum, with the offset
    that exists for the most outputs, is written straight into the result,
    which saves one of the ``kernel`` passes over the data per axis (a
    third of a 3-wide pool's time, ``benchmarks/profile_layers.py``).

    ``nonnegative``: no element of ``x`` has its sign bit set except zeros
    (the input follows a ReLU). bfloat16 is then compared as int16, which
    orders such bit patterns as their values, and runs ~35% faster than
    bfloat16's own maximum, which widens every element to float32 and back.
    oneDNN's ReLU writes -0.0 for negative inputs; as int16 it is the least
    value, so a window of zeros may give +0.0 where ``max_pool3d`` gives
    -0.0: the same value.
    """
    if nonnegative and x.dtype == torch.bfloat16:
        return max_pool_strided(x.view(torch.int16), kernel, stride, padding).view(torch.bfloat16)
    for d, k, s, (front, back) in zip(range(2, 5), kernel, stride, padding):
        if k == 1 and s == 1:
            continue
        n = x.shape[d]
        out_len = (n + front + back - k) // s + 1
        shape = list(x.shape)
        shape[d] = out_len
        out = _empty_like_layout(x, tuple(shape))
        seed = _strided(x, d, 0, out_len, s)  # r = front: cell s*j
        # Each other offset r: the outputs [first, last) whose cell s*j - front + r lies inside x.
        covered = {
            r: (max(0, -(-(front - r) // s)), min(out_len, (n - 1 + front - r) // s + 1))
            for r in range(k)
            if r != front
        }
        others = sorted(covered, key=lambda r: covered[r][0] - covered[r][1])  # the most outputs first
        if not others or covered[others[0]][1] <= covered[others[0]][0]:
            out.copy_(seed)
        else:
            r = others.pop(0)  # the offset that exists for the most outputs
            first, last = covered[r]
            torch.maximum(
                seed.narrow(d, first, last - first),
                _strided(x, d, s * first - front + r, last - first, s),
                out=out.narrow(d, first, last - first),
            )
            for a, b in ((0, first), (last, out_len)):  # where only the seed exists
                if b > a:
                    out.narrow(d, a, b - a).copy_(seed.narrow(d, a, b - a))
        for r in others:
            first, last = covered[r]
            if last > first:
                target = out.narrow(d, first, last - first)
                torch.maximum(target, _strided(x, d, s * first - front + r, last - first, s), out=target)
        x = out
    return x


def conv3d_relu(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, ...], padding: list[int]
) -> torch.Tensor:
    """``relu(conv3d(x))`` in one oneDNN call (CPU, float32 or bfloat16;
    needs :data:`FUSED_RELU`)."""
    return _MKLDNN._convolution_pointwise(x, weight, bias, padding, stride, [1, 1, 1], 1, "relu", [], "")


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool) -> torch.Tensor:
    """A 1x1x1 convolution ``(B, C, T, H, W)`` -> ``(B, C', T, H, W)`` as one
    matrix multiply over the channels of ``x`` (no copy if it is channels-last);
    ``weight`` is ``(C', C)``. The result is channels-last too."""
    # (B, T, H, W, C): already contiguous if x is channels-last. The head's
    # pooled input is not, and a strided bf16 matrix multiply runs 50x slower
    # than a copy and a contiguous one (3.2 ms against 0.07 ms, 7x1024x400).
    rows = x.movedim(1, -1).contiguous()
    if relu:
        y = _MKLDNN._linear_pointwise(rows, weight, bias, "relu", [], "")
    else:
        y = F.linear(rows, weight, bias)
    return y.movedim(-1, 1)


def pad_zeros(
    x: torch.Tensor, pads: tuple[tuple[int, int], ...], channels_last: bool
) -> tuple[torch.Tensor, list[int]]:
    """``x`` in the fast path's layout, and the symmetric padding to give the
    convolution; asymmetric padding (only the stride-2 stem on even sizes)
    is written with the layout change, in one copy."""
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    if all(f == b for f, b in pads):
        return x.contiguous(memory_format=fmt), [f for f, _ in pads]
    shape = (*x.shape[:2], *(n + f + b for n, (f, b) in zip(x.shape[2:], pads)))
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=fmt).zero_()
    (tf, _), (hf, _), (wf, _) = pads
    out[:, :, tf : tf + x.shape[2], hf : hf + x.shape[3], wf : wf + x.shape[4]].copy_(x)
    return out, [0, 0, 0]
