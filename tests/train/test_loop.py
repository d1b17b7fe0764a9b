"""Training on the synthetic mini-Charades: steps, schedule, outputs, checkpoints and resume."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from i3d.charades.datasets import CharadesClips, CharadesVideos
from i3d.errors import CheckpointError, I3DError
from i3d.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from i3d.train.loop import LOG_NAME, MODEL_NAME, Trainer, TrainOptions
from i3d.weights import load_state_dict_file
from tests.train.helpers import SMALL_RGB, TinyNet, tiny_recipe

RECIPE = tiny_recipe()  # 6 steps of 2 x 2 clips, lr 0.1 -> 0.01 at step 2 -> 0.001 at step 4
CHECKPOINT_EVERY = 3


class CrashingClips(CharadesClips):
    """Clips that fail after ``crash_after`` reads, as a killed job would stop."""

    def __init__(self, *args, crash_after: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reads = 0
        self.crash_after = crash_after

    def __getitem__(self, index: int):
        self.reads += 1
        if self.reads > self.crash_after:
            raise RuntimeError("simulated crash")
        return super().__getitem__(index)


def make_trainer(mini, out: Path, recipe=RECIPE, clips=None, val=True, **options) -> Trainer:
    """``val``: validate on the mini-Charades' validation videos, on these videos, or not at all."""
    torch.manual_seed(0)  # the same initial weights for every run
    options = {"workers": 0, "checkpoint_every": CHECKPOINT_EVERY, "log_every": 1, "echo": False, **options}
    val_videos = mini.val if val is True else val
    return Trainer(
        TinyNet(),
        clips or CharadesClips(mini.root, mini.train, SMALL_RGB, recipe.clip_frames),
        recipe,
        TrainOptions(out=out, **options),
        val_data=CharadesVideos(mini.root, val_videos, SMALL_RGB) if val_videos else None,
    )


def read_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]


