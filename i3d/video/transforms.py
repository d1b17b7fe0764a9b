"""Preprocessing transforms: resize, crop, flip, scale jitter and value scaling.

Tensors are ``(C, T, H, W)`` clips or ``(B, C, T, H, W)`` batches; channels
are RGB (3) or flow x, y (2). Frames on their way from a reader are NumPy
arrays ``(H, W, C)``, and :func:`resize_frame` resizes them before they become
tensors, which keeps memory bounded by the resized size.

Resizing is bilinear with half-pixel centres and no antialiasing (OpenCV's
``INTER_LINEAR`` on uint8 frames, ``F.interpolate(mode="bilinear",
align_corners=False)`` on tensors). On uint8 frames the two differ by less
than one grey level: OpenCV rounds its result to uint8.

Flow fields are displacements in pixels, so resizing a field also scales
its x values by the width ratio and its y values by the height ratio, and a
horizontal flip negates x.

Random transforms take a ``torch.Generator`` so that a seed reproduces them;
on a batch each clip gets its own draw.

Two layers:

* Whole clips and batches already in memory as tensors (RGB values
  ``0..255`` or flow in pixels, at any size): :func:`eval_transform` and
  :func:`train_transform` apply a checkpoint's preset in one call, built from
  :func:`resize_short_side`, :func:`center_crop`, :func:`scale_jitter`,
  :func:`random_crop`, :func:`random_horizontal_flip` and :func:`normalize`::

      clips = train_transform(batch, CHARADES_RGB, generator)  # (B, 3, T, 224, 224)

* Streams: :func:`i3d.video.open_input` resizes frames as they are decoded
  (:func:`resize_frame`, :func:`resize_flow_field`) and draws the crop, flip
  and scale once per clip (:func:`random_crop_offsets`,
  :func:`random_short_side`), so memory stays bounded by the chunk size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from i3d.choices import CROP_COUNTS
from i3d.video.presets import Preprocess

__all__ = [
    "SCALE_JITTER_MAX",
    "FLIP_PROBABILITY",
    "resized_size",
    "resize_frame",
    "resize_flow_field",
    "resize_short_side",
    "crop",
    "center_crop_offsets",
    "center_crop",
    "CROP_COUNTS",
    "CropView",
    "crop_views",
    "view_crop",
    "random_crop_offsets",
    "random_crop",
    "horizontal_flip",
    "random_horizontal_flip",
    "random_short_side",
    "scale_jitter",
    "normalize_rgb",
    "normalize_flow",
    "normalize",
    "eval_transform",
    "train_transform",
]

# Training scale jitter: the short side is drawn uniformly from
# [resize_short_side, resize_short_side * SCALE_JITTER_MAX] (256 -> [256, 320]).
SCALE_JITTER_MAX = 1.25
FLIP_PROBABILITY = 0.5
UINT8_MAX = 255.0
# Per-channel flow factors (x, y) broadcast over (T, H, W): C is dimension -4
# of clips and batches alike.
_FLOW_FACTOR_SHAPE = (2, 1, 1, 1)


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(height, width)`` with the shorter side at ``short_side``, aspect kept.

    The longer side is rounded to the nearest integer, halves up
    (320x240 -> 341x256).
    """
    short, long = min(height, width), max(height, width)
    # round(long * short_side / short) in integers, halves up
    scaled = (2 * long * short_side + short) // (2 * short)
    return (short_side, scaled) if height <= width else (scaled, short_side)


def resize_frame(frame: np.ndarray, short_side: int) -> np.ndarray:
    """Resize one frame ``(H, W)`` or ``(H, W, C)`` so its short side is ``short_side``.

    Bilinear (OpenCV ``INTER_LINEAR``), same dtype. A flow field must go
    through :func:`resize_flow_field` instead, which also scales its values.
    """
    height, width = frame.shape[:2]
    size = resized_size(height, width, short_side)
    if size == (height, width):
        return frame
    return cv2.resize(np.ascontiguousarray(frame), size[::-1], interpolation=cv2.INTER_LINEAR)


