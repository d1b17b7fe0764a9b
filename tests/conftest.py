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
    """Random weights with BatchNorm statistics far from the identity, so that
    padding or eps mistakes show in the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 0.5 + 1e-3)
            elif name.endswith("bn.weight"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith(".weight"):
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
    return model.eval()
