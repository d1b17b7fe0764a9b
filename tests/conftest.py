"""Shared fixtures: the upstream reference data beside the checkout, and a
model with random weights and non-trivial BatchNorm statistics."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

UPSTREAM = Path(__file__).resolve().parents[1].parent / "shared" / "upstream"


@pytest.fixture(scope="session")
def upstream() -> Path:
    """``../shared/upstream``; tests that need it skip where it is absent."""
    if not UPSTREAM.is_dir():
        pytest.skip("../shared/upstream is not present")
    return UPSTREAM


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights whose activations stay near unit scale, with BatchNorm
    statistics far from the identity, so that padding and eps mistakes show.

    BatchNorm statistics are first measured on a random input (so that the
    activations neither vanish nor explode over 60 layers), then variances
    are shrunk by up to 20x, with the BatchNorm scale shrunk to match, which
    keeps the output scale while making ``eps`` matter.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith(".weight") and "bn" not in name:
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / t[0].numel()) ** 0.5)
            elif name.endswith("bn.bias") or name.endswith("conv3d.bias"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
        bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d)]
        for bn in bns:
            bn.momentum = 1.0  # running stats := this batch's stats
        channels = model.Conv3d_1a_7x7.conv3d.in_channels
        model.train()(torch.rand((2, channels, 16, 64, 64), generator=g) * 2 - 1)
        for bn in bns:
            bn.momentum = 0.01
            shrink = torch.rand(bn.running_var.shape, generator=g) * 0.95 + 0.05
            bn.running_var.mul_(shrink)
            bn.weight.copy_(shrink.sqrt() * (torch.rand(shrink.shape, generator=g) + 0.5))
    return model.eval()


def random_weights_file(path: Path, seed: int, in_channels: int = 3) -> Path:
    """A checkpoint file of :func:`randomize`d weights (``.pt`` or ``.safetensors``)."""
    from i3d.model import InceptionI3d
    from i3d.weights import save_state_dict

    return save_state_dict(randomize(InceptionI3d(in_channels=in_channels), seed).state_dict(), path)
