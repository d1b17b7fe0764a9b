"""DeepMind's variable names -> InceptionI3d state dict: the five real index
files, a TensorFlow-written mini checkpoint, and full-size conversions."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from i3d.convert.cli import add_convert_arguments, run_convert
from i3d.convert.deepmind import (
    convert_checkpoint,
    convert_deepmind,
    convert_deepmind_checkpoint,
    model_state_shapes,
    split_variables,
)
from i3d.convert.tf_checkpoint import CheckpointReader
from i3d.errors import CheckpointError, WeightsError
from i3d.model import InceptionI3d

from .tf_writer import write_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"
# release -> (scope, input channels, classes, ignored variables)
RELEASES = {
    "rgb_imagenet": ("RGB/inception_i3d", 3, 400, 0),
    "rgb_scratch": ("RGB/inception_i3d", 3, 400, 0),
    "flow_imagenet": ("Flow/inception_i3d", 2, 400, 0),
    "flow_scratch": ("Flow/inception_i3d", 2, 400, 0),
    # A Momentum slot per trained variable: 57 kernels, 57 BatchNorm betas, the logits' kernel and bias.
    "rgb_scratch_kin600": ("", 3, 600, 57 + 57 + 2),
}

# The mapping as the issue states it, written out independently of the code under test.
BRANCHES = {
    "b0": "Branch_0/Conv3d_0a_1x1",
    "b1a": "Branch_1/Conv3d_0a_1x1",
    "b1b": "Branch_1/Conv3d_0b_3x3",
    "b2a": "Branch_2/Conv3d_0a_1x1",
    "b2b": "Branch_2/Conv3d_0b_3x3",
    "b3b": "Branch_3/Conv3d_0b_1x1",
}
TF_LEAVES = {
    "conv3d.weight": "conv_3d/w",
    "conv3d.bias": "conv_3d/b",
    "bn.bias": "batch_norm/beta",
    "bn.running_mean": "batch_norm/moving_mean",
    "bn.running_var": "batch_norm/moving_variance",
}


def deepmind_name(key: str, scope: str) -> str | None:
    """The DeepMind variable that holds state-dict ``key`` (None: bn.weight, counters)."""
    *module, leaf_module, leaf = key.split(".")
    tf_leaf = TF_LEAVES.get(f"{leaf_module}.{leaf}")
    if tf_leaf is None:
        return None
    if module == ["logits"]:
        unit = "Logits/Conv3d_0c_1x1"
    elif len(module) == 2:
        unit = f"{module[0]}/{BRANCHES[module[1]]}"
        unit = unit.replace("Mixed_5b/Branch_2/Conv3d_0b_3x3", "Mixed_5b/Branch_2/Conv3d_0a_3x3")
    else:
        unit = module[0]
    return "/".join(filter(None, (scope, unit, tf_leaf)))


def to_tf_layout(key: str, tensor: torch.Tensor, stats_shape_5d: bool) -> np.ndarray:
    """Kernels to (kT, kH, kW, Cin, Cout); BatchNorm vectors to (1, 1, 1, 1, C) as Kinetics-600 stores them."""
    array = tensor.numpy()
    if array.ndim == 5:
        return np.ascontiguousarray(array.transpose(2, 3, 4, 1, 0))
    return array.reshape(1, 1, 1, 1, -1) if stats_shape_5d and ".bn." in key else array


def deepmind_variables(model: torch.nn.Module, scope: str, stats_shape_5d: bool = False) -> dict[str, np.ndarray]:
    """``model``'s weights under DeepMind's names and layouts."""
    variables = {}
    for key, tensor in model.state_dict().items():
        name = deepmind_name(key, scope)
        if name is not None:
            variables[name] = to_tf_layout(key, tensor, stats_shape_5d)
    return variables


def random_model(in_channels: int = 3, num_classes: int = 400, seed: int = 0) -> InceptionI3d:
    """Random weights and BatchNorm statistics; BatchNorm scales stay 1, as in the release."""
    model = InceptionI3d(num_classes=num_classes, in_channels=in_channels)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            if key.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif key.endswith(("conv3d.weight", "bias", "running_mean")):
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.1)
    return model.eval()


def load_directly(variables: dict[str, np.ndarray], scope: str, in_channels: int, num_classes: int) -> InceptionI3d:
    """A model whose parameters are copied one by one from DeepMind-layout arrays."""
    model = InceptionI3d(num_classes=num_classes, in_channels=in_channels).eval()
    with torch.no_grad():
        for key, tensor in model.state_dict().items():
            name = deepmind_name(key, scope)
            if name is None:
                continue
            value = torch.from_numpy(variables[name])
            tensor.copy_(value.permute(4, 3, 0, 1, 2) if value.dim() == 5 else value.reshape(-1))
    return model


# --- the five releases -------------------------------------------------------------


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_real_checkpoints_map_onto_every_model_parameter(upstream, release):
    scope, in_channels, num_classes, ignored = RELEASES[release]
    reader = CheckpointReader(upstream / "kinetics-i3d" / "checkpoints" / release / "model.ckpt")
    variables = {name: np.zeros(shape, np.float32) for name, (_, shape) in reader.variables().items()}

    split = split_variables(variables)
    assert split.scope == scope
    assert len(split.ignored) == ignored
    assert all(name.endswith("/Momentum") for name in split.ignored)

    model = InceptionI3d(num_classes=num_classes, in_channels=in_channels)
    # Every weight of the release is a model weight under the naming, shapes included.
    model_names = {
        name: value.shape for name, value in deepmind_variables(model, scope, release.endswith("600")).items()
    }
    assert model_names == {name: variables[name].shape for name in split.weights}

    state = convert_deepmind(variables)
    assert set(state) == set(model.state_dict())
    model.load_state_dict(state, strict=True)
    assert all(torch.equal(state[key], torch.ones(state[key].shape)) for key in state if key.endswith("bn.weight"))


def test_misnamed_mixed_5b_branch_is_b2b(upstream):
    reader = CheckpointReader(upstream / "kinetics-i3d" / "checkpoints" / "rgb_imagenet" / "model.ckpt")
    rng = np.random.default_rng(0)
    variables = {name: rng.standard_normal(shape).astype(np.float32) for name, (_, shape) in reader.variables().items()}
    state = convert_deepmind(variables)
    kernel = variables["RGB/inception_i3d/Mixed_5b/Branch_2/Conv3d_0a_3x3/conv_3d/w"]  # (3, 3, 3, 32, 128)
    assert np.array_equal(state["Mixed_5b.b2b.conv3d.weight"].numpy(), kernel.transpose(4, 3, 0, 1, 2))


# --- the TensorFlow-written mini checkpoint ---------------------------------------

MINI_SHAPES = {
    "Conv3d_1a_7x7.conv3d.weight": (4, 3, 3, 3, 3),
    **{f"Conv3d_1a_7x7.bn.{leaf}": (4,) for leaf in ("weight", "bias", "running_mean", "running_var")},
    "Conv3d_1a_7x7.bn.num_batches_tracked": (),
    "Mixed_5b.b2b.conv3d.weight": (5, 4, 3, 3, 3),
    **{f"Mixed_5b.b2b.bn.{leaf}": (5,) for leaf in ("weight", "bias", "running_mean", "running_var")},
    "Mixed_5b.b2b.bn.num_batches_tracked": (),
    "logits.conv3d.weight": (6, 5, 1, 1, 1),
    "logits.conv3d.bias": (6,),
}


def test_mini_checkpoint_converts_values_exactly():
    reader = CheckpointReader(FIXTURES / "mini_i3d.ckpt")
    split = split_variables(reader.variables())
    assert split.ignored == ("RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w/Momentum", "global_step")
    values = reader.read_all(split.weights)
    state = convert_deepmind(values, expected=MINI_SHAPES)

    kernel = values["RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w"]  # (kT, kH, kW, Cin, Cout)
    weight = state["Conv3d_1a_7x7.conv3d.weight"].numpy()  # (Cout, Cin, kT, kH, kW)
    for co, ci, t, h, w in [(0, 0, 0, 0, 0), (3, 2, 1, 0, 2), (1, 2, 2, 1, 0)]:
        assert weight[co, ci, t, h, w] == kernel[t, h, w, ci, co]
    assert np.array_equal(
        state["Mixed_5b.b2b.bn.running_var"].numpy(),
        values["RGB/inception_i3d/Mixed_5b/Branch_2/Conv3d_0a_3x3/batch_norm/moving_variance"].reshape(5),
    )
    assert torch.equal(state["Mixed_5b.b2b.bn.weight"], torch.ones(5))
    assert state["Mixed_5b.b2b.bn.num_batches_tracked"].dtype == torch.long
    assert np.array_equal(
        state["logits.conv3d.bias"].numpy(), values["RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b"]
    )
    assert all(tensor.is_contiguous() for tensor in state.values())


def test_converted_kernel_convolves_like_tensorflow():
    """TF's conv3d over NDHWC with a (kT, kH, kW, Cin, Cout) kernel, written
    out as a sum, equals PyTorch's over NCDHW with the converted kernel."""
    reader = CheckpointReader(FIXTURES / "mini_i3d.ckpt")
    kernel = reader.read("RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w").astype(np.float64)
    weight = convert_deepmind(reader.read_all(split_variables(reader.variables()).weights), expected=MINI_SHAPES)[
        "Conv3d_1a_7x7.conv3d.weight"
    ]
    x = np.random.default_rng(0).standard_normal((1, 5, 6, 7, 3))  # (N, D, H, W, C)
    windows = np.lib.stride_tricks.sliding_window_view(
        x, kernel.shape[:3], axis=(1, 2, 3)
    )  # (N, D', H', W', C, kT, kH, kW)
    tf_out = np.einsum("ndhwcijk,ijkco->ndhwo", windows, kernel)
    torch_out = F.conv3d(torch.from_numpy(x).permute(0, 4, 1, 2, 3), weight.double()).permute(0, 2, 3, 4, 1)
    np.testing.assert_allclose(torch_out.numpy(), tf_out, rtol=1e-12, atol=1e-12)


