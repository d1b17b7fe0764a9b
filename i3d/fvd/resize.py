"""Frame preprocessing for FVD: resize to 224x224, scale to ``[-1, 1]``.

The reference (google-research ``frechet_video_distance``) resizes every
frame with TensorFlow 1's ``tf.image.resize_bilinear`` at its defaults
(``align_corners=False``, ``half_pixel_centers=False``). That rule is not
the one of ``torch.nn.functional.interpolate(..., align_corners=False)``:

* reference: output pixel ``i`` samples the input at ``i * in / out``;
* torch: at ``(i + 0.5) * in / out - 0.5`` (half-pixel centres).

TensorFlow works in float32 throughout: ``scale = float(in) / float(out)``,
``x = float(i) * scale``, neighbours ``floor(x)`` and ``min(ceil(x), in - 1)``,
weight ``x - floor(x)``, and for each output pixel
``top = tl + (tr - tl) * wx``, ``bottom = bl + (br - bl) * wx``,
``top + (bottom - top) * wy``. :func:`resize_bilinear_tf1` does the same
operations in the same order on float32 tensors, so on any device it gives
TensorFlow's values bit for bit (IEEE float32 rounds each operation the
same way everywhere).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from i3d.fvd.choices import RESIZE_METHODS, ResizeMethod

__all__ = [
    "ResizeMethod",
    "RESIZE_METHODS",
    "FVD_SIZE",
    "resize_bilinear_tf1",
    "resize_frames",
    "resize_short_side_crop",
    "to_network_range",
    "apply_formula",
]

# I3D was trained on 224x224 crops; the reference resizes whole frames to it.
FVD_SIZE = 224
UINT8_MAX = 255.0


def _legacy_sampling(
    in_size: int, out_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per output index: lower and upper input index, and the upper one's weight (TF1's legacy rule)."""
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    coord = torch.arange(out_size, dtype=torch.float32) * scale  # float32, as TF computes it
    floor = coord.floor()
    lower = floor.long().clamp(min=0)
    upper = coord.ceil().long().clamp(max=in_size - 1)
    weight = coord - floor
    return lower.to(device), upper.to(device), weight.to(device)


def resize_bilinear_tf1(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TensorFlow 1's ``resize_bilinear`` (``align_corners=False``, no half-pixel centres).

    Args:
        frames: ``(..., H, W, C)`` of any real dtype (uint8 frames typically).
        size: ``(height, width)`` of the output.

    Returns:
        ``(..., height, width, C)`` float32 on the device of ``frames``.
    """
    height, width = size
    x = frames.to(torch.float32)
    in_height, in_width = x.shape[-3], x.shape[-2]
    if (in_height, in_width) == (height, width):
        return x  # TF's no-op path; the formula below would give the same values
    y_lo, y_hi, wy = _legacy_sampling(in_height, height, x.device)
    x_lo, x_hi, wx = _legacy_sampling(in_width, width, x.device)
    left = x.index_select(-2, x_lo)  # (..., H, width, C)
    right = x.index_select(-2, x_hi)
    # Interpolating every input row along x first, then rows along y, is
    # TF's top/bottom arithmetic term for term.
    rows = left + (right - left) * wx[:, None]
    top = rows.index_select(-3, y_lo)  # (..., height, width, C)
    bottom = rows.index_select(-3, y_hi)
    return top + (bottom - top) * wy[:, None, None]


def resize_frames(frames: torch.Tensor, size: tuple[int, int], method: ResizeMethod = "reference") -> torch.Tensor:
    """Resize ``(..., H, W, C)`` frames to ``size``: float32 ``(..., height, width, C)``.

    ``reference`` is :func:`resize_bilinear_tf1`; ``torch`` is
    ``F.interpolate(mode="bilinear", align_corners=False)`` (half-pixel
    centres, no antialiasing), the rule most PyTorch FVD ports use.
    """
    if method == "reference":
        return resize_bilinear_tf1(frames, size)
    if method != "torch":
        raise ValueError(f"resize method must be one of {RESIZE_METHODS}, got {method!r}")
    x = frames.to(torch.float32)
    lead, (in_height, in_width, channels) = x.shape[:-3], x.shape[-3:]
    x = x.reshape(-1, in_height, in_width, channels).permute(0, 3, 1, 2)  # (M, C, H, W)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).reshape(*lead, *size, channels)


def resize_short_side_crop(frames: torch.Tensor, side: int = FVD_SIZE) -> torch.Tensor:
    """VideoGPT's ``preprocess``: ``F.interpolate`` (bilinear, half-pixel) to a
    short side of ``side`` (see :func:`i3d.fvd.protocols.short_side_size`),
    then the centre ``side x side`` crop (start ``(size - side) // 2``).

    ``(..., H, W, C)`` float -> ``(..., side, side, C)`` float32.
    """
    from i3d.fvd.protocols import short_side_size

    height, width = frames.shape[-3], frames.shape[-2]
    size = short_side_size(height, width, side)
    resized = resize_frames(frames, size, "torch")
    top, left = (size[0] - side) // 2, (size[1] - side) // 2
    return resized[..., top : top + side, left : left + side, :]


def apply_formula(x: torch.Tensor, formula: str) -> torch.Tensor:
    """One of :data:`i3d.fvd.protocols.FORMULAS` on float32 ``x``, operations in the written order."""
    if formula == "x":
        return x
    if formula == "x/255":
        return x / UINT8_MAX
    if formula == "2*x/255-1":
        return 2.0 * x / UINT8_MAX - 1.0
    if formula == "x/255*2-1":
        return x / UINT8_MAX * 2.0 - 1.0
    if formula == "x-0.5":
        return x - 0.5
    if formula == "(x-0.5)*2":
        return (x - 0.5) * 2.0
    raise ValueError(f"unknown value formula {formula!r}")


def to_network_range(frames: torch.Tensor) -> torch.Tensor:
    """``[0, 255]`` to ``[-1, 1]`` as the reference writes it: ``2 * x / 255 - 1`` in float32."""
    return apply_formula(frames.to(torch.float32), "2*x/255-1")
