"""``i3d train`` on any dataset end to end: config round trip, resume checks, the probe, kills mid-checkpoint."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d.errors import InputError
from i3d.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from i3d.train.cli import add_train_arguments, resolve_config, run_train
from i3d.train.config import CONFIG_NAME, DEFAULTS, dumps, load_config, merge, recipe_of
from i3d.train.export import read_class_names
from i3d.train.loop import LOG_NAME, MODEL_NAME
from i3d.train.probe import PROBE_NAME
from i3d.train.recipe import CHARADES_RECIPE
from i3d.weights import inception_i3d, load_state_dict_file
from tests.train.anydata import CLASSES, make_class_folders, write_text

REPO = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="i3d train")
    add_train_arguments(parser)
    return parser.parse_args(list(argv))


# The smallest run of the real I3D: 2 clips of 8 frames of 32x32, from a random start.
TINY = (
    "--format", "folders", "--weights", "none", "--steps", "2", "--batch", "2", "--accumulate", "1",
    "--clip-frames", "8", "--crop", "32", "--short-side", "40", "--workers", "0", "--device", "cpu",
    "--val-clips", "2", "--no-plots",
)  # fmt: skip


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("classes"), frame_folders=False)


def test_the_shipped_charades_config_is_the_recipe():
    config = merge(load_config("charades"))
    assert recipe_of(config) == CHARADES_RECIPE
    assert config["data"]["format"] == "charades" and config["model"]["weights"] is None


def test_a_config_round_trips_through_toml(tmp_path):
    config = merge(
        {
            "data": {"format": "csv", "root": str(tmp_path), "classes": "c.txt"},
            "recipe": {"learning_rate": 0.01, "lr_milestones": [5, 7], "freeze_until": "Mixed_4f"},
            "run": {"device": "cpu", "seed": 3},
        }
    )
    path = write_text(tmp_path / "x.toml", dumps(config))
    assert merge(load_config(path)) == config
    # Strings with quotes, backslashes and control characters survive too.
    odd = merge({"model": {"weights": 'a "b" \\ c\td\u00e9'}})
    assert merge(load_config(write_text(tmp_path / "odd.toml", dumps(odd)))) == odd


def test_flags_override_the_file_and_paths_are_relative_to_it(tmp_path):
    folder = tmp_path / "configs"
    folder.mkdir()
    path = write_text(
        folder / "mine.toml",
        '[data]\nformat = "folders"\nroot = "../videos"\n\n[recipe]\nlearning_rate = 1\nmax_steps = 7\n',
    )
    config = resolve_config(parse("--config", str(path), "--steps", "9", "--out", "o"))
    assert config["data"]["root"] == os.fspath(tmp_path / "videos")
    assert config["recipe"]["max_steps"] == 9 and config["recipe"]["learning_rate"] == 1.0
    assert config["run"]["out"] == os.path.abspath("o")
    assert config["recipe"]["batch_size"] == DEFAULTS["recipe"]["batch_size"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dat]\n", "unknown table [dat]"),
        ("[recipe]\nlearning_rat = 1\n", "unknown setting recipe.learning_rat"),
        ("[recipe]\nmax_steps = 'many'\n", "recipe.max_steps = 'many': expected int"),
        ("[run]\nseed = true\n", "run.seed = True: expected int"),
        ("[recipe\n", "not valid TOML"),
    ],
)
def test_bad_config_files_are_one_line_errors(tmp_path, text, message):
    path = write_text(tmp_path / "bad.toml", text)
    with pytest.raises(InputError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value) and "\n" not in str(err.value)


def test_train_on_class_folders_and_resume_with_the_same_config_only(folders, tmp_path, capsys):
    out = tmp_path / "run"
    args = parse("--root", str(folders), "--val-root", str(folders), "--out", str(out), *TINY)
    assert run_train(args) == 0
    captured = capsys.readouterr()
    assert "val step 2: top-1 " in captured.out and captured.err == ""
    saved = load_config(out / CONFIG_NAME)
    assert saved["data"]["root"] == str(folders) and saved["recipe"]["num_classes"] == 2
    # The resolved config repeats the run.
    assert resolve_config(parse("--config", str(out / CONFIG_NAME))) == merge(saved)
    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    (val,) = [r for r in log if r["event"] == "val"]
    assert {"top1", "top5", "mean_class_acc"} <= set(val) and val["videos"] == 6
    model = inception_i3d(weights=out / MODEL_NAME)
    assert model.num_classes == 2 and read_class_names(out / MODEL_NAME) == list(CLASSES)

    # Training for longer is resuming; another learning rate is not, unless forced.
    longer = parse(
        "--root", str(folders), "--val-root", str(folders), "--out", str(out), *TINY, "--steps", "3", "--resume"
    )
    assert run_train(longer) == 0
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 3
    capsys.readouterr()
    changed = parse(
        "--root", str(folders), "--val-root", str(folders), "--out", str(out), *TINY, "--steps", "4", "--lr", "0.5",
        "--resume",
    )  # fmt: skip
    assert run_train(changed) == 1
    err = capsys.readouterr().err
    assert "the run was made with other settings (now vs then: recipe.learning_rate: 0.5 vs 0.1)" in err
    assert err.count("\n") == 1
    forced = parse(
        "--root", str(folders), "--val-root", str(folders), "--out", str(out), *TINY, "--steps", "4", "--lr", "0.5",
        "--resume", "--force-config",
    )  # fmt: skip
    assert run_train(forced) == 0
    assert load_config(out / CONFIG_NAME)["recipe"]["learning_rate"] == 0.5
    state = load_checkpoint(out / CHECKPOINT_NAME)
    assert state["step"] == 4 and state["optimizer"]["param_groups"][0]["initial_lr"] == 0.5


def _kill_at_checkpoint_script(argv: list[str], kill_at: int) -> str:
    """Python that trains with ``argv`` and SIGKILLs itself halfway through writing checkpoint ``kill_at``."""
    return f"""
