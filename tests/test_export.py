"""``i3d export``: files other runtimes load, with the network's numbers."""

from __future__ import annotations

import json

import pytest
import torch

from i3d.cli import main
from i3d.layers import same_padding, tf_same_padding
from i3d.weights import inception_i3d, sha256
from tests.conftest import random_weights_file

# Small frames keep the export and the runs quick; the head's window then
# shrinks to Mixed_5c's 2x2 cells and the file is fixed at 64x64.
SIZE = 64
# The promise for an export: 1e-4 of the output's largest magnitude
# (tests/tolerances.py derives 1.9e-4 as the worst case of two float32
# computations of the whole network; exports are checked at 1e-4 by
# i3d.export and this test holds them to it).
EXPORT_RTOL = 1e-4


@pytest.mark.parametrize("kernel, stride", [(1, 1), (3, 1), (2, 2), (3, 2), (7, 2)])
def test_same_padding_is_tf_same_padding(kernel, stride):
    for n in range(1, 40):
        assert same_padding(n, kernel, stride) == tf_same_padding(n, kernel, stride), n


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return random_weights_file(tmp_path_factory.mktemp("w") / "rgb.safetensors", seed=4)


@pytest.mark.slow
def test_onnx_export_runs_in_onnx_runtime(weights, tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "i3d.onnx"
    assert main(["export", "--weights", str(weights), "--out", str(out), "--size", str(SIZE)]) == 0
    assert "checked in onnxruntime" in capsys.readouterr().out
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, "frames", SIZE, SIZE]  # fixed below 193 pixels
    model = inception_i3d(weights=weights)
    for batch, frames in [(1, 16), (2, 40)]:  # batch and clip length are dynamic
        x = torch.rand(batch, 3, frames, SIZE, SIZE, generator=torch.Generator().manual_seed(frames)) * 2 - 1
        with torch.no_grad():
            want = model(x)
        (got,) = session.run(None, {"video": x.numpy()})
        assert got.shape == tuple(want.shape) == (batch, 400, frames // 8 - 1)
        assert (torch.from_numpy(got) - want).abs().max() <= EXPORT_RTOL * want.abs().max(), frames
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["i3d.weights_sha256"] == sha256(weights)
    assert json.loads(meta["i3d.preprocess"])["modality"] == "rgb" and meta["i3d.output"] == "logits"
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


@pytest.mark.slow
def test_torchscript_endpoint_export(weights, tmp_path):
    out = tmp_path / "i3d.pt"
    argv = ["export", "--weights", str(weights), "--format", "torchscript", "--output", "Mixed_4f", "--out", str(out)]
    assert main([*argv, "--size", "40"]) == 0
    extra = {"i3d.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    assert json.loads(extra["i3d.json"])["i3d.weights_sha256"] == sha256(weights)
    x = torch.rand(1, 3, 11, 47, 33) * 2 - 1  # odd sizes it was not traced with: endpoints are dynamic
    with torch.no_grad():
        want = inception_i3d(weights=weights).forward_endpoints(x, ("Mixed_4f",))["Mixed_4f"]
        got = loaded(x)
    assert got.shape == want.shape and (got - want).abs().max() <= EXPORT_RTOL * want.abs().max()


def test_export_errors_are_one_line(weights, tmp_path, capsys):
    assert main(["export", "--weights", str(weights), "--out", str(tmp_path / "missing" / "x.onnx")]) == 1
    assert capsys.readouterr().err.strip().endswith(f"folder {tmp_path / 'missing'} does not exist")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    assert main(["export", "--weights", str(weights), "--out", str(tmp_path / "link")]) == 1
    assert "not a regular file" in capsys.readouterr().err
    assert main(["export", "--weights", str(weights), "--output", "Mixed_9z", "--out", str(tmp_path / "x.onnx")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("i3d export: error: unknown output 'Mixed_9z'") and err.count("\n") == 1
