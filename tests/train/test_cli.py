"""``i3d train`` end to end with the real network on the synthetic mini-Charades, and its errors."""

from __future__ import annotations

import argparse
import json
import os
import shutil

import pytest
import torch

from i3d.train.cli import add_train_arguments, resolve_config, run_train
from i3d.train.distributed import World
from i3d.train.loop import CHECKPOINT_NAME, LOG_NAME, MODEL_NAME
from i3d.train.recipe import CHARADES_RECIPE
from i3d.train.runner import _default_workers, _model
from i3d.train.sources import read_videos
from i3d.weights import inception_i3d, save_state_dict
from tests.charades.helpers import write_csv


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="i3d train")
    add_train_arguments(parser)
    return parser.parse_args(list(argv))


def tiny_args(mini, out, *extra: str) -> argparse.Namespace:
    # The smallest run of the real I3D that BatchNorm accepts: 2 clips of 8 frames of 32x32.
    return parse(
        "--root", str(mini.root), "--csv", str(mini.train_csv), "--out", str(out),
        "--weights", "none", "--steps", "1", "--batch", "2", "--accumulate", "1",
        "--clip-frames", "8", "--crop", "32", "--workers", "0", "--device", "cpu", *extra,
    )  # fmt: skip


def test_every_flag_has_help():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    for action in parser._actions:
        assert action.help, action.option_strings


@pytest.mark.slow
def test_train_i3d_end_to_end(mini_charades, tmp_path, capsys):
    csv = write_csv(
        tmp_path / "Charades_v1_train.csv",
        [(v.id, "", f"{v.length:g}") for v in mini_charades.train] + [("GONE1", "", "1.0")],
    )
    out = tmp_path / "run"
    args = tiny_args(mini_charades, out, "--csv", str(csv), "--val-csv", str(mini_charades.val_csv))
    assert run_train(args) == 0
    captured = capsys.readouterr()
    assert "warning: 1 of 5 training videos are not in" in captured.err and "(GONE1)" in captured.err
    assert "val step 1: mAP" in captured.out

    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    assert log[0]["recipe"]["clip_frames"] == 8 and log[0]["recipe"]["num_classes"] == 157
    (val,) = [r for r in log if r["event"] == "val"]
    assert val["videos"] == 3
    # The result loads with the package's own builder, as a 157-class network.
    model = inception_i3d(weights=out / MODEL_NAME)
    assert model.num_classes == 157 and model.in_channels == 3
    assert torch.load(out / CHECKPOINT_NAME, weights_only=True)["step"] == 1

    # Without --resume an existing run is not overwritten; with it, a finished run stays finished.
    assert run_train(args) == 1
    warning, error = capsys.readouterr().err.splitlines()
    assert warning.startswith("i3d: warning: 1 of 5") and error.startswith("i3d: error: ")
    assert "exists; pass resume" in error
    resume = tiny_args(mini_charades, out, "--csv", str(csv), "--val-csv", str(mini_charades.val_csv), "--resume")
    assert run_train(resume) == 0


def test_starting_weights_from_a_file(tmp_path):
    torch.manual_seed(0)
    kinetics = inception_i3d(num_classes=400)
    path = save_state_dict(kinetics.state_dict(), tmp_path / "k400.safetensors")
    args = parse("--root", ".", "--csv", "x", "--out", str(tmp_path), "--weights", str(path))
    model = _model(resolve_config(args), CHARADES_RECIPE, World())
    assert model.num_classes == 157
    trunk = "Mixed_5c.b3b.conv3d.weight"
    assert torch.equal(model.state_dict()[trunk], kinetics.state_dict()[trunk])
    args = parse("--root", ".", "--csv", "x", "--out", "o", "--stream", "flow", "--weights", "none")
    flow = _model(resolve_config(args), CHARADES_RECIPE, World())
    assert (flow.in_channels, flow.num_classes, flow.dropout_keep_prob) == (2, 157, 0.5)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("--root", "/nonexistent/frames"), "/nonexistent/frames: no such folder"),
        (("--crop", "300"), "--crop 300 is larger than the frames' short side 256"),
        (("--batch", "6"), "the training set has 4 clips, fewer than one batch of 6"),
        (("--precision", "fp16"), "precision fp16 needs a CUDA device"),
        (("--csv", "/nonexistent.csv"), "/nonexistent.csv: cannot read"),
    ],
)
def test_bad_input_is_one_line_and_status_1(mini_charades, tmp_path, capsys, change, message):
    assert run_train(tiny_args(mini_charades, tmp_path / "out", *change)) == 1
    err = capsys.readouterr().err
    assert err.startswith("i3d: error: ") and message in err and err.count("\n") == 1


def test_no_video_present_is_an_error(mini_charades, tmp_path, capsys):
    csv = write_csv(tmp_path / "Charades_v1_train.csv", [("NOPE1", "", "1.0"), ("NOPE2", "", "1.0")])
    assert run_train(tiny_args(mini_charades, tmp_path / "out", "--csv", str(csv))) == 1
    assert "none of the 2 training videos is there (e.g. NOPE1, NOPE2)" in capsys.readouterr().err


def test_bad_flags_exit_2():
    with pytest.raises(SystemExit) as exit_:
        parse("--root", ".", "--csv", "x", "--out", "o", "--steps", "0")
    assert exit_.value.code == 2


def test_the_ports_json_split(tmp_path):
    split = tmp_path / "charades.json"
    split.write_text(
        json.dumps(
            {
                "AAAAA": {"subset": "training", "duration": 3.0, "actions": [[5, 0.5, 1.0]]},
                "BBBBB": {"subset": "testing", "duration": 2.0, "actions": []},
            }
        )
    )
    assert [v.id for v in read_videos(split, "training")] == ["AAAAA"]
    assert [v.id for v in read_videos(split, "testing")] == ["BBBBB"]


@pytest.mark.slow
def test_an_unreadable_training_video_is_reported_before_step_1(mini_charades, tmp_path, capsys):
    root = tmp_path / "frames"
    shutil.copytree(mini_charades.root, root)
    (root / "TRN02" / "TRN02-000001.jpg").write_bytes(b"not a JPEG")
    (root / "TRN03" / "TRN03-000005.jpg").unlink()  # a gap in the numbering
    out = tmp_path / "out"
    assert run_train(tiny_args(mini_charades, out, "--root", str(root), "--workers", "1")) == 1
    err = capsys.readouterr().err
    expected = f"i3d: error: {root}/TRN02/TRN02-000001.jpg: cannot read frame image (and 1 more); found before training"
    assert err.startswith(expected) and err.count("\n") == 1
    assert not (out / LOG_NAME).exists()  # not a single step

    # --on-broken skip: both left out with a warning each, the others train.
    assert run_train(tiny_args(mini_charades, out, "--root", str(root), "--on-broken", "skip")) == 0
    err = capsys.readouterr().err
    assert "warning: skipped training video: " in err and "TRN03-000005.jpg is missing" in err


def test_under_torchrun_every_rank_prints_its_error(mini_charades, tmp_path, capsys, monkeypatch):
    for name, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    assert run_train(tiny_args(mini_charades, tmp_path / "out", "--root", "/nonexistent/frames")) == 1
    assert capsys.readouterr().err == "i3d: error: rank 1: /nonexistent/frames: no such folder\n"


def test_default_loader_workers_respect_the_cpu_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert _default_workers() == 3


def test_the_flow_cache_help_gives_the_charades_rate():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    (flow_dir,) = [a for a in parser._actions if "--flow-dir" in a.option_strings]
    assert "i3d flow --format npy --fps 24 --short-side 256" in flow_dir.help
