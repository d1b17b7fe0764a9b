"""Tensor operations of the fast inference path (see :class:`i3d.fast.InferenceOptions`).

Layouts: ``(B, C, T, H, W)`` tensors, in PyTorch's default contiguous layout
or in channels-last 3D (channels innermost in memory), which the fast path
keeps from the first convolution to the head.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = [
    "FUSED_RELU",
    "conv3d_relu",
    "fold_time",
    "fold_time_weight",
    "last_level_cache_bytes",
    "max_pool_strided",
    "onednn_bf16",
    "pad_zeros",
    "pointwise_conv",
    "pool_slab_frames",
]

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


# A max pool of a large activation is bound by memory traffic: each axis
# writes an intermediate as large as its input (or half of it), which the
# next axis reads back. Pooled a slab of frames at a time, the intermediates
# are still in the last-level cache when they are read. A slab of a quarter
# of that cache (8 MiB of Zen 4's 32 MiB) measured best in fp32 and about as
# good as an eighth or a half in bf16: on 2 cores the 64-frame network's
# pools took 32.9 ms instead of 49.8 in fp32 (MaxPool3d_2a, 98 MiB, 12.2 ->
# 6.9 ms), 16.5 instead of 17.1 in bf16 (benchmarks/bench_pools.py), and
# the whole network ran 1.6-2.4% faster in fp32, 1-2% in bf16.
SLAB_CACHE_FRACTION = 4
CACHE_FALLBACK_BYTES = 32 * 2**20  # where sysfs does not say (not Linux)


@functools.cache
def last_level_cache_bytes(sysfs: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """Size of the CPU's largest cache as Linux's sysfs reports it, or
    :data:`CACHE_FALLBACK_BYTES` where it cannot be read."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    sizes = []
    for index in sysfs.glob("index*"):
        try:
            text = (index / "size").read_text().strip()
            sizes.append(int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text))
        except (OSError, ValueError, IndexError):
            continue
    return max(sizes, default=CACHE_FALLBACK_BYTES)


