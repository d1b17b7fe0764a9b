"""Feature extraction: exactness, outputs, resume, sharding, bad inputs."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d import extract as E
from i3d.cli import main
from i3d.model import InceptionI3d
from i3d.video import Preprocess
from tests.conftest import random_weights_file
from tests.tolerances import NETWORK_RTOL

# Small frames keep the network cheap; the preset only matters for videos.
SMALL_RGB = Preprocess("rgb", fps=25.0, resize_short_side=40, crop=32)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return random_weights_file(tmp_path_factory.mktemp("w") / "rgb.safetensors", seed=11)


@pytest.fixture(scope="module")
def model(weights) -> InceptionI3d:
    from i3d.weights import inception_i3d

    return inception_i3d(weights=weights)


def write_npy(path: Path, frames: int, size: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    np.save(path, rng.uniform(-1, 1, (1, frames, size, size, 3)).astype(np.float32))
    return path


def one_pass(model, path: Path) -> np.ndarray:
    x = torch.from_numpy(np.load(path)[0]).permute(3, 0, 1, 2)[None]  # (1, 3, T, H, W)
    with torch.no_grad():
        return model.extract_features(x).mean(dim=(3, 4))[0].T.numpy()  # (T', 1024)


@pytest.mark.parametrize("frames", [9, *(pytest.param(n, marks=pytest.mark.slow) for n in (37, 150))])
def test_chunked_extraction_equals_one_pass(tmp_path, weights, model, frames):
    path = write_npy(tmp_path / "v.npy", frames, seed=frames)
    expected = one_pass(model, path)
    assert expected.shape == (max(1, -(-frames // 8) - 1), 1024)
    scale = max(1.0, float(np.abs(expected).max()))
    for chunk in (1, 8, 23, 1000) if frames < 100 else (8, 23, 64, 1000):
        got = E.Extractor(weights=weights, chunk_frames=chunk, device="cpu").extract(path)["rgb"].data
        assert got.shape == expected.shape
        # Random weights give features in the hundreds; real ones near 1.
        assert np.abs(got - expected).max() <= NETWORK_RTOL * scale, chunk


@pytest.mark.slow
def test_clips_mode(tmp_path, weights, model):
    path = write_npy(tmp_path / "v.npy", 50)
    ex = E.Extractor(weights=weights, mode="clips", clip_len=16, step=12, batch=3, chunk_frames=7, device="cpu")
    got = ex.extract(path)["rgb"]
    x = torch.from_numpy(np.load(path)[0]).permute(3, 0, 1, 2)
    starts = list(range(0, 50 - 16 + 1, 12))
    with torch.no_grad():
        expected = [model.extract_features(x[None, :, s : s + 16]).mean(dim=(2, 3, 4))[0].numpy() for s in starts]
    assert got.data.shape == (len(starts), 1024)
    np.testing.assert_allclose(
        got.data, np.stack(expected), rtol=NETWORK_RTOL, atol=NETWORK_RTOL * np.abs(expected).max()
    )
    assert got.meta["row_spans"][1] == [12.0, 28.0] and got.meta["times"] == "frames"
    short = E.Extractor(weights=weights, mode="clips", clip_len=64, device="cpu").extract(path)["rgb"]
    assert short.data.shape == (1, 1024)  # shorter than a window: one row


def test_layers(tmp_path, weights, model):
    path = write_npy(tmp_path / "v.npy", 20)
    x = torch.from_numpy(np.load(path)[0]).permute(3, 0, 1, 2)[None]
    with torch.no_grad():
        logits = model(x)[0].T.numpy()
        mixed = model.forward_endpoints(x, ("Mixed_4f",))["Mixed_4f"][0].movedim(1, 0).numpy()
    got = E.Extractor(weights=weights, layer="logits", chunk_frames=5, device="cpu").extract(path)["rgb"]
    np.testing.assert_allclose(got.data, logits, rtol=NETWORK_RTOL, atol=NETWORK_RTOL * np.abs(logits).max())
    got = E.Extractor(weights=weights, layer="Mixed_4f", chunk_frames=5, device="cpu").extract(path)["rgb"]
    assert got.data.shape == mixed.shape == (5, 832, 2, 2)
    np.testing.assert_allclose(got.data, mixed, rtol=NETWORK_RTOL, atol=NETWORK_RTOL * np.abs(mixed).max())
    assert got.meta["stride"] == 4 and got.meta["window"] == 4


@pytest.mark.parametrize("fmt", E.FORMATS)
def test_formats_roundtrip_and_skip(tmp_path, weights, fmt):
    src = write_npy(tmp_path / "clip.npy", 17)
    ex = E.Extractor(weights=weights, device="cpu")
    out = tmp_path / "out"
    summary = E.extract_all([str(src)], out, ex, fmt=fmt, progress=False)
    assert summary.done == [str(src)] and not summary.failed
    assert E.is_complete(out, "clip.npy", "rgb", fmt)
    meta = json.loads((out / f"clip.npy.rgb.{fmt}.json").read_text())
    assert meta["shape"] == [2, 1024] and meta["frames"] == 17 and meta["weights_sha256"]
    assert meta["row_spans"] == [[0.0, 16.0], [8.0, 17.0]] and meta["layer"] == "pooled"
    again = E.extract_all([str(src)], out, ex, fmt=fmt, progress=False)
    assert again.skipped == [str(src)] and not again.done
    # A truncated data file is not complete: it is redone.
    data = out / f"clip.npy.rgb.{fmt}"
    data.write_bytes(data.read_bytes()[:100])
    assert not E.is_complete(out, "clip.npy", "rgb", fmt)
    assert E.extract_all([str(src)], out, ex, fmt=fmt, progress=False).done == [str(src)]


def test_expand_shard_and_names(tmp_path):
    (tmp_path / "videos").mkdir()
    for name in ("b.mp4", "a.avi", "notes.md"):
        (tmp_path / "videos" / name).write_bytes(b"x")
    frames = tmp_path / "videos" / "ID1"
    frames.mkdir()
    (frames / "ID1-000001.jpg").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\n/x/one.mp4\n\n/y/one.mp4\n")
    inputs = E.expand_inputs([tmp_path / "videos", listing])
    assert inputs == [str(tmp_path / "videos" / n) for n in ("ID1", "a.avi", "b.mp4")] + ["/x/one.mp4", "/y/one.mp4"]
    assert E.expand_inputs([tmp_path], ids=["A", "B"]) == [str(tmp_path / "A"), str(tmp_path / "B")]
    names = E.output_names(inputs)
    assert names[inputs[0]] == str(tmp_path / "videos" / "ID1").lstrip("/")
    assert names["/x/one.mp4"] == "x/one.mp4" and names["/y/one.mp4"] == "y/one.mp4"
    assert E.output_names(inputs[:3]) == {inputs[0]: "ID1", inputs[1]: "a.avi", inputs[2]: "b.mp4"}
    items = [f"v{i}" for i in range(23)]
    parts = [E.shard_inputs(items, i, 4) for i in range(4)]
    assert sorted(sum(parts, [])) == sorted(items)
    assert all(not set(a) & set(b) for i, a in enumerate(parts) for b in parts[i + 1 :])
    assert parts == [E.shard_inputs(items, i, 4) for i in range(4)]  # deterministic
    with pytest.raises(ValueError):
        E.shard_inputs(items, 4, 4)


def test_cli_good_and_bad_inputs(tmp_path, weights, capsys):
    good = [write_npy(tmp_path / f"good{i}.npy", 10 + i) for i in range(2)]
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    bad_shape = tmp_path / "bad.npy"
    np.save(bad_shape, np.zeros((3, 3), np.float32))
    inputs = [str(good[0]), str(empty), str(junk), str(tmp_path / "missing.mp4"), str(bad_shape), str(good[1])]
    out = tmp_path / "out"
    rc = main(["extract", *inputs, "--out", str(out), "--weights", str(weights), "--device", "cpu", "--workers", "0"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "done 2, skipped 0, failed 4" in err
    for path in inputs[1:5]:
        lines = [line for line in err.splitlines() if path in line]
        assert len(lines) == 1, path  # one line each, naming the file
    assert sorted(p.name for p in out.iterdir()) == [
        "good0.npy.rgb.npy",
        "good0.npy.rgb.npy.json",
        "good1.npy.rgb.npy",
        "good1.npy.rgb.npy.json",
    ]


def test_cli_shards_cover_inputs(tmp_path, weights, capsys):
    inputs = [str(write_npy(tmp_path / f"v{i}.npy", 9, size=16, seed=i)) for i in range(5)]
    out = tmp_path / "out"
    for shard in ("0/2", "1/2"):
        base = ["extract", *inputs, "--out", str(out), "--weights", str(weights), "--device", "cpu"]
        assert main([*base, "--shard", shard, "--workers", "0"]) == 0
    assert sorted(p.name for p in out.glob("*.npy")) == [f"v{i}.npy.rgb.npy" for i in range(5)]
    assert "done 2, skipped 0" in capsys.readouterr().err
    assert main(["extract", *inputs, "--out", str(out), "--weights", str(weights), "--shard", "2/2"]) == 2


@pytest.mark.slow
def test_worker_processes(tmp_path, weights):
    inputs = [str(write_npy(tmp_path / f"v{i}.npy", 12 + i, size=16)) for i in range(3)] + [str(tmp_path / "nope.mp4")]
    ex = E.Extractor(weights=weights, device="cpu", chunk_frames=5)
    log = io.StringIO()
    summary = E.extract_all(inputs, tmp_path / "out", ex, workers=2, progress=False, log=log)
    assert summary.done == inputs[:3] and [f for f, _ in summary.failed] == inputs[3:]
    for i in range(3):
        inline = ex.extract(inputs[i])["rgb"].data
        np.testing.assert_array_equal(np.load(tmp_path / "out" / f"v{i}.npy.rgb.npy"), inline)


# ``i3d extract`` in a process that SIGKILLs itself at a chosen point: argv[1]
# is the output file, argv[2] the point ("sidecar": its sidecar is in place
# but its lock not yet removed; "data": its data file is half written).
_KILLED_RUN = """
import os, signal, sys
from i3d.cli import main
from i3d.extract import jobs, writers

