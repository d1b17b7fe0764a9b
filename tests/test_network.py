"""The one loader of an inference network (predict, extract, fvd)."""

from __future__ import annotations

import dataclasses

import pytest
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


@pytest.mark.slow
def test_a_model_from_i3d_train_runs_with_the_input_it_was_trained_on(tmp_path):
    # A model fine-tuned on 112-pixel crops at 10 fps must be run on them (predict, extract, eval accuracy).
    from i3d.model import InceptionI3d
    from i3d.train.export import ModelInput, save_model
    from i3d.video.presets import Preprocess

    trained = ModelInput(Preprocess("rgb", fps=10.0, resize_short_side=128, crop=112), clip_frames=16)
    path = save_model(InceptionI3d(num_classes=2).state_dict(), tmp_path / "model.safetensors", ["a", "b"], trained)
    net = load_network(path, Placement(torch.device("cpu")))
    assert (net.preprocess, net.trained_input) == (trained.preprocess, trained)
    assert load_network(path, Placement(torch.device("cpu")), crop=100).preprocess.crop == 100  # a flag still wins
    from i3d.predict import Classifier

    assert Classifier(rgb_weights=path, device="cpu").models[0].preprocess == trained.preprocess
    plain = save_model(InceptionI3d(num_classes=2).state_dict(), tmp_path / "plain.safetensors", ["a", "b"])
    net = load_network(plain, Placement(torch.device("cpu")))
    assert (net.preprocess, net.trained_input) == (default_transforms(3), None)
