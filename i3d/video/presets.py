"""Preprocessing presets: what each checkpoint expects its input to look like.

A preset is plain data; :mod:`i3d.video.transforms` turns it into tensors.
The numbers are DeepMind's (``kinetics-i3d`` README) and the Charades
fine-tuning recipe of the PyTorch port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Modality = Literal["rgb", "flow"]

# Flow values are clipped to +-FLOW_CLIP pixels, then divided by FLOW_CLIP,
# so that they lie in [-1, 1] like RGB input.
FLOW_CLIP = 20.0


@dataclass(frozen=True)
class Preprocess:
    """How frames become network input.

    Attributes:
        modality: ``"rgb"`` (3 channels) or ``"flow"`` (2 channels, x then y).
        fps: frames per second the network was trained at; sources are
            resampled to it by timestamp. ``None`` keeps the source rate.
        resize_short_side: the shorter frame side is resized to this many
            pixels, keeping the aspect ratio (bilinear).
        crop: side of the square centre crop (test time) or random crop
            (training).
        flow_clip: flow values are clipped to ``[-flow_clip, flow_clip]`` and
            divided by ``flow_clip``.

    RGB values become ``2 * x / 255 - 1``, in ``[-1, 1]``.
    """

    modality: Modality
    fps: float | None
    resize_short_side: int = 256
    crop: int = 224
    flow_clip: float = FLOW_CLIP

    @property
    def channels(self) -> int:
        return 3 if self.modality == "rgb" else 2


KINETICS_RGB = Preprocess("rgb", fps=25.0)
KINETICS_FLOW = Preprocess("flow", fps=25.0)
# Charades distributes its frames (videos and frame folders) at 24 frames per second.
CHARADES_FPS = 24.0
CHARADES_RGB = Preprocess("rgb", fps=CHARADES_FPS)
CHARADES_FLOW = Preprocess("flow", fps=CHARADES_FPS)


def with_overrides(
    preprocess: Preprocess, *, fps: float | None = None, short_side: int | None = None, crop: int | None = None
) -> Preprocess:
    """``preprocess`` with the given fields replaced (``None`` keeps one).

    Raises:
        ValueError: a value is not positive, or the crop exceeds the short side.
    """
    from dataclasses import replace

    for name, value in (("fps", fps), ("short side", short_side), ("crop", crop)):
        if value is not None and not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    changed = replace(
        preprocess,
        fps=preprocess.fps if fps is None else float(fps),
        resize_short_side=preprocess.resize_short_side if short_side is None else int(short_side),
        crop=preprocess.crop if crop is None else int(crop),
    )
    if changed.crop > changed.resize_short_side:
        raise ValueError(f"crop {changed.crop} is larger than the short side {changed.resize_short_side}")
    return changed
