"""The one loader of an inference network (predict, extract, fvd)."""

from __future__ import annotations

import dataclasses

import torch

from i3d.network import load_network
from i3d.runtime import Placement
from i3d.weights import default_transforms, sha256
from tests.conftest import random_weights_file


def test_a_checkpoint_file_loads_prepared_with_its_overrides(tmp_path):
    path = random_weights_file(tmp_path / "flow.pt", seed=5, in_channels=2)
    placement = Placement(torch.device("cpu"), "fp32")
    net = load_network(path, placement, in_channels=2, short_side=128, crop=112, bn_eps=1e-5)
    assert (net.weights, net.sha256, net.placement) == (str(path), sha256(path), placement)
    assert net.entry is None and not net.model.training
    assert net.model.in_channels == 2
    assert net.preprocess == dataclasses.replace(default_transforms(2), resize_short_side=128, crop=112)
    assert {m.eps for m in net.model.modules() if isinstance(m, torch.nn.BatchNorm3d)} == {1e-5}


def test_a_given_preprocess_replaces_the_weights_own(tmp_path):
    path = random_weights_file(tmp_path / "rgb.pt", seed=6)
    own = dataclasses.replace(default_transforms(3), fps=10.0)
    net = load_network(path, Placement(torch.device("cpu")), preprocess=own, crop=160)
    assert net.preprocess == dataclasses.replace(own, crop=160)