# --- mapping errors ----------------------------------------------------------------


def mini_values() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "mini_i3d.npz") as values:
        return {key: values[key] for key in values.files}


def test_several_scopes_need_a_choice():
    values = mini_values()
    both = {
        **values,
        **{name.replace("RGB/", "Flow/"): value for name, value in values.items() if name.startswith("RGB/")},
    }
    with pytest.raises(ValueError, match="several models"):
        split_variables(both)
    split = split_variables(both, scope="Flow")
    assert split.scope == "Flow/inception_i3d"
    assert all(name.startswith("Flow/") for name in split.weights)
    assert any(name.startswith("RGB/") for name in split.ignored)
    state = convert_deepmind(both, scope="Flow", expected=MINI_SHAPES)
    assert torch.equal(
        state["logits.conv3d.bias"], torch.from_numpy(values["RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b"])
    )


@pytest.mark.parametrize(
    ("edit", "cause"),
    [
        (
            lambda v: v.pop("RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/moving_mean"),
            "missing: Conv3d_1a_7x7.bn.running_mean",
        ),
        (
            lambda v: v.update(
                {"RGB/inception_i3d/Mixed_3b/Branch_4/Conv3d_0a_1x1/conv_3d/w": np.zeros((1, 1, 1, 2, 2))}
            ),
            "names no I3D unit",
        ),
        (
            lambda v: v.update(
                {"RGB/inception_i3d/Mixed_5b/Branch_2/Conv3d_0b_3x3/conv_3d/w": np.zeros((3, 3, 3, 4, 5), np.float32)}
            ),
            "both map to Mixed_5b.b2b.conv3d.weight",
        ),
        (
            lambda v: v.update({"RGB/inception_i3d/Conv3d_2b_1x1/conv_3d/w": np.zeros((1, 1, 1, 4, 4), np.float32)}),
            "unexpected: Conv3d_2b_1x1.conv3d.weight",
        ),
        (
            lambda v: v.update({"RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b": np.zeros(7, np.float32)}),
            r"wrong shape: logits.conv3d.bias \(7,\) vs \(6,\)",
        ),
        (
            lambda v: v.update({"RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/beta": np.zeros((2, 2), np.float32)}),
            r"expected a vector",
        ),
        (
            lambda v: v.update({"RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w": np.zeros((3, 3, 3, 4), np.float32)}),
            r"expected a \(kT, kH, kW, Cin, Cout\) kernel",
        ),
        (
            lambda v: v.update({"RGB/inception_i3d/Logits/Conv3d_0c_1x1/conv_3d/b": np.zeros(6, np.int32)}),
            "must be floating point",
        ),
    ],
)
def test_mapping_errors_name_the_problem(edit, cause):
    values = mini_values()
    edit(values)
    with pytest.raises(ValueError, match=cause):
        convert_deepmind(values, expected=MINI_SHAPES)