def pool_slab_frames(x: torch.Tensor) -> int | None:
    """Frames of ``x`` ``(B, C, T, H, W)`` a CPU max pool takes at a time
    (``slab_frames`` of :func:`max_pool_strided`), or None for all at once:
    on a GPU, and for an activation of at most two slabs, where cutting it
    would add calls and shared frames for little locality."""
    slab_bytes = last_level_cache_bytes() // SLAB_CACHE_FRACTION
    if x.device.type != "cpu" or x.dim() != 5 or x.numel() * x.element_size() <= 2 * slab_bytes:
        return None
    frame_bytes = x[:, :, 0].numel() * x.element_size()
    return max(1, slab_bytes // frame_bytes)


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


def _pooled_size(n: int, kernel: int, stride: int, pads: tuple[int, int]) -> int:
    return (n + pads[0] + pads[1] - kernel) // stride + 1


def max_pool_strided(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    *,
    nonnegative: bool = False,
    slab_frames: int | None = None,
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

    ``slab_frames``: pool ``x`` a slab of about that many frames at a time
    (with the frames each slab's windows share with the next), so that the
    intermediate result of each axis is still in the cache when the next
    axis reads it (:func:`pool_slab_frames`); ``None``: all frames at once. The
    result is the same.
    """
    if nonnegative and x.dtype == torch.bfloat16:
        return max_pool_strided(x.view(torch.int16), kernel, stride, padding, slab_frames=slab_frames).view(
            torch.bfloat16
        )
    k, s, front = kernel[0], stride[0], padding[0][0]
    n = x.shape[2]
    out_len = _pooled_size(n, k, s, padding[0])
    per_slab = out_len if slab_frames is None else max(1, (slab_frames - k) // s + 1)  # outputs a slab gives
    if per_slab >= out_len:
        return _pool_axes(x, kernel, stride, padding)
    shape = (*x.shape[:2], out_len, *(_pooled_size(*a) for a in zip(x.shape[3:], kernel[1:], stride[1:], padding[1:])))
    out = _empty_like_layout(x, shape)
    for j0 in range(0, out_len, per_slab):
        j1 = min(out_len, j0 + per_slab)
        lo, hi = s * j0 - front, s * (j1 - 1) - front + k  # the input frames outputs [j0, j1) read
        pads = ((max(-lo, 0), max(hi - n, 0)), *padding[1:])
        _pool_axes(x[:, :, max(lo, 0) : min(hi, n)], kernel, stride, pads, out=out.narrow(2, j0, j1 - j0))
    return out


def _pool_axes(
    x: torch.Tensor,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[tuple[int, int], ...],
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`max_pool_strided` of all of ``x``, the last axis written into ``out`` if given."""
    axes = [(d, k, s, p) for d, k, s, p in zip(range(2, 5), kernel, stride, padding) if k > 1 or s > 1]
    if not axes:
        return x if out is None else out.copy_(x)
    for d, k, s, (front, back) in axes:
        n = x.shape[d]
        out_len = _pooled_size(n, k, s, (front, back))
        shape = list(x.shape)
        shape[d] = out_len
        y = out if out is not None and d == axes[-1][0] else _empty_like_layout(x, tuple(shape))
        seed = _strided(x, d, 0, out_len, s)  # r = front: cell s*j
        # Each other offset r: the outputs [first, last) whose cell s*j - front + r lies inside x.
        covered = {
            r: (max(0, -(-(front - r) // s)), min(out_len, (n - 1 + front - r) // s + 1))
            for r in range(k)
            if r != front
        }
        others = sorted(covered, key=lambda r: covered[r][0] - covered[r][1])  # the most outputs first
        if not others or covered[others[0]][1] <= covered[others[0]][0]:
            y.copy_(seed)
        else:
            r = others.pop(0)  # the offset that exists for the most outputs
            first, last = covered[r]
            torch.maximum(
                seed.narrow(d, first, last - first),
                _strided(x, d, s * first - front + r, last - first, s),
                out=y.narrow(d, first, last - first),
            )
            for a, b in ((0, first), (last, out_len)):  # where only the seed exists
                if b > a:
                    y.narrow(d, a, b - a).copy_(seed.narrow(d, a, b - a))
        for r in others:
            first, last = covered[r]
            if last > first:
                target = y.narrow(d, first, last - first)
                torch.maximum(target, _strided(x, d, s * first - front + r, last - first, s), out=target)
        x = y
    return x


def conv3d_relu(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, ...], padding: list[int]
) -> torch.Tensor:
    """``relu(conv3d(x))`` in one oneDNN call (CPU, float32 or bfloat16;
    needs :data:`FUSED_RELU`)."""
    return _MKLDNN._convolution_pointwise(x, weight, bias, padding, stride, [1, 1, 1], 1, "relu", [], "")


def fold_time(x: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
    """The time taps of a convolution moved into the channels: ``x``
    ``(B, C, T, H, W)``, channels-last, becomes ``(B, kernel * C, T', H, W)``,
    channels-last, whose channel ``k * C + c`` at time ``j`` is ``x``'s channel
    ``c`` at time ``stride * j - padding + k`` (zero in the padding). A
    convolution of it with a time kernel of 1 and the weights of
    :func:`fold_time_weight` computes the same products as the original
    convolution of ``x``.

    It runs as a oneDNN convolution with one-hot weights (CPU, float32 or
    bfloat16; needs :data:`FUSED_RELU`): each output is one input times 1
    plus zeros, so exactly that input wherever the inputs are finite (an
    infinite one makes its position's other taps NaN). It takes half the
    time of the same gather by copies, which move three-channel pixels
    (6 bytes in bfloat16) one by one.
    """
    return _MKLDNN._convolution_pointwise(
        x,
        _one_hot_taps(kernel, x.shape[1], x.dtype),
        None,
        [padding, 0, 0],
        [stride, 1, 1],
        [1, 1, 1],
        1,
        "none",
        [],
        "",
    )


@functools.cache
def _one_hot_taps(kernel: int, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """Weights ``(kernel * C, C, kernel, 1, 1)`` whose output ``k * C + c`` is input ``c`` at tap ``k``."""
    weight = torch.zeros(kernel, channels, channels, kernel, 1, 1, dtype=dtype)
    for k in range(kernel):
        weight[k, :, :, k] = torch.eye(channels, dtype=dtype)[..., None, None]
    return weight.flatten(0, 1).contiguous(memory_format=torch.channels_last_3d)


def fold_time_weight(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` ``(C', C, kT, kH, kW)`` for :func:`fold_time`'s input:
    ``(C', kT * C, 1, kH, kW)``, channels-last."""
    c_out, c_in, kt, kh, kw = weight.shape
    folded = weight.permute(0, 2, 1, 3, 4).reshape(c_out, kt * c_in, 1, kh, kw)
    return folded.contiguous(memory_format=torch.channels_last_3d)


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
