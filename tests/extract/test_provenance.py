"""The sidecar says how its features were computed (backend, device,
precision, versions); a resumed run keeps outputs made by another backend or
on another device, refuses those of another precision like any other changed
setting, and keeps outputs whose sidecars predate these keys."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
import torch

from i3d import extract as E
from i3d.version import __version__
from tests.conftest import random_weights_file
from tests.extract.test_extract import write_npy

PROVENANCE = ("backend", "device", "torch_version")  # the keys a sidecar of an earlier version lacks


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return random_weights_file(tmp_path_factory.mktemp("w") / "rgb.safetensors", seed=11)


@pytest.fixture(scope="module")
def extractor(weights) -> E.Extractor:
    return E.Extractor(weights=weights, device="cpu", backend="torch")


@pytest.fixture
def made(tmp_path, extractor) -> tuple[str, Path]:
    """One input extracted: ``(input, output folder)``."""
    src = str(write_npy(tmp_path / "clip.npy", 9, size=16))
    out = tmp_path / "out"
    assert E.extract_all([src], out, extractor, progress=False).done == [src]
    return src, out


def sidecar(out: Path) -> Path:
    return out / "clip.npy.rgb.npy.json"


def untouched(out: Path) -> tuple[int, int, bytes]:
    """What a rewrite of the data file would change: its inode, its mtime and its bytes."""
    data = out / "clip.npy.rgb.npy"
    st = os.stat(data)
    return st.st_ino, st.st_mtime_ns, data.read_bytes()


def test_the_sidecar_says_how_the_features_were_computed(made):
    meta = json.loads(sidecar(made[1]).read_text())
    assert meta["backend"] == "torch" and meta["device"] == "cpu" and meta["precision"] == "fp32"
    assert meta["torch_version"] == torch.__version__ and meta["i3d_version"] == __version__
    assert "openvino_version" not in meta  # only for the openvino backend


@pytest.mark.parametrize(
    "elsewhere",
    [{"device": "cuda"}, {"backend": "openvino", "openvino_version": "2026.4.1"}],
    ids=["made-on-a-gpu", "made-by-openvino"],
)
def test_a_resume_on_another_device_or_backend_keeps_the_outputs(made, extractor, elsewhere):
    src, out = made
    # An output made elsewhere differs only in its sidecar's record (within rounding in its data).
    meta = json.loads(sidecar(out).read_text())
    sidecar(out).write_text(json.dumps({**meta, **elsewhere}))
    before = untouched(out)
    summary = E.extract_all([src], out, extractor, progress=False)
    assert summary.skipped == [src] and not summary.done and not summary.failed
    assert untouched(out) == before
    assert json.loads(sidecar(out).read_text()).items() >= elsewhere.items()  # still says where it was made


def test_a_sidecar_from_before_the_provenance_keys_still_resumes(made, extractor):
    src, out = made
    meta = json.loads(sidecar(out).read_text())
    sidecar(out).write_text(json.dumps({k: v for k, v in meta.items() if k not in PROVENANCE}))
    before = untouched(out)
    summary = E.extract_all([src], out, extractor, progress=False)
    assert summary.skipped == [src] and not summary.failed and untouched(out) == before


def test_a_resume_in_another_precision_is_refused_like_other_settings(made, weights):
    src, out = made
    before = untouched(out)
    log = io.StringIO()
    # Refused before any work, so bf16 never runs here (slow on CPUs without native bf16).
    bf16 = E.Extractor(weights=weights, device="cpu", precision="bf16")
    summary = E.extract_all([src], out, bf16, progress=False, log=log)
    assert [p for p, _ in summary.failed] == [src] and not summary.done
    assert "clip.npy.rgb.npy: made with other settings (precision 'fp32')" in log.getvalue()
    assert untouched(out) == before