import os, signal, sys, torch
import i3d.train.checkpoint as checkpoint
saves = 0
real_save = torch.save
def dying_save(obj, f, *args, **kwargs):
    global saves
    saves += 1
    if saves == {kill_at}:
        with open(f, "wb") as out:
            out.write(b"PK\\x03\\x04 half a checkpoint")
            out.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, f, *args, **kwargs)
checkpoint.torch.save = dying_save
from i3d.cli import main
sys.exit(main({argv!r}))
"""


def test_a_kill_during_a_checkpoint_write_then_resume(folders, tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--root", str(folders), "--out", str(out), *TINY, "--steps", "3", "--checkpoint-every", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = _kill_at_checkpoint_script(argv, kill_at=2)
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    stale = list(out.glob(".checkpoint.pt.*.tmp"))
    assert len(stale) == 1  # the half-written temporary; the checkpoint of step 1 is whole
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 1

    resumed = subprocess.run(
        [sys.executable, "-m", "i3d", *argv, "--resume"], env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert not list(out.glob(".*.tmp"))  # the stale temporary is gone
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 3
    assert set(load_state_dict_file(out / MODEL_NAME)) == set(inception_i3d(num_classes=2).state_dict())


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
    csv = write_text(tmp_path / "train.csv", "video,label\nx/a.mp4,one\n")
    args = parse("--format", "csv", "--root", str(tmp_path), "--csv", str(csv), "--features", str(features),
                 "--out", str(tmp_path / "o"))  # fmt: skip
    assert run_train(args) == 1
    err = capsys.readouterr().err
    assert "a_rgb.npy: features of shape (2, 8, 7, 7); a probe needs rows of vectors (--layer pooled)" in err


def test_required_settings(tmp_path, capsys):
    assert run_train(parse("--format", "folders", "--out", str(tmp_path))) == 1
    assert capsys.readouterr().err == "i3d: error: --root is required (or data.root in the config)\n"
    assert torch.tensor(0).item() == 0


def test_eval_accuracy_of_a_saved_model(folders, tmp_path, capsys):
    from i3d.model import InceptionI3d
    from i3d.train.evaluate import add_accuracy_arguments, run_accuracy
    from i3d.train.export import save_model

    torch.manual_seed(0)
    weights = save_model(InceptionI3d(num_classes=2).state_dict(), tmp_path / "model.safetensors", CLASSES)
    # A CSV of one class only: its labels are matched to the model's classes by name.
    csv = write_text(tmp_path / "test.csv", "video,label\ntop/v0.mp4,top\ntop/v1.mp4,top\n")
    parser = argparse.ArgumentParser()
    add_accuracy_arguments(parser)
    small = ("--clip-frames", "8", "--val-clips", "1", "--short-side", "40", "--crop", "32", "--device", "cpu")
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
