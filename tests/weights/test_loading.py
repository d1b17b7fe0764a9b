"""Loading weight files safely: no code runs, names and shapes checked, hostile files fail in one line."""

from __future__ import annotations

import os

import pytest
import torch

from i3d import weights as W
from i3d.cli import main
from i3d.errors import WeightsError
from i3d.model import InceptionI3d
from tests.conftest import randomize


def test_safe_load_refuses_code(tmp_path):
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(1), "x": Evil()}, path)
    with pytest.raises(WeightsError, match="refused to load"):
        W.load_state_dict_file(path)
    assert not marker.exists()


@pytest.mark.slow
def test_load_pt_and_safetensors_roundtrip(tmp_path):
    model = randomize(InceptionI3d(num_classes=157), seed=2)
    state = {"module." + k: v for k, v in model.state_dict().items() if "num_batches" not in k}
    want = model.state_dict()  # once: each state_dict() call walks every module
    for name in ("m.pt", "m.safetensors"):
        path = W.save_state_dict(state, tmp_path / name)
        loaded = W.inception_i3d(weights=path)
        assert loaded.num_classes == 157
        got = loaded.state_dict()
        for k in state:
            k = k.removeprefix("module.")
            assert torch.equal(got[k], want[k]), k
    torch.save({"state_dict": state}, tmp_path / "wrapped.pt")
    assert W.inception_i3d(weights=tmp_path / "wrapped.pt", num_classes=10).num_classes == 10


def test_mismatch_names_keys(tmp_path):
    state = InceptionI3d().state_dict()
    state.pop("Mixed_4b.b1b.conv3d.weight")
    state["extra.weight"] = torch.zeros(1)
    state["logits.conv3d.bias"] = torch.zeros(3)
    with pytest.raises(
        WeightsError, match=r"missing: Mixed_4b\.b1b\.conv3d\.weight.*unexpected: extra\.weight.*logits"
    ):
        W.load_weights(InceptionI3d(), state, "x.pt")


def test_unreadable_files(tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    for name in ("junk.safetensors", "junk.pt", "missing.pt"):
        with pytest.raises(WeightsError, match=name):
            W.load_state_dict_file(tmp_path / name)
    with pytest.raises(WeightsError, match="unknown weights"):
        W.inception_i3d(weights="no_such_weights")


@pytest.mark.slow
# ---- hostile weight files (issue 10): one line naming the file and the cause ----------------


@pytest.mark.slow
def test_hostile_weight_files_fail_in_one_line(tmp_path, capsys):
    good = {k: v for k, v in randomize(InceptionI3d(), seed=6).state_dict().items()}
    torch.save({1: torch.zeros(1), "a": torch.zeros(1)}, tmp_path / "int_keys.pt")
    with pytest.raises(WeightsError, match=r"int_keys\.pt: keys must be parameter names, found 1"):
        W.load_state_dict_file(tmp_path / "int_keys.pt")
    torch.save({**good, "Conv3d_1a_7x7.conv3d.weight": torch.tensor(1.0)}, tmp_path / "scalar.pt")
    with pytest.raises(WeightsError, match=r"scalar\.pt: Conv3d_1a_7x7\.conv3d\.weight has shape \(\)"):
        W.inception_i3d(weights=tmp_path / "scalar.pt")
    torch.save({**good, "Mixed_3b.b0.bn.running_mean": torch.tensor(1.0)}, tmp_path / "scalar_bn.pt")
    with pytest.raises(WeightsError, match=r"scalar_bn\.pt: does not fit the model; shape mismatch: Mixed_3b"):
        W.inception_i3d(weights=tmp_path / "scalar_bn.pt")
    torch.save({k: (v * 100).long() if v.is_floating_point() else v for k, v in good.items()}, tmp_path / "ints.pt")
    with pytest.raises(WeightsError, match=r"ints\.pt: does not fit the model; not floating point: .*\(int64\)"):
        W.inception_i3d(weights=tmp_path / "ints.pt")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in good.items()}, tmp_path / "half.pt")
    with pytest.warns(W.WeightsWarning, match=r"half\.pt: weights stored as float16, converted to float32"):
        model = W.inception_i3d(weights=tmp_path / "half.pt")
    assert torch.equal(model.state_dict()["logits.conv3d.bias"], good["logits.conv3d.bias"].half().float())

    (tmp_path / "out_dir").mkdir()
    (tmp_path / "folder.pt").mkdir()
    for output in (tmp_path / "out_dir", tmp_path / "folder.pt"):
        with pytest.raises(SystemExit) as refused:  # checked with the flags: a usage error
            main(["convert", str(tmp_path / "half.pt"), str(output)])
        assert refused.value.code == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and f"{output}: is a folder" in err
    with pytest.raises(WeightsError, match=r"is a folder"):
        W.inception_i3d(weights=tmp_path / "out_dir")
    os.mkfifo(tmp_path / "labels.fifo")
    with pytest.raises(WeightsError, match=r"labels\.fifo: cannot read labels \(not a regular file\)"):
        W.read_labels(tmp_path / "labels.fifo")
