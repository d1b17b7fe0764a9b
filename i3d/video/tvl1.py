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
  bicubic (A = -0.75, sub-pixel positions rounded to 1/32, zeros outside);
  up to ``outer`` x ``inner`` iterations, each outer one starting with a 5x5
  median filter (border replicate) of the flow; an iteration thresholds
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
earlier or later.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Keys' bicubic convolution parameter in OpenCV's interpolateCubic.
CUBIC_A = -0.75
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


def _cubic_weights(t: torch.Tensor) -> torch.Tensor:
    """Keys' bicubic weights (A = -0.75) of the four taps at offsets -1, 0, 1, 2 from ``floor``; ``t`` the fraction."""
    a = CUBIC_A
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    w3 = 1 - w0 - w1 - w2
    return torch.stack([w0, w1, w2, w3], dim=-1)


def remap_cubic(images: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor) -> torch.Tensor:
    """``cv::remap(INTER_CUBIC, BORDER_CONSTANT 0)`` with float maps, for ``C`` images sharing the maps.

    OpenCV 5 interpolates at the exact position (OpenCV 4 rounded it to 1/32
    of a pixel first); a tap outside the image counts as 0.

    Args:
        images: ``(N, C, H, W)``.
        map_x, map_y: ``(N, H, W)`` source coordinates in pixels.

    Returns:
        ``(N, C, H, W)``.
    """
    n, c, h, w = images.shape
    fx, fy = torch.floor(map_x), torch.floor(map_y)
    wx = _cubic_weights(map_x - fx)  # (N, H, W, 4)
    wy = _cubic_weights(map_y - fy)
    # Zero padding of one pixel; any tap outside lands on it once clamped.
    padded = F.pad(images, (1, 1, 1, 1)).reshape(n, c, (h + 2) * (w + 2))
    taps = torch.arange(4, device=images.device)
    # Tap k of a position with floor f is pixel f - 1 + k, i.e. f + k in the padded image.
    cols = (fx.clamp(-4, w + 2).to(torch.int64)[..., None] + taps).clamp(0, w + 1)  # (N, H, W, 4)
    rows = (fy.clamp(-4, h + 2).to(torch.int64)[..., None] + taps).clamp(0, h + 1)
    index = (rows[..., :, None] * (w + 2) + cols[..., None, :]).reshape(n, 1, h * w * 16)
    values = torch.gather(padded, 2, index.expand(n, c, h * w * 16)).reshape(n, c, h, w, 4, 4)
    weights = wy[:, None, ..., :, None] * wx[:, None, ..., None, :]  # (N, 1, H, W, 4, 4)
    return (values * weights).sum(dim=(-2, -1))


def median5(u: torch.Tensor) -> torch.Tensor:
    """``cv::medianBlur(u, 5)`` of float images ``(N, H, W)``: border replicate."""
    n, h, w = u.shape
    pad = MEDIAN_SIZE // 2
    padded = F.pad(u[:, None], (pad, pad, pad, pad), mode="replicate")
    windows = F.unfold(padded, MEDIAN_SIZE)  # (N, 25, H * W)
    return windows.median(dim=1).values.reshape(n, h, w)


# ---- the algorithm ---------------------------------------------------------------------


