"""The ``i3d`` command itself: entry points, ``weights list``, ``convert``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from i3d.cli import main
from i3d.weights import REGISTRY, load_state_dict_file
from tests.conftest import random_weights_file


def test_python_dash_m_and_version():
    result = subprocess.run([sys.executable, "-m", "i3d", "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("i3d ")
    help_text = subprocess.run([sys.executable, "-m", "i3d", "--help"], capture_output=True, text=True).stdout
    for command in ("predict", "extract", "flow", "convert", "weights", "eval", "train"):
        assert command in help_text


def test_weights_list(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("I3D_HOME", str(tmp_path))
    (tmp_path / "rgb_charades.pt").write_bytes(b"x")
    assert main(["weights", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(REGISTRY)
    assert rows["rgb_charades"]["cached"] and not rows["rgb_imagenet"]["cached"]
    assert rows["flow_imagenet"]["modality"] == "flow" and rows["rgb_scratch_kin600"]["classes"] == "kinetics-600 (600)"
    assert main(["weights", "list"]) == 0
    table = capsys.readouterr().out
    assert str(tmp_path) in table and "ImageNet-inflated" in table


@pytest.mark.slow
def test_convert_pt_to_safetensors_and_back(tmp_path, capsys):
    src = random_weights_file(tmp_path / "in.pt", seed=3)
    assert main(["convert", str(src), str(tmp_path / "out.safetensors")]) == 0
    assert main(["convert", str(tmp_path / "out.safetensors"), str(tmp_path / "back.pt")]) == 0
    a, b = load_state_dict_file(src), load_state_dict_file(tmp_path / "back.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    assert main(["convert", str(tmp_path / "junk.pt"), str(tmp_path / "x.safetensors")]) == 1
    assert "junk.pt" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()


def test_convert_lists_pt_tensors_and_refuses_scope(tmp_path, capsys):
    src = random_weights_file(tmp_path / "in.pt", seed=3)
    assert main(["convert", str(src), "--list"]) == 0
    out = capsys.readouterr().out
    assert "Conv3d_1a_7x7.conv3d.weight\tfloat32\t[64, 3, 7, 7, 7]" in out
    assert main(["convert", str(src), str(tmp_path / "o.pt"), "--scope", "RGB"]) == 2
    assert main(["convert", "model.ckpt", str(tmp_path / "o.bin")]) == 1
    assert "output must end in .safetensors or .pt" in capsys.readouterr().err