victim, point = sys.argv[1:3]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

write_sidecar, write_checked = jobs.write_sidecar, writers._write_checked

def sidecar_then_die(paths, *args, **kwargs):
    write_sidecar(paths, *args, **kwargs)
    if point == "sidecar" and paths.data.name == victim:
        die()

def die_half_way(path, blocks):
    def first_block_then_die():
        for block in blocks:
            yield block
            die()
    return write_checked(path, first_block_then_die() if point == "data" and path.name == victim else blocks)

jobs.write_sidecar, writers._write_checked = sidecar_then_die, die_half_way
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow
@pytest.mark.parametrize("victim, point", [("v0.npy.rgb.npy", "sidecar"), ("v1.npy.rgb.npy", "data")])
def test_killed_run_resumes_without_truncated_files(tmp_path, weights, victim, point):
    inputs = [str(write_npy(tmp_path / f"v{i}.npy", 17, size=32, seed=i)) for i in range(3)]
    out = tmp_path / "out"
    argv = ["extract", *inputs, "--out", str(out), "--weights", str(weights), "--workers", "0"]
    cmd = [sys.executable, "-c", _KILLED_RUN, victim, point, *argv]
    killed = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    leftovers = {p.name for p in out.iterdir() if p.name.startswith(".")}
    lock = f".{victim}.lock"
    assert lock in leftovers  # what the resume must clean up, with the half-written data file:
    assert {n.endswith(".tmp") for n in leftovers - {lock}} == ({True} if point == "data" else set())
    for data in out.glob("*.rgb.npy"):  # whatever exists under an output name is whole
        assert np.load(data).shape == (2, 1024)
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"v{i}.npy.rgb.npy{e}" for i in range(3) for e in ("", ".json")
    )


