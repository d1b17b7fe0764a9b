"""A tiny per-frame classifier and a tiny recipe: training tests in seconds on the CPU."""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from i3d.train.recipe import CHARADES_RECIPE, Recipe
from i3d.video.presets import Preprocess
from tests.charades.helpers import FPS

# Frames are written at 32x32; training resizes them to 40..50 and crops 32.
FRAME_SIZE = 32
SMALL_RGB = Preprocess("rgb", fps=FPS, resize_short_side=40, crop=32)
CLIP_FRAMES = 16

TINY_RECIPE = dataclasses.replace(
    CHARADES_RECIPE,
    batch_size=2,
    accumulation_steps=2,
    max_steps=6,
    lr_milestones=(2, 4),
    clip_frames=CLIP_FRAMES,
    crop=SMALL_RGB.crop,
)


class TinyNet(nn.Module):
    """``(B, 3, T, H, W) -> (B, K, ceil(T / 4))``: a strided convolution, BatchNorm,
    dropout and a per-time classifier over the top and bottom halves of the frame.

    It has what makes resuming hard (running statistics, random dropout) at a
    thousandth of I3D's cost.
    """

    def __init__(self, num_classes: int = CHARADES_RECIPE.num_classes, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, width, kernel_size=3, stride=2, padding=1)
        self.bn = nn.BatchNorm3d(width)
        self.dropout = nn.Dropout(0.5)
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))  # (B, w, T/2, H/2, W/2)
        x = F.avg_pool3d(x, (2, 1, 1), ceil_mode=True)  # (B, w, T/4, H/2, W/2)
        x = F.adaptive_avg_pool3d(x, (x.shape[2], 2, 1))  # top and bottom halves
        x = x.permute(0, 2, 1, 3, 4).flatten(2)  # (B, T', 2w)
        return self.classifier(self.dropout(x)).transpose(1, 2)


def tiny_recipe(**changes) -> Recipe:
    return dataclasses.replace(TINY_RECIPE, **changes)
