"""The linear probe on extracted features, and ``i3d eval accuracy``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d.train.cli import run_train
from i3d.train.export import read_class_names
from i3d.train.loop import LOG_NAME
from i3d.train.probe import PROBE_NAME
from i3d.weights import load_state_dict_file
from tests.train.labelled_data import CLASSES, parse, write_text

REPO = Path(__file__).resolve().parents[2]


def _write_features(folder: Path, videos: list[tuple[str, str]], nested: bool) -> None:
    """Fake ``i3d extract`` outputs: 3 rows of 16-d features whose mean tells the class."""
    rng = np.random.default_rng(0)
    for video, label in videos:
        center = np.full(16, 1.0 if label == "top" else -1.0)
        rows = (center + rng.normal(0, 0.5, (3, 16))).astype(np.float32)
        if nested:  # mirror of the input tree, extension kept: top/v0.mp4.npy + top/v0.mp4.npy.json
            npy = folder / f"{video}.npy"
            sidecar = folder / f"{video}.npy.json"
        else:  # flat, as i3d extract names them today: v0_rgb.npy + v0_rgb.json
            npy = folder / f"{Path(video).stem}_{label}_rgb.npy"
            sidecar = npy.with_suffix(".json")
        npy.parent.mkdir(parents=True, exist_ok=True)
        np.save(npy, rows)
        sidecar.write_text(json.dumps({"video": video, "stream": "rgb", "shape": [3, 16]}))


@pytest.mark.parametrize("nested", [True, False])
def test_linear_probe_on_extracted_features(tmp_path, capsys, nested):
    rows = [(f"{label}/v{k}.mp4", label) for label in CLASSES for k in range(4)]
    train_csv = write_text(tmp_path / "train.csv", "video,label\n" + "".join(f"{v},{c}\n" for v, c in rows[1:]))
    val_csv = write_text(tmp_path / "val.csv", f"video,label\n{rows[0][0]},bottom\n{rows[4][0]},top\n")
    features = tmp_path / "features"
    if nested:
        _write_features(features, rows, nested=True)
    else:
        # Stems unique per video: the probe matches them to the list by stem.
        rows = [(f"{label}/{label}{k}.mp4", label) for label in CLASSES for k in range(4)]
        train_csv = write_text(tmp_path / "train.csv", "video,label\n" + "".join(f"{v},{c}\n" for v, c in rows[1:]))
        val_csv = write_text(tmp_path / "val.csv", f"video,label\n{rows[0][0]},bottom\n{rows[4][0]},top\n")
        _write_features(features, [(f"/elsewhere/{Path(v).name}", c) for v, c in rows], nested=False)
    (features / "incomplete.npy").write_bytes(b"no sidecar: skipped")
    out = tmp_path / "probe"
    args = parse(
        "--format", "csv", "--root", str(tmp_path), "--csv", str(train_csv), "--val-csv", str(val_csv),
        "--features", str(features), "--out", str(out), "--no-plots",
    )  # fmt: skip
    assert run_train(args) == 0
    assert "probe on validation videos: top1 1.0000" in capsys.readouterr().out
    state = load_state_dict_file(out / PROBE_NAME)
    assert state["logits.conv3d.weight"].shape == (2, 16, 1, 1, 1) and state["logits.conv3d.bias"].shape == (2,)
    assert read_class_names(out / PROBE_NAME) == list(CLASSES)
    (val,) = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines() if '"val"' in line]
    assert val["top1"] == 1.0 and val["videos"] == 2


def test_probe_needs_pooled_features(tmp_path, capsys):
    features = tmp_path / "features"
    features.mkdir()
    np.save(features / "a_rgb.npy", np.zeros((2, 8, 7, 7), np.float32))
    (features / "a_rgb.json").write_text(json.dumps({"video": "x/a.mp4", "stream": "rgb"}))
    csv = write_text(tmp_path / "train.csv", "video,label\nx/a.mp4,one\nx/b.mp4,two\n")
    args = parse("--format", "csv", "--root", str(tmp_path), "--csv", str(csv), "--features", str(features),
                 "--out", str(tmp_path / "o"))  # fmt: skip
    assert run_train(args) == 1
    err = capsys.readouterr().err
    assert "a_rgb.npy: features of shape (2, 8, 7, 7); a probe needs rows of vectors (--layer pooled)" in err


@pytest.mark.slow
def test_eval_accuracy_of_a_saved_model(folders, tmp_path, capsys):
    from i3d.model import InceptionI3d
    from i3d.train.eval_cli import add_accuracy_arguments, run_accuracy
    from i3d.train.export import save_model

    torch.manual_seed(0)
    weights = save_model(InceptionI3d(num_classes=2).state_dict(), tmp_path / "model.safetensors", CLASSES)
    # A CSV of one class only: its labels are matched to the model's classes by name.
    csv = write_text(tmp_path / "test.csv", "video,label\ntop/v0.mp4,top\ntop/v1.mp4,top\n")
    parser = argparse.ArgumentParser()
    add_accuracy_arguments(parser)
    small = ("--clip-frames", "8", "--val-clips", "1", "--fps", "25", "--short-side", "40", "--crop", "32",
             "--device", "cpu")  # fmt: skip
    args = parser.parse_args(["--weights", str(weights), "--root", str(folders), "--csv", str(csv), "--json", *small])
    assert run_accuracy(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["videos"] == 2 and result["top1"] in (0.0, 0.5, 1.0) and result["top5"] == 1.0
    unknown = write_text(tmp_path / "unknown.csv", "video,label\ntop/v0.mp4,sideways\n")
    args = parser.parse_args(["--weights", str(weights), "--root", str(folders), "--csv", str(unknown), *small])
    assert run_accuracy(args) == 1
    assert (
        capsys.readouterr().err == f"i3d: error: {unknown}: line 2: unknown class 'sideways' (not in the class list)\n"
    )
