"""Dual TV-L1 optical flow in PyTorch, computed as OpenCV's ``DualTVL1OpticalFlow`` computes it.

The algorithm is Zach, Pock and Bischof (2007) as refined by Sánchez Pérez,
Meinhardt-Llopis and Facciolo (2013), with every detail that changes the
field taken from OpenCV's CPU implementation (opencv_contrib
``modules/optflow/src/tvl1flow.cpp``) and the OpenCV primitives it calls:

* frames are float32 in the 0..255 scale;
* the pyramid: ``cv::resize`` by 0.8 (bilinear, sizes rounded to nearest),
  stopping before the first level with a side under 16 pixels; the flow goes
  up a level by the same bilinear resize to the finer size, times 1 / 0.8;
* per level: ``p`` reset to zero; then ``warps`` times: I1 and its centred
  gradient (one-sided, halved, at the borders) warped by ``cv::remap``
  bicubic (A = -0.75, zeros outside; OpenCV 5 interpolates at the exact
  position, OpenCV 4 rounded it to 1/32 pixel first);
  up to ``outer`` x ``inner`` iterations, each outer one starting with a 5x5
  median filter (border replicate) of the flow, of the pairs still
  iterating; an iteration thresholds
  (``v``), takes ``u = v + theta * div p`` (backward differences, zero
  outside), and updates ``p`` with forward differences (zero on the last
  row/column);
* the stopping rule: iterations of a warp stop once the sum over the image of
  the squared change of ``u`` is at most ``epsilon**2 * area``.

Batches: every pair of a batch keeps its own stopping rule (a pair that has
converged is frozen, as OpenCV stops iterating it), so a pair's field does
not depend on the batch it runs in. All pairs of a batch have one size.

Arithmetic is float32 as in OpenCV; sums are reordered (and the stopping sum
is taken in float64, where OpenCV adds float32 in raster order), so fields
differ from OpenCV's by rounding, amplified where a pair stops one iteration
earlier or later (``benchmarks/bench_flow.py`` measures it on real videos:
mean end-point error 0.003 to 0.01 px). The pieces are checked against
OpenCV's functions in ``tests/video/test_tvl1.py``.

This module is the algorithm only; :class:`i3d.video.flow.FlowEngine` runs
it on videos (batches, processes, devices).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import torch
import torch.nn.functional as F

# OpenCV stops building the pyramid before a level with a side under this.
MIN_PYRAMID_SIDE = 16
MEDIAN_SIZE = 5
# OpenCV's one-sided gradients need two pixels a side (it reads past a 1-pixel image).
MIN_FRAME_SIDE = 2
# std::numeric_limits<float>::epsilon(): below it, the thresholding step leaves u alone.
FLT_EPSILON = float(torch.finfo(torch.float32).eps)


@dataclass(frozen=True)
class TVL1Params:
    """OpenCV's ``DualTVL1OpticalFlow_create()`` defaults (gamma 0: no illumination term)."""

    tau: float = 0.25
    lambda_: float = 0.15
    theta: float = 0.3
    scales: int = 5
    warps: int = 5
    epsilon: float = 0.01
    inner_iterations: int = 30
    outer_iterations: int = 10
    scale_step: float = 0.8


# ---- OpenCV's primitives ---------------------------------------------------------------


def _linear_taps(size_in: int, size_out: int, scale: float, device: torch.device):
    """cv::resize INTER_LINEAR taps along one axis: (left index, right index, right weight)."""
    # OpenCV computes the source coordinate in double and rounds it to float.
    coordinate = ((torch.arange(size_out, dtype=torch.float64) + 0.5) * scale - 0.5).to(torch.float32)
    left = torch.floor(coordinate)
    weight = coordinate - left
    left = left.to(torch.int64)
    # Outside the source: the edge pixel, weight 0 (i.e. border replicate).
    low, high = left < 0, left >= size_in - 1
    weight[low | high] = 0
    left = left.clamp(0, size_in - 1)
    right = (left + 1).clamp(max=size_in - 1)
    return left.to(device), right.to(device), weight.to(device)


