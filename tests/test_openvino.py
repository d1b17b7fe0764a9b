"""The openvino backend: whole inputs run as one OpenVINO graph and equal
torch's results; longer inputs stay exact (cut into chunks in torch); the
commands route whole inputs to the graph and agree with ``--backend torch``; bad combinations are one-line errors."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from i3d import console
from i3d.chunked import chunked_outputs, run_clips
from i3d.cli import main
from i3d.model import InceptionI3d
from i3d.runtime import Placement, prepare
from tests.conftest import random_weights_file, randomize
from tests.fvd.conftest import tiny_videos
from tests.tolerances import NETWORK_RTOL


def close(got: torch.Tensor | np.ndarray, want: torch.Tensor | np.ndarray, rtol: float = NETWORK_RTOL) -> bool:
    """Both sum in their own order (see tests/tolerances.py): within ``rtol`` of the largest magnitude."""
    got, want = torch.as_tensor(got).float(), torch.as_tensor(want).float()
    return got.shape == want.shape and bool((got - want).abs().max() <= rtol * want.abs().max())


@pytest.fixture(scope="module")
def model() -> InceptionI3d:
    """One model for the module: its compiled graphs (seconds to convert) are cached on it."""
    pytest.importorskip("openvino")
    return prepare(randomize(InceptionI3d(), seed=7), torch.device("cpu"), "fp32")  # type: ignore[return-value]


def clips(batch: int, frames: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, frames, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.slow
def test_run_clips_equals_torch_at_any_length(model):
    for batch, frames in ((2, 16), (1, 27)):  # one graph: dynamic batch and time
        x = clips(batch, frames, seed=frames)
        with torch.inference_mode():
            want = model(x)
        (got,) = run_clips(model, [x], "logits", backend="openvino")
        assert close(got, want), (batch, frames)


@pytest.mark.slow
def test_a_long_input_in_chunks_stays_exact(model, monkeypatch):
    x = clips(1, 27, seed=3)
    with torch.inference_mode():
        want = model(x)
    import i3d.openvino

    calls = []
    real = i3d.openvino.compiled_model
    monkeypatch.setattr(i3d.openvino, "compiled_model", lambda *a: calls.append(a) or real(*a))
    got = torch.cat(list(chunked_outputs(model, x.split(10, dim=2), 27, "logits", backend="openvino")), dim=2)
    assert close(got, want)
    assert not calls  # chunks run in torch: no graph


@pytest.fixture
def fake_openvino(monkeypatch):
    """OpenVINO's conversion and compilation replaced by recorders (converting
    the real network takes seconds): what :func:`i3d.openvino.compiled_model`
    asks for, and how often."""
    openvino = pytest.importorskip("openvino")
    import i3d.export.writers

    made: list[dict] = []

    class Core:
        def compile_model(self, ir, device, config):
            made.append({"device": device, **config})
            return object()

    monkeypatch.setattr(i3d.export.writers, "exported_program", lambda *a, **k: object())
    monkeypatch.setattr(openvino, "convert_model", lambda program: object())
    monkeypatch.setattr(openvino, "Core", Core)
    return made


def test_a_graph_is_made_once_per_key_and_again_for_new_weights(fake_openvino):
    from i3d.openvino import compiled_model

    model = randomize(InceptionI3d(), seed=7)
    first = compiled_model(model, "logits", "fp32", 64, 64)
    assert compiled_model(model, "logits", "fp32", 64, 64) is first and len(fake_openvino) == 1
    compiled_model(model, "logits", "bf16", 64, 64)
    assert [m["INFERENCE_PRECISION_HINT"] for m in fake_openvino] == ["f32", "bf16"]
    assert all(m["device"] == "CPU" and m["INFERENCE_NUM_THREADS"] == torch.get_num_threads() for m in fake_openvino)
    model.load_state_dict(randomize(InceptionI3d(), seed=8).state_dict())
    assert compiled_model(model, "logits", "fp32", 64, 64) is not first and len(fake_openvino) == 3


def test_a_load_into_a_model_built_in_inference_mode_makes_a_new_graph(fake_openvino):
    from i3d.openvino import compiled_model

    with torch.inference_mode():  # its tensors keep no version: the load is what tells
        model = InceptionI3d()
        first = compiled_model(model, "logits", "fp32", 64, 64)
        model.load_state_dict(randomize(InceptionI3d(), seed=8).state_dict())
        assert compiled_model(model, "logits", "fp32", 64, 64) is not first and len(fake_openvino) == 2


NOTE = "converting the network for OpenVINO"


def test_a_conversion_is_announced_by_one_line_and_a_cached_graph_by_none(fake_openvino, capsys):
    from i3d.openvino import compiled_model

    model = randomize(InceptionI3d(), seed=7)
    compiled_model(model, "logits", "fp32", 64, 64)
    compiled_model(model, "logits", "fp32", 64, 64)  # cached: nothing converts, nothing is said
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"i3d: {NOTE} (logits, fp32; once per model")
    with console.quiet():
        compiled_model(model, "logits", "bf16", 64, 64)
    assert len(fake_openvino) == 2 and capsys.readouterr().err == ""


@pytest.mark.parametrize("quiet", [False, True])
def test_a_command_announces_a_conversion_unless_quiet(fake_openvino, capsys, monkeypatch, tmp_path, quiet):
    import i3d.extract.cli
    from i3d.openvino import compiled_model

    def run_extract(args) -> int:  # the first whole input of an extract run, without the run
        compiled_model(InceptionI3d(), "pooled", "fp32", 64, 64)
        return 0

    monkeypatch.setattr(i3d.extract.cli, "run_extract", run_extract)
    assert main(["extract", "v.npy", "--out", str(tmp_path), *(["--quiet"] if quiet else [])]) == 0
    err = capsys.readouterr().err
    assert len(fake_openvino) == 1 and err.count(f"i3d extract: {NOTE} (pooled, fp32;") == (not quiet)


def test_bad_combinations_are_one_line_errors(monkeypatch):
    with pytest.raises(ValueError, match="CPU only"):
        Placement(torch.device("cuda"), "fp32", "openvino")
    for precision in ("fp16", "tf32"):
        with pytest.raises(ValueError, match=f"fp32 or bf16, not {precision}"):
            Placement(torch.device("cpu"), precision, "openvino")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend must be one of"):
        Placement.resolve("cpu", "fp32", "onnx")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ValueError, match=r'pip install "i3d\[openvino\]"'):
        Placement.resolve(None, "fp32", "openvino")
    with pytest.raises(ValueError, match="not installed"):
        next(run_clips(InceptionI3d(), [torch.zeros(1, 3, 9, 32, 32)], backend="openvino"))
    assert Placement.resolve("cpu", "fp32", "torch").backend == "torch"


def test_cli_errors_name_the_cause(tmp_path, capsys, monkeypatch):
    video = tmp_path / "v.npy"
    np.save(video, np.zeros((1, 9, 16, 16, 3), np.float32))
    # The placement is checked before the weights are read: none are needed.
    base = ["predict", str(video), "--weights", str(tmp_path / "none.pt"), "--backend", "openvino"]
    monkeypatch.setattr("i3d.runtime.cpu_has_native_bf16", lambda: False)
    assert main([*base, "--precision", "bf16"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "i3d predict: error:" in err and "native bf16" in err
    with pytest.raises(SystemExit):
        main(["extract", str(video), "--out", str(tmp_path / "o"), "--backend", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    pytest.importorskip("openvino")
    return random_weights_file(tmp_path_factory.mktemp("w") / "rgb.pt", seed=9)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("v") / "v.npy"
    np.save(path, np.random.default_rng(0).uniform(-1, 1, (1, 19, 40, 48, 3)).astype(np.float32))
    return path


@pytest.fixture
def stand_in(monkeypatch):
    """The commands' whole-graph calls answered by torch and recorded: the
    commands' plumbing is what these tests check (the graph itself is
    checked against torch above, and converting it costs seconds per model)."""
    import i3d.openvino
    from i3d.chunked import ChunkedI3d

    calls: list[tuple[str, str]] = []

    def whole_graph(model, output, precision):
        calls.append((output, precision))

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():  # as OpenVINO: no autograd whatever the caller's mode
                return ChunkedI3d(model, x.shape[2], output).push(x)

        return run

    monkeypatch.setattr(i3d.openvino, "whole_graph", whole_graph)
    return calls


@pytest.mark.slow
def test_predict_cli_agrees_with_torch(weights, video, capsys, stand_in):
    argv = ["predict", str(video), "--weights", str(weights), "--json", "--top", "5", "--quiet"]
    docs = []
    for backend in ("torch", "openvino"):
        assert main([*argv, "--clips", "2", "--clip-len", "16", "--backend", backend]) == 0
        docs.append(json.loads(capsys.readouterr().out)[0]["top"])
    want, got = ([t["logit"] for t in doc] for doc in docs)
    assert close(got, want) and stand_in == [("logits", "fp32")]


@pytest.mark.slow
def test_extract_cli_agrees_with_torch(weights, video, tmp_path, stand_in):
    features = {}
    for backend in ("torch", "openvino"):
        out = tmp_path / backend
        argv = ["extract", str(video), "--out", str(out), "--weights", str(weights), "--workers", "0", "--quiet"]
        assert main([*argv, "--backend", backend]) == 0  # one chunk: the whole video in one graph
        (features[backend],) = [np.load(f) for f in out.rglob("*.npy")]
    assert close(features["openvino"], features["torch"]) and stand_in == [("pooled", "fp32")]
    (sidecar,) = (tmp_path / "openvino").rglob("*.json")
    meta = json.loads(sidecar.read_text())
    assert meta["backend"] == "openvino" and meta["device"] == "cpu" and meta["openvino_version"]
    # Resumed in torch: the backend changes nothing beyond rounding, so the output is kept.
    data = sidecar.with_suffix("")
    made = data.stat().st_mtime_ns
    assert main([*argv, "--backend", "torch"]) == 0  # argv: the openvino run's, --out included
    assert data.stat().st_mtime_ns == made and json.loads(sidecar.read_text())["backend"] == "openvino"


@pytest.mark.slow
def test_fvd_cli_embeddings_agree_with_torch(weights, tmp_path, stand_in):
    from i3d.fvd.stats import Statistics

    videos = tmp_path / "videos.npy"
    np.save(videos, tiny_videos(2, seed=1, frames=9))
    embeddings = {}
    for backend in ("torch", "openvino"):
        out = tmp_path / f"{backend}.npz"
        argv = ["fvd", "stats", str(videos), "--out", str(out), "--kvd", "--weights", str(weights), "--device", "cpu"]
        assert main([*argv, "--quiet", "--backend", backend]) == 0
        embeddings[backend] = Statistics.load(out).activations  # (2, 400): the kept embeddings
    assert close(embeddings["openvino"], embeddings["torch"]) and stand_in and {c[0] for c in stand_in} == {"logits"}
