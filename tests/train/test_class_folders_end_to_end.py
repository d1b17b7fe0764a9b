"""``i3d train`` on class folders end to end: the resolved config, resume checks, a kill mid-checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from i3d.cli import main
from i3d.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from i3d.train.cli import resolve_config, run_train
from i3d.train.config import CONFIG_NAME, load_config, merge
from i3d.train.export import read_class_names
from i3d.train.loop import LOG_NAME, MODEL_NAME
from i3d.weights import inception_i3d, load_state_dict_file
from tests.train.labelled_data import CLASSES, TINY, parse

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
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


@pytest.mark.slow
def test_a_kill_during_a_checkpoint_write_then_resume(folders, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--root", str(folders), "--out", str(out), *TINY, "--steps", "3", "--checkpoint-every", "1"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    script = _kill_at_checkpoint_script(argv, kill_at=2)
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    stale = list(out.glob(".checkpoint.pt.*.tmp"))
    assert len(stale) == 1  # the half-written temporary; the checkpoint of step 1 is whole
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 1

    # The resume in this process: another interpreter would only import torch again.
    assert main([*argv, "--resume"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert not list(out.glob(".*.tmp"))  # the stale temporary is gone
    assert load_checkpoint(out / CHECKPOINT_NAME)["step"] == 3
    assert set(load_state_dict_file(out / MODEL_NAME)) == set(inception_i3d(num_classes=2).state_dict())


def test_required_settings(tmp_path, capsys):
    assert run_train(parse("--format", "folders", "--out", str(tmp_path))) == 1
    assert capsys.readouterr().err == "i3d: error: --root is required (or data.root in the config)\n"
    assert torch.tensor(0).item() == 0