def _iteration(
    u1: torch.Tensor,
    u2: torch.Tensor,
    p: torch.Tensor,
    i1wx: torch.Tensor,
    i1wy: torch.Tensor,
    grad: torch.Tensor,
    rho_c: torch.Tensor,
    l_t: float,
    theta: float,
    taut: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One inner iteration for ``(n, H, W)`` pairs; ``p`` is ``(4, n, H, W)``: p11, p12, p21, p22.

    Returns the new ``u1``, ``u2``, ``p`` and each pair's sum of squared ``u`` changes ``(n,)`` float64.
    """
    # Thresholding (OpenCV's estimateV): the data term's proximal step, pixel by pixel.
    rho = rho_c + (i1wx * u1 + i1wy * u2)
    bound = l_t * grad
    fi = torch.where(grad > FLT_EPSILON, -rho / grad, torch.zeros_like(rho))
    fi = torch.where(rho < -bound, torch.full_like(rho, l_t), torch.where(rho > bound, torch.full_like(rho, -l_t), fi))
    v1 = u1 + fi * i1wx
    v2 = u2 + fi * i1wy
    # The flow (estimateU).
    new_u1 = v1 + theta * divergence(p[0], p[1])
    new_u2 = v2 + theta * divergence(p[2], p[3])
    error = ((new_u1 - u1).square() + (new_u2 - u2).square()).sum(dim=(1, 2), dtype=torch.float64)
    # The dual variables (estimateDualVariables).
    u1x, u1y = forward_gradient(new_u1)
    u2x, u2y = forward_gradient(new_u2)
    ng1 = 1 + taut * torch.hypot(u1x, u1y)
    ng2 = 1 + taut * torch.hypot(u2x, u2y)
    new_p = torch.stack(
        [(p[0] + taut * u1x) / ng1, (p[1] + taut * u1y) / ng1, (p[2] + taut * u2x) / ng2, (p[3] + taut * u2y) / ng2]
    )
    return new_u1, new_u2, new_p, error


def _one_scale(
    i0: torch.Tensor, i1: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor, params: TVL1Params, iteration
) -> tuple[torch.Tensor, torch.Tensor]:
    """OpenCV's procOneScale for ``(N, H, W)`` pairs, from the flow ``u1``, ``u2`` it is given."""
    n, h, w = i0.shape
    # OpenCV's constants, rounded to float as it rounds them.
    threshold = float(torch.tensor(params.epsilon * params.epsilon * h * w, dtype=torch.float32))
    l_t = float(torch.tensor(params.lambda_ * params.theta, dtype=torch.float32))
    taut = float(torch.tensor(params.tau / params.theta, dtype=torch.float32))
    theta = float(torch.tensor(params.theta, dtype=torch.float32))
    i1x, i1y = centered_gradient(i1)
    targets = torch.stack([i1, i1x, i1y], dim=1)  # (N, 3, H, W): warped together
    grid_x = torch.arange(w, dtype=torch.float32, device=i0.device)
    grid_y = torch.arange(h, dtype=torch.float32, device=i0.device)[:, None]
    p = i0.new_zeros((4, n, h, w))  # p11, p12, p21, p22: once per scale, not per warp
    for _ in range(params.warps):
        i1w, i1wx, i1wy = remap_cubic(targets, grid_x + u1, grid_y + u2).unbind(dim=1)
        grad = i1wx * i1wx + i1wy * i1wy
        rho_c = i1w - i1wx * u1 - i1wy * u2 - i0
        # Each pair iterates until its own error is small: a converged pair is left as it is.
        active = torch.arange(n, device=i0.device)
        for _ in range(params.outer_iterations):
            if active.numel() == 0:
                break
            u1[active] = median5(u1[active])
            u2[active] = median5(u2[active])
            for _ in range(params.inner_iterations):
                if active.numel() == 0:
                    break
                everyone = active.numel() == n
                pick = slice(None) if everyone else active
                new_u1, new_u2, new_p, error = iteration(
                    u1[pick], u2[pick], p[:, pick], i1wx[pick], i1wy[pick], grad[pick], rho_c[pick], l_t, theta, taut
                )
                if everyone:
                    u1, u2, p = new_u1, new_u2, new_p
                else:
                    u1[active], u2[active], p[:, active] = new_u1, new_u2, new_p
                active = active[error > threshold]
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


@functools.cache
def compiled_iteration():
    """The inner iteration through ``torch.compile`` (one fused loop on the CPU, a few kernels on a GPU).

    Dynamic shapes: one compilation serves every pyramid level and batch size.
    Compilation happens at the first call and needs a C++ compiler (CPU) or
    Triton (GPU); :func:`tvl1_flow_batch` falls back to eager where it fails.
    """
    return torch.compile(_iteration, dynamic=True)


def tvl1_flow_batch(
    prev: torch.Tensor, current: torch.Tensor, params: TVL1Params = TVL1Params(), *, compile: bool = False
) -> torch.Tensor:
    """TV-L1 flow of ``N`` pairs of grayscale frames, as OpenCV computes it.

    Args:
        prev, current: ``(N, H, W)`` frames, uint8 or float in the 0..255
            scale, on any device; pair ``i`` is ``prev[i]`` to ``current[i]``.
        params: the algorithm's parameters (OpenCV's defaults).
        compile: run the inner iteration through ``torch.compile`` (see
            :func:`compiled_iteration`); the field is the same up to rounding.

    Returns:
        ``(N, H, W, 2)`` float32 ``f`` (x then y): ``current[y + f[..., 1], x + f[..., 0]] ~ prev[y, x]``.
    """
    if prev.shape != current.shape or prev.dim() != 3:
        raise ValueError(f"expected two (N, H, W) batches of one shape, got {tuple(prev.shape)} and {tuple(current.shape)}")
    n, height, width = prev.shape
    if min(height, width) < MIN_FRAME_SIDE:
        raise ValueError(f"TV-L1 needs frames of at least {MIN_FRAME_SIDE}x{MIN_FRAME_SIDE} pixels, got {width}x{height}")
    iteration = compiled_iteration() if compile else _iteration
    sizes = pyramid_sizes(height, width, params)
    step = 1 / params.scale_step
    levels = [(prev.to(torch.float32), current.to(torch.float32))]
    for size in sizes[1:]:
        levels.append(tuple(resize_linear(image, size, (step, step)) for image in levels[-1]))
    u1 = prev.new_zeros(sizes[-1], dtype=torch.float32).expand(n, -1, -1).clone()
    u2 = u1.clone()
    for level in reversed(range(len(sizes))):
        if level < len(sizes) - 1:
            # Up a level: resized to the finer size (OpenCV's scale is then in / out), times 1 / scale_step.
            (h, w), (fine_h, fine_w) = sizes[level + 1], sizes[level]
            scale = (h / fine_h, w / fine_w)
            u1 = resize_linear(u1, (fine_h, fine_w), scale) * step
            u2 = resize_linear(u2, (fine_h, fine_w), scale) * step
        u1, u2 = _one_scale(*levels[level], u1, u2, params, iteration)
    return torch.stack([u1, u2], dim=-1)