@pytest.mark.slow
def test_real_clip_decodes_and_extracts(upstream, weights, tmp_path):
    clip = upstream / "video-features" / "v_ZNVhz7ctTq0.mp4"
    ex = E.Extractor(weights=weights, device="cpu", transforms={"rgb": SMALL_RGB})
    features = ex.extract(clip)["rgb"]
    frames = features.meta["frames"]
    assert features.meta["fps"] == 25.0 and frames > 100
    assert features.data.shape == (-(-frames // 8) - 1, 1024)
    assert features.meta["row_spans"][-1][1] == pytest.approx(frames / 25.0)


def test_outputs_of_other_settings_are_never_reused(tmp_path, weights, capsys):
    src = str(write_npy(tmp_path / "clip.npy", 17))
    out = tmp_path / "out"
    base = ["extract", src, "--out", str(out), "--weights", str(weights), "--device", "cpu"]
    assert main(base) == 0
    assert main([*base, "--layer", "Mixed_4f"]) == 1
    err = capsys.readouterr().err
    assert "clip.npy.rgb.npy: made with other settings (layer 'pooled'" in err and "failed 1" in err
    assert np.load(out / "clip.npy.rgb.npy").shape == (2, 1024)  # untouched


def test_unexpected_errors_of_one_input_do_not_stop_the_batch(tmp_path, weights, monkeypatch):
    good = str(write_npy(tmp_path / "good.npy", 9, size=16))
    bad = str(write_npy(tmp_path / "bad.npy", 9, size=16))
    from i3d.extract import pipeline

    real_open = pipeline.open_input

    def flaky_open(path, *args, **kwargs):
        if str(path) == bad:
            raise RuntimeError("decoder exploded")  # not an I3DError
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(pipeline, "open_input", flaky_open)
    ex = E.Extractor(weights=weights, device="cpu")
    summary = E.extract_all([bad, good], tmp_path / "out", ex, progress=False, log=io.StringIO())
    assert summary.done == [good] and summary.failed == [(bad, f"{bad}: RuntimeError: decoder exploded")]


@pytest.mark.slow
def test_rows_leave_no_precision_state_behind(tmp_path, weights):
    ex = E.Extractor(weights=weights, device="cpu", precision="bf16", chunk_frames=4)
    rows = ex.rows("rgb", 40, (torch.rand(3, 4, 16, 16) for _ in range(10)))
    first = next(rows)  # paused inside the generator, between network calls
    a = torch.ones(2, 2)
    assert (a @ a).dtype == torch.float32 and not torch.is_inference_mode_enabled()
    assert len(first) + sum(len(r) for r in rows) == 4


@pytest.mark.slow
def test_flow_stream_takes_weights_flag(tmp_path, capsys):
    flow = random_weights_file(tmp_path / "flow.pt", seed=5, in_channels=2)
    src = tmp_path / "f.npy"
    np.save(src, np.random.default_rng(0).uniform(-1, 1, (1, 9, 16, 16, 2)).astype(np.float32))
    argv = ["extract", str(src), "--out", str(tmp_path / "out"), "--stream", "flow", "--weights", str(flow)]
    assert main([*argv, "--device", "cpu"]) == 0
    assert np.load(tmp_path / "out" / "f.npy.flow.npy").shape == (1, 1024)


def test_input_model_recursion_globs_and_empty_sets(tmp_path, capsys):
    from i3d.video.listing import NoInputs

    for rel in ("top.mp4", "cam1/a.mp4", "cam1/deep/b.avi", "cam2/a.mp4", ".hidden/x.mp4", "cam2/notes.md"):
        (tmp_path / "v" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "v" / rel).write_bytes(b"x")
    frames = tmp_path / "v" / "cam2" / "ID9"
    frames.mkdir()
    (frames / "ID9-000001.jpg").write_bytes(b"x")
    found = E.expand_inputs([tmp_path / "v"])  # folders are searched recursively, hidden entries skipped
    rels = ["cam1/a.mp4", "cam1/deep/b.avi", "cam2/ID9", "cam2/a.mp4", "top.mp4"]
    assert found == [str(tmp_path / "v" / r) for r in rels]
    assert E.output_names(found) == {str(tmp_path / "v" / r): r for r in rels}
    assert E.expand_inputs([str(tmp_path / "v" / "**" / "a.mp4")]) == [str(tmp_path / "v" / r) for r in rels[::3]]
    assert E.expand_inputs([tmp_path / "v" / "top.mp4", str(tmp_path / "v" / "." / "top.mp4")]) == [
        str(tmp_path / "v" / "top.mp4")
    ]  # one input, however spelled
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(NoInputs, match="empty: no video files or frame folders in it or its subfolders"):
        E.expand_inputs([tmp_path / "empty"])
    with pytest.raises(NoInputs, match=r"\*\.webm: the pattern matches no video files"):
        E.expand_inputs([str(tmp_path / "v" / "*.webm")])
    assert main(["extract", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "empty: no video files" in err


@pytest.mark.slow
def test_fps_short_side_and_crop_overrides(tmp_path, weights, capsys):
    from tests.video.helpers import encode, indexed_frames

    video = encode(tmp_path / "clip.mp4", indexed_frames(20, height=40, width=48), rate=25)
    small = ["--short-side", "36", "--crop", "32", "--device", "cpu", "--weights", str(weights)]
    out = tmp_path / "out"
    assert main(["extract", str(video), "--out", str(out), *small]) == 0
    meta = json.loads((out / "clip.mp4.rgb.npy.json").read_text())
    assert meta["frames"] == 20 and meta["preprocess"]["resize_short_side"] == 36 and meta["preprocess"]["crop"] == 32
    # Another rate is another output: never taken for the earlier one.
    assert main(["extract", str(video), "--out", str(out), *small, "--fps", "12.5"]) == 1
    assert "made with other settings (preprocess" in capsys.readouterr().err
    assert main(["extract", str(video), "--out", str(tmp_path / "half"), *small, "--fps", "12.5"]) == 0
    meta = json.loads((tmp_path / "half" / "clip.mp4.rgb.npy.json").read_text())
    assert meta["frames"] == 10 and meta["fps"] == 12.5 and meta["preprocess"]["fps"] == 12.5
    argv = ["extract", str(video), "--out", str(out), "--short-side", "32", "--crop", "64", "--weights", str(weights)]
    assert main(argv) == 1
    assert "crop 64 is larger than the short side 32" in capsys.readouterr().err


def test_shard_auto_from_slurm_and_torchrun():
    from i3d.sharding import parse_shard as _parse_shard

    assert _parse_shard(
        "auto", {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_COUNT": "4"}
    ) == (2, 4)
    assert _parse_shard("auto", {"SLURM_PROCID": "1", "SLURM_NTASKS": "3"}) == (1, 3)
    assert _parse_shard("auto", {"RANK": "2", "WORLD_SIZE": "8"}) == (2, 8)
    assert _parse_shard("auto", {}) == (0, 1)
    with pytest.raises(ValueError, match="task 3 of 2"):
        _parse_shard("auto", {"SLURM_PROCID": "3", "SLURM_NTASKS": "2"})


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path, weights):
    from i3d.progress import Progress

    src = write_npy(tmp_path / "clip.npy", 30)
    log = io.StringIO()
    reporter = Progress("i3d extract", 0, stream=log, terminal=False, interval=0.0)
    ex = E.Extractor(weights=weights, device="cpu", chunk_frames=8)
    assert E.extract_all([str(src)], tmp_path / "out", ex, progress=reporter, log=log).done == [str(src)]
    lines = log.getvalue().splitlines()
    assert lines and all(line.startswith("i3d extract: [1/1] clip.npy (rgb): ") for line in lines)
    assert "\r" not in log.getvalue() and "30/30 frames" in lines[-1] and "frames/s" in lines[-1]
    assert any("ETA" in line for line in lines[:-1])
    quiet = io.StringIO()
    E.extract_all([str(src)], tmp_path / "out2", ex, progress=False, log=quiet)
    assert quiet.getvalue() == ""


@pytest.mark.slow
def test_port_layout(tmp_path, weights, capsys):
    inputs = [write_npy(tmp_path / "a" / f"{name}.npy", 20, size=16, seed=i) for i, name in enumerate(("x", "y"))]
    out = tmp_path / "port"
    base = ["--weights", str(weights), "--device", "cpu"]
    assert main(["extract", *map(str, inputs), "--out", str(out), "--layout", "port", *base]) == 0
    for path in inputs:
        got = np.load(out / f"{path.stem}.npy")
        assert got.shape == (2, 1, 1, 1024)  # (T', 1, 1, 1024), as the port saved them
        np.testing.assert_array_equal(
            got[:, 0, 0], E.Extractor(weights=weights, device="cpu").extract(path)["rgb"].data
        )
    other = write_npy(tmp_path / "b" / "x.npy", 20, size=16)
    assert main(["extract", str(inputs[0]), str(other), "--out", str(out), "--layout", "port", *base]) == 1
    err = capsys.readouterr().err
    assert str(inputs[0]) in err and str(other) in err and "'x'" in err
    assert main(["extract", str(other), "--out", str(out), "--layout", "port", "--format", "npz", *base]) == 2