def test_no_weights_at_all_is_an_error():
    with pytest.raises(ValueError, match="no I3D weights"):
        split_variables(["global_step", "beta1_power"])


def test_learned_batchnorm_scale_is_used_when_present():
    values = mini_values()
    gamma = np.full(4, 0.5, np.float32)
    values["RGB/inception_i3d/Conv3d_1a_7x7/batch_norm/gamma"] = gamma
    state = convert_deepmind(values, expected=MINI_SHAPES)
    assert np.array_equal(state["Conv3d_1a_7x7.bn.weight"].numpy(), gamma)


def test_default_expected_shapes_are_the_models():
    shapes = model_state_shapes(in_channels=2, num_classes=600)
    model = InceptionI3d(num_classes=600, in_channels=2)
    assert shapes == {key: tuple(value.shape) for key, value in model.state_dict().items()}


# --- full-size conversion through a checkpoint file -----------------------------------

SCOPE = "RGB/inception_i3d"


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """A full-size RGB I3D checkpoint (~50 MB) with random weights, an
    optimizer slot and a global step, in TensorFlow's format."""
    variables = deepmind_variables(random_model(), SCOPE)
    extra = {
        "global_step": np.array(5, np.int64),
        f"{SCOPE}/Conv3d_1a_7x7/conv_3d/w/Momentum": np.zeros((7, 7, 7, 3, 64), np.float32),
    }
    prefix = tmp_path_factory.mktemp("deepmind") / "model.ckpt"
    write_checkpoint(prefix, {**variables, **extra})
    return prefix, variables


