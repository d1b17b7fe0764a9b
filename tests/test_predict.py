"""``i3d predict`` and :class:`i3d.predict.Classifier` with local weights."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from i3d.cli import main
from i3d.model import InceptionI3d
from i3d.predict import Classifier
from i3d.video import read_sample_gif
from tests.conftest import random_weights_file, randomize
from tests.tolerances import NETWORK_RTOL


@pytest.fixture(scope="module")
def rgb_weights(tmp_path_factory) -> Path:
    return random_weights_file(tmp_path_factory.mktemp("w") / "rgb.safetensors", seed=21)


@pytest.fixture(scope="module")
def flow_weights(tmp_path_factory) -> Path:
    return random_weights_file(tmp_path_factory.mktemp("w") / "flow.pt", seed=22, in_channels=2)


@pytest.fixture(scope="module")
def cricket_npy(upstream, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("sample") / "v_CricketShot_g04_c01_rgb.npy"
    np.save(path, read_sample_gif(upstream / "kinetics-i3d" / "v_CricketShot_g04_c01_rgb.gif"))
    return path


def check_json(doc, videos, labels, k):
    assert [d["video"] for d in doc] == [str(Path(v)) for v in videos]
    for d in doc:
        assert len(d["top"]) == k and set(d["top"][0]) == {"label", "index", "prob", "logit"}
        logits = [t["logit"] for t in d["top"]]
        assert logits == sorted(logits, reverse=True)
        assert all(labels[t["index"]] == t["label"] and 0 <= t["prob"] <= 1 for t in d["top"])


@pytest.mark.slow
def test_predict_json_on_real_inputs(upstream, rgb_weights, cricket_npy, tmp_path, capsys):
    label_file = upstream / "kinetics-i3d" / "label_map.txt"
    labels = label_file.read_text().splitlines()
    clip = upstream / "video-features" / "v_ZNVhz7ctTq0.mp4"
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(clip.read_bytes()[:3000])  # the header and little else
    videos = [str(cricket_npy), str(broken), str(clip)]
    argv = ["predict", *videos, "--weights", str(rgb_weights), "--labels", str(label_file), "--json", "--top", "3"]
    argv.append("--quiet")  # no progress lines: stderr holds the errors only
    # The real clip is decoded whole (350 frames at 25 fps) into 64-pixel frames: what is checked of
    # its entry (top-k in order, labels) does not depend on the size, and 224 pixels cost ~7 s.
    # A .npy is the network input itself, never resized: the cricket sample stays 224x224.
    argv += ["--short-side", "64", "--crop", "64"]
    rc = main([*argv, "--device", "cpu"])
    out, err = capsys.readouterr()
    assert rc == 1
    assert [line for line in err.splitlines() if line.strip()] == [err.strip()] and str(broken) in err
    check_json(json.loads(out), [videos[0], videos[2]], labels, 3)

    # The CLI prints the time average of the per-time logits of one pass
    # over DeepMind's sample, and its softmax.
    model = randomize(InceptionI3d(), seed=21)
    x = torch.from_numpy(np.load(cricket_npy)).permute(0, 4, 1, 2, 3)  # (1, 3, 79, 224, 224)
    with torch.no_grad():
        expected = model(x)[0].mean(dim=1)
    probs = torch.softmax(expected, dim=0)
    for rank, top in enumerate(json.loads(out)[0]["top"]):
        index = int(torch.argsort(expected, descending=True)[rank])
        assert top["index"] == index and top["label"] == labels[index]
        assert top["logit"] == pytest.approx(
            float(expected[index]), rel=NETWORK_RTOL, abs=NETWORK_RTOL * float(expected.abs().max())
        )
        assert top["prob"] == pytest.approx(float(probs[index]), abs=NETWORK_RTOL * float(expected.abs().max()))


def write_video(path: Path, frames: int = 12, size: tuple[int, int] = (48, 64), fps: int = 25) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        yy, xx = np.mgrid[: size[0], : size[1]]
        for t in range(frames):
            image = ((np.sin((xx - 2 * t) / 5.0) + 1) * 100 + yy).clip(0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.stack([image] * 3, axis=-1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.slow
def test_joint_stream_adds_logits(rgb_weights, flow_weights, tmp_path):
    video = write_video(tmp_path / "moving.mp4", frames=5)  # TV-L1 at 256 pixels is slow on a CPU
    common = dict(
        rgb_weights=rgb_weights,
        flow_weights=flow_weights,
        labels=[str(i) for i in range(400)],
        device="cpu",
        flow_engine="opencv",  # the sum does not depend on the engine; OpenCV's is the quick one on a CPU
    )
    rgb = Classifier("rgb", **common)
    flow = Classifier("flow", flow_dir=tmp_path / "flow", **common)
    joint = Classifier("joint", flow_dir=tmp_path / "flow", **common)
    both = rgb.logits(video) + flow.logits(video)
    assert torch.allclose(joint.logits(video), both, rtol=NETWORK_RTOL, atol=NETWORK_RTOL * both.abs().max().item())
    from i3d.video.inputs import flow_cache_key

    assert (tmp_path / "flow" / f"{flow_cache_key(video)}.npy").exists()  # the flow cache was written and reused


def test_cli_stream_and_weights_errors(rgb_weights, flow_weights, tmp_path, capsys):
    assert main(["predict", "x.mp4", "--stream", "flow", "--weights", str(rgb_weights), "--device", "cpu"]) == 1
    assert "not flow weights" in capsys.readouterr().err
    assert main(["predict", "x.mp4", "--weights", str(tmp_path / "none.pt"), "--device", "cpu"]) == 1
    assert "none.pt: no such file" in capsys.readouterr().err


def test_joint_checks_each_streams_channels(rgb_weights, flow_weights):
    from i3d.errors import WeightsError

    with pytest.raises(WeightsError, match="not RGB weights"):
        Classifier("joint", rgb_weights=flow_weights, flow_weights=flow_weights, labels=["x"] * 400, device="cpu")
    with pytest.raises(WeightsError, match="not flow weights"):
        Classifier("joint", rgb_weights=rgb_weights, flow_weights=rgb_weights, labels=["x"] * 400, device="cpu")


def test_labels_file_with_the_wrong_count_is_named(rgb_weights, tmp_path):
    from i3d.errors import WeightsError

    (tmp_path / "labels.txt").write_text("a\nb\n")
    with pytest.raises(WeightsError, match=r"labels\.txt: has 2 labels, the model has 400"):
        Classifier("rgb", rgb_weights=rgb_weights, labels=tmp_path / "labels.txt", device="cpu")


def test_predict_takes_folders_and_lists(rgb_weights, tmp_path, capsys):
    rng = np.random.default_rng(0)
    for rel in ("a/one.npy", "a/b/two.npy"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / rel, rng.uniform(-1, 1, (1, 9, 16, 16, 3)).astype(np.float32))
    listing = tmp_path / "list.txt"
    listing.write_text(f"{tmp_path / 'a' / 'one.npy'}\n")
    labels = [str(i) for i in range(400)]
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    argv = ["predict", str(tmp_path / "a"), str(listing), "--weights", str(rgb_weights), "--json", "--top", "2"]
    assert main([*argv, "--labels", str(tmp_path / "labels.txt"), "--device", "cpu"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # The folder is searched recursively; the listed input is the same file, taken once.
    assert [d["video"] for d in doc] == [str(tmp_path / "a" / "b" / "two.npy"), str(tmp_path / "a" / "one.npy")]
    assert main(["predict", str(tmp_path / "a" / "*.mp4"), "--weights", str(rgb_weights), "--device", "cpu"]) == 1
    assert "the pattern matches no video files" in capsys.readouterr().err


def test_predict_out_file_and_headers(rgb_weights, tmp_path, capsys):
    import csv

    rng = np.random.default_rng(1)
    videos = [str(tmp_path / f"v{i}.npy") for i in range(2)]
    for v in videos:
        np.save(v, rng.uniform(-1, 1, (1, 9, 16, 16, 3)).astype(np.float32))
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\n" for i in range(400)))
    base = ["predict", *videos, "--weights", str(rgb_weights), "--labels", str(labels), "--top", "3", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "p.jsonl")]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["prob", "logit", "label"]
    lines = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [d["video"] for d in lines] == videos and all(len(d["top"]) == 3 for d in lines)
    assert main([*base, "--out", str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 6 and rows[0]["video"] == videos[0] and rows[0]["rank"] == "1"
    assert rows[0]["label"] == lines[0]["top"][0]["label"]
    assert main([*base, "--out", str(tmp_path / "p.txt")]) == 2


def test_a_trained_models_class_names_are_used(tmp_path, capsys):
    """``i3d train`` saves its class names with ``model.safetensors``; predict shows them, no --labels needed."""
    from i3d.train.export import save_model

    model = InceptionI3d(num_classes=3)
    weights = save_model(model.state_dict(), tmp_path / "run" / "model.safetensors", ["up", "down", "still"])
    (tmp_path / "run" / "classes.txt").unlink()  # the metadata alone carries them
    video = tmp_path / "v.npy"
    np.save(video, np.random.default_rng(2).uniform(-1, 1, (1, 9, 16, 16, 3)).astype(np.float32))
    argv = ["predict", str(video), "--weights", str(weights), "--json", "--top", "3", "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    (doc,) = json.loads(capsys.readouterr().out)
    assert sorted(t["label"] for t in doc["top"]) == ["down", "still", "up"]