def resize_linear(images: torch.Tensor, size: tuple[int, int], scale: tuple[float, float]) -> torch.Tensor:
    """``cv::resize(..., INTER_LINEAR)`` of float images ``(N, h, w)`` to ``size`` = (H, W).

    ``scale`` is the source step per output pixel ``(y, x)``: ``1 / fy`` when
    OpenCV was given a factor, ``in / out`` when it was given a size.
    """
    height, width = size
    top, bottom, wy = _linear_taps(images.shape[1], height, scale[0], images.device)
    left, right, wx = _linear_taps(images.shape[2], width, scale[1], images.device)
    # Horizontal pass first, then vertical, as OpenCV does.
    rows = images[:, :, left] * (1 - wx) + images[:, :, right] * wx  # (N, h, W)
    wy = wy[:, None]
    return rows[:, top] * (1 - wy) + rows[:, bottom] * wy  # (N, H, W)


def pyramid_size(height: int, width: int, scale_step: float) -> tuple[int, int]:
    """The next level's size: OpenCV rounds ``side * scale_step`` to the nearest integer (ties to even)."""
    return round(height * scale_step), round(width * scale_step)


def centered_gradient(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half the central difference; at the borders half the one-sided one. ``(N, H, W)`` each."""
    padded = F.pad(images[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    dx = 0.5 * (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2])
    dy = 0.5 * (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1])
    return dx, dy


def forward_gradient(u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences, zero on the last column (dx) and last row (dy)."""
    dx = F.pad(u[:, :, 1:] - u[:, :, :-1], (0, 1))
    dy = F.pad(u[:, 1:, :] - u[:, :-1, :], (0, 0, 0, 1))
    return dx, dy


def divergence(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """Backward differences with zero before the first row and column (the adjoint of forward_gradient)."""
    d1 = p1 - F.pad(p1[:, :, :-1], (1, 0))
    d2 = p2 - F.pad(p2[:, :-1, :], (0, 0, 1, 0))
    return d1 + d2


def _dyadic_side(size: int) -> int:
    """The least ``2**k + 1 >= size``: then grid_sample's coordinate scale, (side - 1) / 2, is a power of two."""
    return (1 << max(size - 2, 0).bit_length()) + 1


def remap_cubic(images: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """``cv::remap(INTER_CUBIC, BORDER_CONSTANT 0)`` with float maps, for ``C`` images sharing the maps.

    OpenCV 5 interpolates at the exact position (OpenCV 4 rounded it to 1/32
    of a pixel first) with Keys' cubic, A = -0.75, a tap outside the image
    counting as 0: what ``grid_sample(mode="bicubic", padding_mode="zeros")``
    computes. Its [-1, 1] coordinates would move positions by float
    rounding, and a warp by zero flow would no longer return the image (at
    the borders such errors grow into flow OpenCV does not have). So the
    images get zeros on the right and bottom up to ``2**k + 1`` pixels (zeros
    are what lies outside anyway): the coordinate scale is then a power of
    two, and whole-pixel positions, the common case, stay exact.

    Args:
        images: ``(N, C, H, W)``.
        map_x, map_y: ``(N, H, W)`` source coordinates in pixels.

    Returns:
        ``(N, C, H, W)``.
    """
    h, w = images.shape[-2:]
    padded_h, padded_w = _dyadic_side(h), _dyadic_side(w)
    padded = F.pad(images, (0, padded_w - w, 0, padded_h - h))
    # align_corners=True: -1 and 1 are the centres of the first and last (padded) pixels.
    grid = torch.stack([map_x * (2 / (padded_w - 1)) - 1, map_y * (2 / (padded_h - 1)) - 1], dim=-1)
    return F.grid_sample(padded, grid, mode="bicubic", padding_mode="zeros", align_corners=True)


def _merge_sort_network(lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """Batcher's odd-even merge sort of positions ``lo..hi`` (a power of two of them): comparators ``(i, j)``, i < j."""
    if hi > lo:
        mid = (lo + hi) // 2
        yield from _merge_sort_network(lo, mid)
        yield from _merge_sort_network(mid + 1, hi)
        yield from _odd_even_merge(lo, hi, 1)


def _odd_even_merge(lo: int, hi: int, r: int) -> Iterator[tuple[int, int]]:
    step = 2 * r
    if step < hi - lo:
        yield from _odd_even_merge(lo, hi, step)
        yield from _odd_even_merge(lo + r, hi, step)
        yield from ((i, i + r) for i in range(lo + r, hi - r, step))
    else:
        yield lo, lo + r


def median_network(count: int) -> tuple[tuple[str, int, int], ...]:
    """A selection network for the median of ``count`` (odd) values at positions ``0..count-1``.

    Steps ``(kind, i, j)``: ``"move"`` copies position j to i; ``"both"``
    puts the minimum at i and the maximum at j; ``"min"`` and ``"max"``
    only the one the median needs. It is Batcher's sorting network for the
    next power of two, the padding positions taken as +inf (their comparators
    do nothing or move a value), with every step the median does not depend
    on removed: 25 values take 113 steps, 202 min/max. The median is
    selected, not computed, so it is OpenCV's bit for bit.
    """
    size = 1 << (count - 1).bit_length()
    infinite = set(range(count, size))
    steps: list[tuple[str, int, int]] = []
    for i, j in _merge_sort_network(0, size - 1):
        if j in infinite:
            continue  # min is x_i, max is +inf: nothing moves
        if i in infinite:
            steps.append(("move", i, j))  # x_j goes to i, +inf to j
            infinite.discard(i)
            infinite.add(j)
        else:
            steps.append(("both", i, j))
    needed = {count // 2}
    kept: list[tuple[str, int, int]] = []
    for kind, i, j in reversed(steps):
        if kind == "move":
            if i in needed:
                kept.append((kind, i, j))
                needed = (needed - {i}) | {j}
        elif i in needed or j in needed:
            kept.append(("both" if i in needed and j in needed else "min" if i in needed else "max", i, j))
            needed |= {i, j}
    return tuple(reversed(kept))


# Built here, not at each call: torch.compile traces through a plain constant.
_MEDIAN_STEPS = median_network(MEDIAN_SIZE * MEDIAN_SIZE)


def median_of_windows(padded: torch.Tensor) -> torch.Tensor:
    """The median of every 5x5 window of ``(N, H + 4, W + 4)``: ``(N, H, W)``."""
    h, w = padded.shape[1] - (MEDIAN_SIZE - 1), padded.shape[2] - (MEDIAN_SIZE - 1)
    windows = [padded[:, dy : dy + h, dx : dx + w] for dy in range(MEDIAN_SIZE) for dx in range(MEDIAN_SIZE)]
    slots = dict(enumerate(windows))
    for kind, i, j in _MEDIAN_STEPS:
        if kind == "move":
            slots[i] = slots[j]
        elif kind == "both":
            slots[i], slots[j] = torch.minimum(slots[i], slots[j]), torch.maximum(slots[i], slots[j])
        elif kind == "min":
            slots[i] = torch.minimum(slots[i], slots[j])
        else:
            slots[j] = torch.maximum(slots[i], slots[j])
    return slots[len(windows) // 2]


def pad_for_median(u: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` padded by 2 on every side, border replicate (medianBlur's border)."""
    pad = MEDIAN_SIZE // 2
    return F.pad(u[:, None], (pad, pad, pad, pad), mode="replicate")[:, 0]


def median5(u: torch.Tensor, network: Callable[[torch.Tensor], torch.Tensor] = median_of_windows) -> torch.Tensor:
    """``cv::medianBlur(u, 5)`` of float images ``(N, H, W)``: border replicate, the exact median.

    On the CPU this is OpenCV's own medianBlur, image by image (its SIMD
    network runs ~6x faster than the selection network compiled by
    inductor); elsewhere ``network`` (:func:`median_of_windows`, plain or
    compiled). Both select the same value.
    """
    if u.device.type == "cpu":
        out = torch.empty_like(u)
        for image, result in zip(u.contiguous().numpy(), out.numpy()):
            cv2.medianBlur(image, MEDIAN_SIZE, dst=result)
        return out
    return network(pad_for_median(u))


# ---- the algorithm ---------------------------------------------------------------------


def iteration(
    u1: torch.Tensor,
    u2: torch.Tensor,
    p11: torch.Tensor,
    p12: torch.Tensor,
    p21: torch.Tensor,
    p22: torch.Tensor,
    i1wx: torch.Tensor,
    i1wy: torch.Tensor,
    grad: torch.Tensor,
    rho_c: torch.Tensor,
    l_t: float,
    theta: float,
    taut: float,
) -> tuple[torch.Tensor, ...]:
    """One inner iteration of ``(n, H, W)`` pairs.

    Returns the new ``u1, u2, p11, p12, p21, p22`` and each pair's sum of
    squared ``u`` changes ``(n,)`` float64 (the stopping rule's error).
    """
    # Thresholding (OpenCV's estimateV): the data term's proximal step, pixel by pixel.
    rho = rho_c + (i1wx * u1 + i1wy * u2)
    bound = l_t * grad
    fi = torch.where(grad > FLT_EPSILON, -rho / grad, 0.0)
    fi = torch.where(rho < -bound, l_t, torch.where(rho > bound, -l_t, fi))
    v1 = u1 + fi * i1wx
    v2 = u2 + fi * i1wy
    # The flow (estimateU).
    new_u1 = v1 + theta * divergence(p11, p12)
    new_u2 = v2 + theta * divergence(p21, p22)
    error = ((new_u1 - u1).square() + (new_u2 - u2).square()).sum(dim=(1, 2), dtype=torch.float64)
    # The dual variables (estimateDualVariables). OpenCV takes the norm with
    # hypot in double; sqrt in float differs by at most an ulp and vectorises.
    u1x, u1y = forward_gradient(new_u1)
    u2x, u2y = forward_gradient(new_u2)
    ng1 = 1 + taut * torch.sqrt(u1x * u1x + u1y * u1y)
    ng2 = 1 + taut * torch.sqrt(u2x * u2x + u2y * u2y)
    p11, p12 = (p11 + taut * u1x) / ng1, (p12 + taut * u1y) / ng1
    p21, p22 = (p21 + taut * u2x) / ng2, (p22 + taut * u2y) / ng2
    return new_u1, new_u2, p11, p12, p21, p22, error


class Kernels(NamedTuple):
    """The functions that do the work, plain or compiled."""

    iteration: Callable[..., tuple[torch.Tensor, ...]]
    median_of_windows: Callable[[torch.Tensor], torch.Tensor]


EAGER = Kernels(iteration, median_of_windows)


@functools.cache
def compiled_kernels(device_type: str = "cpu") -> Kernels:
    """:data:`EAGER` through ``torch.compile`` for a device type, or :data:`EAGER` where compiling fails.

    Dynamic shapes: one compilation serves every pyramid level and batch
    size. Compiling needs a C++ compiler (CPU) or Triton (GPU) and takes
    tens of seconds once per process; a probe on the device finds out
    whether it works, and a failure falls back to the plain functions with
    a warning.
    """
    try:
        probe = torch.compile(lambda x: x * 2 + 1, dynamic=True)
        probe(torch.ones(3, device=device_type))
    except Exception as err:  # noqa: BLE001 - whatever the backend raises, the plain path works
        cause = (str(err).strip().splitlines() or [type(err).__name__])[0]
        warnings.warn(f"torch.compile is unavailable ({cause}); TV-L1 runs without it", RuntimeWarning, stacklevel=2)
        return EAGER
    return Kernels(*(torch.compile(f, dynamic=True) for f in EAGER))


def _float32(value: float) -> float:
    """``value`` rounded to float32, as OpenCV rounds its double parameters."""
    return float(torch.tensor(value, dtype=torch.float32))


def _one_scale(
    i0: torch.Tensor,
    i1: torch.Tensor,
    u1: torch.Tensor,
    u2: torch.Tensor,
    params: TVL1Params,
    kernels: Kernels,
) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's procOneScale for ``(N, H, W)`` pairs, from the flow ``u1``, ``u2`` it is given."""
    n, h, w = i0.shape
    threshold = _float32(params.epsilon * params.epsilon * h * w)
    constants = (_float32(params.lambda_ * params.theta), _float32(params.theta), _float32(params.tau / params.theta))
    i1x, i1y = centered_gradient(i1)
    targets = torch.stack([i1, i1x, i1y], dim=1)  # (N, 3, H, W): warped together
    grid_x = torch.arange(w, dtype=torch.float32, device=i0.device)
    grid_y = torch.arange(h, dtype=torch.float32, device=i0.device)[:, None]
    p = [torch.zeros_like(i0) for _ in range(4)]  # p11, p12, p21, p22: reset once per scale, not per warp
    for _ in range(params.warps):
        i1w, i1wx, i1wy = remap_cubic(targets, grid_x + u1, grid_y + u2).unbind(dim=1)
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
        # Each pair iterates until its own error is small. The iterations run on
        # the pairs still going (`ids`), gathered once each time a pair stops;
        # a stopped pair's state goes back to the full tensors as it stands.
        full = [u1, u2, *p]
        ids = torch.arange(n, device=i0.device)
        state, data = list(full), [i1wx, i1wy, grad, rho_c]
        for _ in range(params.outer_iterations):
            if ids.numel() == 0:
                break
            state[0], state[1] = (median5(u, kernels.median_of_windows) for u in state[:2])
            for _ in range(params.inner_iterations):
                *state, error = kernels.iteration(*state, *data, *constants)
                going = error > threshold
                if not bool(going.all()):
                    stopped = ~going
                    for whole, part in zip(full, state):
                        whole[ids[stopped]] = part[stopped]
                    ids = ids[going]
                    state, data = [x[going] for x in state], [x[going] for x in data]
                    if ids.numel() == 0:
                        break
        for whole, part in zip(full, state):
            whole[ids] = part
        u1, u2, *p = full
    return u1, u2


def pyramid_sizes(height: int, width: int, params: TVL1Params = TVL1Params()) -> list[tuple[int, int]]:
    """The sizes of the pyramid's levels, finest first (at least the frame itself)."""
    sizes = [(height, width)]
    while len(sizes) < params.scales:
        size = pyramid_size(*sizes[-1], params.scale_step)
        if min(size) < MIN_PYRAMID_SIDE:
            break
        sizes.append(size)
    return sizes


@torch.no_grad()
def tvl1_flow_batch(
    prev: torch.Tensor, current: torch.Tensor, params: TVL1Params = TVL1Params(), *, compile: bool = False
) -> torch.Tensor:
    """TV-L1 flow of ``N`` pairs of grayscale frames, as OpenCV computes it.

    Args:
        prev, current: ``(N, H, W)`` frames, uint8 or float in the 0..255
            scale, on any device; pair ``i`` is ``prev[i]`` to ``current[i]``.
        params: the algorithm's parameters (OpenCV's defaults).
        compile: run the work through ``torch.compile`` (:func:`compiled_kernels`);
            fields are the same up to rounding.

    Returns:
        ``(N, H, W, 2)`` float32 ``f`` (x then y): ``current[y + f[..., 1], x + f[..., 0]] ~ prev[y, x]``.
    """
    if prev.shape != current.shape or prev.dim() != 3:
        raise ValueError(
            f"expected two (N, H, W) batches of one shape, got {tuple(prev.shape)} and {tuple(current.shape)}"
        )
    n, height, width = prev.shape
    if min(height, width) < MIN_FRAME_SIDE:
        raise ValueError(
            f"TV-L1 needs frames of at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} pixels, got {width}x{height}"
        )
    kernels = compiled_kernels(prev.device.type) if compile else EAGER
    sizes = pyramid_sizes(height, width, params)
    step = 1 / params.scale_step
    levels = [(prev.to(torch.float32), current.to(torch.float32))]
    for size in sizes[1:]:
        levels.append(tuple(resize_linear(image, size, (step, step)) for image in levels[-1]))
    u1 = prev.new_zeros((n, *sizes[-1]), dtype=torch.float32)
    u2 = torch.zeros_like(u1)
    for level in reversed(range(len(sizes))):
        if level < len(sizes) - 1:
            # Up a level: resized to the finer size (OpenCV's scale is then in / out), times 1 / scale_step.
            (h, w), (fine_h, fine_w) = sizes[level + 1], sizes[level]
            scale = (h / fine_h, w / fine_w)
            u1 = resize_linear(u1, (fine_h, fine_w), scale) * step
            u2 = resize_linear(u2, (fine_h, fine_w), scale) * step
        u1, u2 = _one_scale(*levels[level], u1, u2, params, kernels)
    return torch.stack([u1, u2], dim=-1)