def assert_plain(value, where="checkpoint"):
    """Only tensors, plain containers, numbers, strings and None."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, (str, int)), where
            assert_plain(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            assert_plain(v, f"{where}[{i}]")
    else:
        assert value is None or type(value) in (torch.Tensor, int, float, str, bool), f"{where}: {type(value)}"


@pytest.fixture(scope="module")
def straight_run(mini_charades, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    trainer = make_trainer(mini_charades, out)
    result = trainer.fit()
    return out, result, {k: v.clone() for k, v in trainer.module.state_dict().items()}


def test_steps_schedule_log_and_outputs(straight_run):
    out, result, weights = straight_run
    assert (result.step, result.start_step) == (6, 0)
    log = read_log(out)
    train = [r for r in log if r["event"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert [r["lr"] for r in train] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    # 4 clips of 2 per batch: 2 batches an epoch, 2 batches a step.
    assert [r["epoch"] for r in train] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in train)
    assert [r["step"] for r in log if r["event"] == "checkpoint"] == [3, 6]
    (val,) = [r for r in log if r["event"] == "val"]
    assert val["step"] == 6 and val["videos"] == 3 and val["classes"] == 2 and 0 < val["map"] <= 1
    assert log[-1]["event"] == "end"
    assert result.validation is not None and result.validation.result.map == val["map"]

    model = load_state_dict_file(out / MODEL_NAME)
    assert model.keys() == weights.keys() and all(torch.equal(model[k], weights[k]) for k in weights)


def test_checkpoint_loads_without_pickled_objects(straight_run):
    out, _, weights = straight_run
    state = torch.load(out / CHECKPOINT_NAME, map_location="cpu", weights_only=True)
    assert_plain(state)
    assert state["step"] == 6 and state["recipe"] == RECIPE.to_dict()
    assert state["scheduler"]["last_epoch"] == 6
    assert len(state["optimizer"]["state"]) == len(list(TinyNet().parameters()))
    assert all(torch.equal(state["model"][k], weights[k]) for k in weights)
    assert state["validation"][0]["step"] == 6
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_loss_decreases_on_the_toy_task(mini_charades, tmp_path):
    recipe = tiny_recipe(max_steps=8, lr_milestones=(100,), learning_rate=0.5)
    make_trainer(mini_charades, tmp_path, recipe, val=False).fit()
    losses = [r["loss"] for r in read_log(tmp_path) if r["event"] == "train"]
    assert len(losses) == 8
    assert sum(losses[-2:]) < 0.9 * sum(losses[:2])


@pytest.mark.slow
def test_resumed_run_ends_like_the_straight_one(mini_charades, straight_run, tmp_path):
    _, _, straight = straight_run
    clips = CrashingClips(mini_charades.root, mini_charades.train, SMALL_RGB, RECIPE.clip_frames, crash_after=17)
    with pytest.raises(RuntimeError, match="simulated crash"):
        make_trainer(mini_charades, tmp_path, clips=clips).fit()  # dies in step 5, after the checkpoint of step 3
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["step"] == CHECKPOINT_EVERY
    assert not (tmp_path / MODEL_NAME).exists()

    # A fresh process would build a fresh model; loader workers must not change the batches.
    result = make_trainer(mini_charades, tmp_path, resume=True, workers=2).fit()
    assert (result.start_step, result.step) == (3, 6)
    resumed = load_state_dict_file(tmp_path / MODEL_NAME)
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)
    log = read_log(tmp_path)
    assert [r["step"] for r in log if r["event"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in log if r["event"] == "start"] == [0, 3]


def test_resume_at_the_end_only_rewrites_the_model(mini_charades, straight_run, tmp_path):
    out, _, weights = straight_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    result = make_trainer(mini_charades, tmp_path, resume=True).fit()
    assert (result.start_step, result.step) == (6, 6)
    model = load_state_dict_file(tmp_path / MODEL_NAME)
    assert all(torch.equal(model[k], weights[k]) for k in weights)


def test_an_existing_checkpoint_needs_resume(mini_charades, straight_run, tmp_path):
    out, _, _ = straight_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    with pytest.raises(I3DError, match="exists; pass resume"):
        make_trainer(mini_charades, tmp_path).fit()


def test_resume_refuses_another_recipe(mini_charades, straight_run, tmp_path):
    out, _, _ = straight_run
    shutil.copytree(out, tmp_path, dirs_exist_ok=True)
    with pytest.raises(CheckpointError, match=r"another recipe \(now vs then: learning_rate: 0.05 vs 0.1\)"):
        make_trainer(mini_charades, tmp_path, tiny_recipe(learning_rate=0.05), resume=True).fit()


def test_a_corrupt_checkpoint_is_a_one_line_error(mini_charades, tmp_path):
    (tmp_path / CHECKPOINT_NAME).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        make_trainer(mini_charades, tmp_path, resume=True).fit()
    assert str(err.value).startswith(str(tmp_path / CHECKPOINT_NAME)) and "\n" not in str(err.value)


def test_unreadable_validation_videos_are_skipped_and_reported(mini_charades, tmp_path):
    gone = dataclasses.replace(mini_charades.val[0], id="GONE2")
    result = make_trainer(mini_charades, tmp_path, tiny_recipe(max_steps=1), val=[*mini_charades.val, gone]).fit()
    assert result.validation is not None and result.validation.videos == 3
    (message,) = result.validation.skipped
    assert message.startswith(str(mini_charades.root / "GONE2"))
    log = read_log(tmp_path)
    (skipped,) = [r for r in log if r["event"] == "skipped"]
    (val,) = [r for r in log if r["event"] == "val"]
    assert skipped["error"] == message
    assert (val["videos"], val["skipped"], val["classes"]) == (3, 1, 2)


def test_a_diverging_loss_stops_the_run(mini_charades, tmp_path):
    recipe = tiny_recipe(learning_rate=1e30, max_steps=4)
    with pytest.raises(I3DError, match="the loss is nan"):
        make_trainer(mini_charades, tmp_path, recipe, val=False, checkpoint_every=100).fit()
    assert not (tmp_path / CHECKPOINT_NAME).exists()


def test_mismatched_clip_length_is_refused(mini_charades, tmp_path):
    clips = CharadesClips(mini_charades.root, mini_charades.train, SMALL_RGB, clip_frames=8)
    with pytest.raises(ValueError, match="clip_frames=8, the recipe 16"):
        make_trainer(mini_charades, tmp_path, clips=clips)


def test_bf16_autocast_trains(mini_charades, tmp_path):
    result = make_trainer(mini_charades, tmp_path, tiny_recipe(max_steps=2), val=False, precision="bf16").fit()
    assert result.step == 2
    losses = [r["loss"] for r in read_log(tmp_path) if r["event"] == "train"]
    assert all(math.isfinite(x) for x in losses)
    assert all(v.dtype in (torch.float32, torch.int64) for v in load_state_dict_file(tmp_path / MODEL_NAME).values())