def resize_flow_field(field: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a flow field ``(H, W, 2)`` (pixels) to ``size = (h, w)``, scaling its values."""
    height, width = field.shape[:2]
    if (height, width) == tuple(size):
        return field
    out = cv2.resize(np.ascontiguousarray(field, dtype=np.float32), size[::-1], interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= size[1] / width
    out[..., 1] *= size[0] / height
    return out


def resize_short_side(video: torch.Tensor, short_side: int, *, flow: bool = False) -> torch.Tensor:
    """Resize ``(C, T, H, W)`` or ``(B, C, T, H, W)`` so that ``min(H, W) == short_side``.

    Bilinear, half-pixel centres, no antialiasing; float output. With
    ``flow=True`` channel 0 (x) and 1 (y) are scaled with the width and height.
    """
    height, width = video.shape[-2:]
    size = resized_size(height, width, short_side)
    if size == (height, width):
        return video.float()
    lead = video.shape[:-2]
    frames = video.reshape(-1, 1, height, width).float()
    out = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=False)
    out = out.reshape(*lead, *size)
    if flow:
        scale = torch.tensor([size[1] / width, size[0] / height], dtype=out.dtype, device=out.device)
        out = out * scale.view(_FLOW_FACTOR_SHAPE)
    return out


def crop(video: torch.Tensor, top: int, left: int, size: int) -> torch.Tensor:
    """The ``size`` x ``size`` window at ``(top, left)`` of ``(..., H, W)`` (a view)."""
    height, width = video.shape[-2:]
    if size > height or size > width or top < 0 or left < 0 or top + size > height or left + size > width:
        raise ValueError(f"crop {size}x{size} at ({top}, {left}) does not fit in {height}x{width}")
    return video[..., top : top + size, left : left + size]


def center_crop_offsets(height: int, width: int, size: int) -> tuple[int, int]:
    """``(top, left)`` of the centre crop; odd margins put the extra pixel bottom/right."""
    return (height - size) // 2, (width - size) // 2


def center_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    """Centre ``size`` x ``size`` crop of ``(..., H, W)``."""
    return crop(video, *center_crop_offsets(*video.shape[-2:], size), size)


@dataclass(frozen=True)
class CropView:
    """One square view of a frame: its name, ``(top, left)`` in the
    unflipped frame, and whether the crop is then mirrored left-right."""

    name: str
    top: int
    left: int
    flip: bool = False


def _half_even(margin: int) -> int:
    """``round(margin / 2)`` with Python's ties-to-even, as torchvision's
    ``center_crop`` places its crop (``int(round((H - h) / 2.0))``)."""
    return round(margin / 2)


def crop_views(height: int, width: int, size: int, crops: int = 1) -> tuple[CropView, ...]:
    """The ``crops`` views of a ``height`` x ``width`` frame, in output order.

    * 1: the centre crop of :func:`center_crop_offsets` (odd margins: the
      extra pixel bottom/right).
    * 3: mmaction2's ``ThreeCrop`` positions along the long side: ``step =
      (long - size) // 2``, views at ``0``, ``step`` and ``2 * step`` (left,
      centre, right; top, centre, bottom for portrait frames), centred on the
      short side. mmaction2 lists them left, right, centre; here they run in
      spatial order.
    * 5: torchvision's ``five_crop``: top-left, top-right, bottom-left,
      bottom-right (flush with the edges), centre (margins halved with
      ties to even, as torchvision rounds).
    * 10: torchvision's ``ten_crop``: those five, then the same five taken in
      the mirrored frame (whose top-left is the original's top-right, mirrored).
    """
    if crops not in CROP_COUNTS:
        raise ValueError(f"crops must be one of {CROP_COUNTS}, got {crops}")
    if size > height or size > width:
        raise ValueError(f"crop {size} does not fit in {height}x{width}")
    if crops == 1:
        return (CropView("center", *center_crop_offsets(height, width, size)),)
    if crops == 3:
        top, left = center_crop_offsets(height, width, size)
        if width >= height:
            step = (width - size) // 2
            return tuple(CropView(n, top, k * step) for k, n in enumerate(("left", "center", "right")))
        step = (height - size) // 2
        return tuple(CropView(n, k * step, left) for k, n in enumerate(("top", "center", "bottom")))
    bottom, right = height - size, width - size
    five = (
        ("top_left", 0, 0),
        ("top_right", 0, right),
        ("bottom_left", bottom, 0),
        ("bottom_right", bottom, right),
        ("center", _half_even(bottom), _half_even(right)),
    )
    views = tuple(CropView(n, t, left) for n, t, left in five)
    if crops == 10:
        # Column c of the mirrored frame is column width - 1 - c of the frame,
        # so a crop at `left` there covers [right - left, right - left + size) here.
        views += tuple(CropView(f"flip_{n}", t, right - left, True) for n, t, left in five)
    return views


def view_crop(video: torch.Tensor, view: CropView, size: int, *, flow: bool = False) -> torch.Tensor:
    """``view`` of ``(..., C, T, H, W)``: the crop, mirrored if the view says so
    (a flow field's x component then changes sign)."""
    out = crop(video, view.top, view.left, size)
    return horizontal_flip(out, flow=flow) if view.flip else out


def _randint(low: int, high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in ``[low, high]``."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def random_crop_offsets(
    height: int, width: int, size: int, generator: torch.Generator | None = None
) -> tuple[int, int]:
    """Uniform ``(top, left)`` for a ``size`` x ``size`` crop of an ``height`` x ``width`` frame."""
    if size > height or size > width:
        raise ValueError(f"crop {size} does not fit in {height}x{width}")
    return _randint(0, height - size, generator), _randint(0, width - size, generator)


def random_crop(video: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random ``size`` x ``size`` crop, the same for all frames of a clip; per clip on a batch."""
    if video.dim() == 5:
        return torch.stack([random_crop(clip, size, generator) for clip in video])
    return crop(video, *random_crop_offsets(*video.shape[-2:], size, generator), size)


def horizontal_flip(video: torch.Tensor, *, flow: bool = False) -> torch.Tensor:
    """Mirror left-right; a flow field's x component changes sign."""
    out = video.flip(-1)
    if flow:
        sign = torch.tensor([-1.0, 1.0], dtype=out.dtype, device=out.device).view(_FLOW_FACTOR_SHAPE)
        out = out * sign
    return out


def random_horizontal_flip(
    video: torch.Tensor,
    *,
    flow: bool = False,
    p: float = FLIP_PROBABILITY,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """:func:`horizontal_flip` with probability ``p``, drawn per clip."""
    if video.dim() == 5:
        return torch.stack([random_horizontal_flip(clip, flow=flow, p=p, generator=generator) for clip in video])
    if float(torch.rand((), generator=generator)) < p:
        return horizontal_flip(video, flow=flow)
    return video


def random_short_side(short_side: int, generator: torch.Generator | None = None) -> int:
    """A scale-jittered short side, uniform in ``[short_side, short_side * SCALE_JITTER_MAX]``."""
    return _randint(short_side, math.floor(short_side * SCALE_JITTER_MAX), generator)


def scale_jitter(
    video: torch.Tensor,
    short_side: int,
    *,
    flow: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Resize the short side to :func:`random_short_side` (one draw for a whole batch)."""
    return resize_short_side(video, random_short_side(short_side, generator), flow=flow)


def normalize_rgb(video: torch.Tensor) -> torch.Tensor:
    """RGB values ``0..255`` to ``2 * x / 255 - 1`` in ``[-1, 1]``, float32 (a new tensor)."""
    return video.to(torch.float32, copy=True).mul_(2.0 / UINT8_MAX).sub_(1.0)


def normalize_flow(video: torch.Tensor, clip: float) -> torch.Tensor:
    """Flow in pixels, clipped to ``[-clip, clip]`` and divided by ``clip``, float32 (a new tensor)."""
    return video.to(torch.float32, copy=True).clamp_(-clip, clip).div_(clip)


def normalize(video: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """:func:`normalize_rgb` or :func:`normalize_flow`, as the preset's modality says."""
    if preprocess.modality == "rgb":
        return normalize_rgb(video)
    return normalize_flow(video, preprocess.flow_clip)


def eval_transform(video: torch.Tensor, preprocess: Preprocess) -> torch.Tensor:
    """Test-time preprocessing of a whole clip or batch.

    Args:
        video: ``(C, T, H, W)`` or ``(B, C, T, H, W)``: RGB values ``0..255`` or
            flow in pixels, at any size.
        preprocess: the checkpoint's preset.

    Returns:
        ``(C, T, crop, crop)`` (or batched) float32 network input: short side
        resized to ``resize_short_side``, centre crop, values scaled.
    """
    flow = preprocess.modality == "flow"
    resized = resize_short_side(video, preprocess.resize_short_side, flow=flow)
    return normalize(center_crop(resized, preprocess.crop), preprocess)


def train_transform(
    video: torch.Tensor,
    preprocess: Preprocess,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Training augmentation: scale jitter, random crop, random horizontal flip, value scaling.

    Args:
        video: ``(C, T, H, W)`` or ``(B, C, T, H, W)``, as for :func:`eval_transform`.
        preprocess: the checkpoint's preset.
        generator: source of randomness; each clip of a batch gets its own draws.

    Returns:
        ``(C, T, crop, crop)`` (or batched) float32 network input.
    """
    if video.dim() == 5:
        return torch.stack([train_transform(clip, preprocess, generator) for clip in video])
    flow = preprocess.modality == "flow"
    resized = scale_jitter(video, preprocess.resize_short_side, flow=flow, generator=generator)
    cropped = random_crop(resized, preprocess.crop, generator)
    return normalize(random_horizontal_flip(cropped, flow=flow, generator=generator), preprocess)