@pytest.mark.slow
def test_converted_file_loads_strictly_and_matches_direct_loading(full_checkpoint, tmp_path):
    prefix, variables = full_checkpoint
    report = convert_checkpoint(prefix, tmp_path / "rgb.safetensors")
    assert report.destination == tmp_path / "rgb.safetensors"
    assert (report.scope, report.in_channels, report.num_classes) == (SCOPE, 3, 400)
    assert report.ignored == (f"{SCOPE}/Conv3d_1a_7x7/conv_3d/w/Momentum", "global_step")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["rgb.safetensors"]  # no temporary left

    converted = InceptionI3d(num_classes=400, in_channels=3).eval()
    converted.load_state_dict(load_file(tmp_path / "rgb.safetensors"), strict=True)
    direct = load_directly(variables, SCOPE, in_channels=3, num_classes=400)
    x = torch.randn(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = direct(x)
        assert torch.equal(converted(x), expected)
    assert expected.shape == (1, 400, 1)


@pytest.mark.slow
def test_pt_output_holds_the_same_tensors(full_checkpoint, tmp_path):
    prefix, _ = full_checkpoint
    convert_checkpoint(prefix, tmp_path / "rgb.pt")
    state = torch.load(tmp_path / "rgb.pt", weights_only=True)
    reference = convert_deepmind_checkpoint(prefix.with_name("model.ckpt.index"))
    assert state.keys() == reference.keys()
    assert all(torch.equal(state[key], reference[key]) for key in state)


def test_corrupt_data_leaves_no_output(full_checkpoint, tmp_path):
    source, _ = full_checkpoint
    for path in source.parent.glob("model.ckpt.*"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    data = tmp_path / "model.ckpt.data-00000-of-00001"
    entry = CheckpointReader(tmp_path / "model.ckpt").entries[f"{SCOPE}/Mixed_4d/Branch_1/Conv3d_0b_3x3/conv_3d/w"]
    with open(data, "r+b") as file:
        file.seek(entry.offset + 7)
        byte = file.read(1)
        file.seek(entry.offset + 7)
        file.write(bytes([byte[0] ^ 0x80]))
    out = tmp_path / "out" / "rgb.safetensors"
    out.parent.mkdir()
    with pytest.raises(
        CheckpointError, match=r"variable 'RGB/inception_i3d/Mixed_4d/Branch_1/Conv3d_0b_3x3/conv_3d/w': crc32c"
    ):
        convert_checkpoint(tmp_path / "model.ckpt", out)
    assert list(out.parent.iterdir()) == []


def test_unknown_output_suffix_is_refused(full_checkpoint, tmp_path):
    with pytest.raises(WeightsError, match=r"\.safetensors or \.pt"):
        convert_checkpoint(full_checkpoint[0], tmp_path / "rgb.bin")
    assert list(tmp_path.iterdir()) == []


# --- CLI ---------------------------------------------------------------------------


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="i3d convert")
    add_convert_arguments(parser)
    return run_convert(parser.parse_args(argv))


@pytest.mark.slow
def test_cli_converts(full_checkpoint, tmp_path, capsys):
    out = tmp_path / "rgb.safetensors"
    assert run_cli(str(full_checkpoint[0]), str(out)) == 0
    assert out.is_file()
    printed = capsys.readouterr().out
    assert "3 input channels, 400 classes" in printed and "ignored 2 non-model variables" in printed


def test_cli_lists_variables(capsys):
    assert run_cli(str(FIXTURES / "mini_i3d.ckpt"), "--list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert "global_step\tint64\t[]" in lines
    assert "RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w\tfloat32\t[3, 3, 3, 3, 4]" in lines


def test_cli_reports_errors_on_one_line(tmp_path, capsys):
    assert run_cli(str(tmp_path / "missing.ckpt"), str(tmp_path / "out.safetensors")) == 1
    err = capsys.readouterr().err
    assert (
        err.startswith(f"i3d: error: {tmp_path / 'missing.ckpt.index'}: cannot read the index") and err.count("\n") == 1
    )
    assert not (tmp_path / "out.safetensors").exists()
    assert run_cli(str(tmp_path / "missing.ckpt")) == 2
