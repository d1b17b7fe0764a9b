"""A run folder's config.toml: one record of the starting weights, and no record of where the folder is."""

from __future__ import annotations

import shutil

import pytest

from i3d.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from i3d.train.cli import resolve_config, run_train
from i3d.train.config import CONFIG_NAME, load_config
from tests.train.anydata import TINY, parse, write_text


def test_the_starting_weights_have_one_record(tmp_path):
    config = resolve_config(parse("--format", "folders", "--root", str(tmp_path), "--out", str(tmp_path / "o")))
    assert config["model"]["weights"] == "rgb_imagenet" and "rgb_weights" not in config["recipe"]
    flow = resolve_config(parse("--config", "charades", "--stream", "flow", "--root", "r", "--csv", "c", "--out", "o"))
    assert flow["model"]["weights"] == "flow_imagenet"
    given = resolve_config(parse("--weights", "rgb_scratch", "--root", "r", "--csv", "c", "--out", "o"))
    assert given["model"]["weights"] == "rgb_scratch" and "rgb_weights" not in given["recipe"]


def test_an_older_config_reads_its_recipe_weights_as_the_models(tmp_path):
    old = write_text(tmp_path / "old.toml", '[data]\nstream = "flow"\n[recipe]\nrgb_weights = "a"\nflow_weights = "b"\n')
    assert load_config(old) == {"data": {"stream": "flow"}, "model": {"weights": "b"}}


@pytest.mark.slow
def test_a_moved_run_folder_resumes(folders, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_train(parse("--root", str(folders), "--out", str(out), *TINY, "--steps", "1")) == 0
    text = (out / CONFIG_NAME).read_text()
    assert 'out = "."' in text and "rgb_weights" not in text and 'weights = "none"' in text
    moved = shutil.move(out, tmp_path / "moved")
    assert run_train(parse("--root", str(folders), "--out", str(moved), *TINY, "--steps", "2", "--resume")) == 0
    assert load_checkpoint(moved / CHECKPOINT_NAME)["step"] == 2
    # Its config names the folder it is in now: it continues there.
    copied = shutil.copytree(moved, tmp_path / "copied")
    again = parse("--config", str(copied / CONFIG_NAME), "--steps", "3", "--resume")
    assert run_train(again) == 0
    assert load_checkpoint(copied / CHECKPOINT_NAME)["step"] == 3
    assert load_checkpoint(moved / CHECKPOINT_NAME)["step"] == 2
    assert "error" not in capsys.readouterr().err
