"""A run folder's config.toml: one record of the starting weights, and no record of where the folder is."""

from __future__ import annotations

import shutil

import pytest

from i3d.errors import InputError
from i3d.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from i3d.train.cli import resolve_config, run_train
from i3d.train.config import CONFIG_NAME, load_config
from tests.train.labelled_data import TINY, parse, write_text


def test_the_starting_weights_have_one_record(tmp_path):
    config = resolve_config(parse("--format", "folders", "--root", str(tmp_path), "--out", str(tmp_path / "o")))
    assert config["model"]["weights"] == "rgb_imagenet" and "rgb_weights" not in config["recipe"]
    flow = resolve_config(parse("--config", "charades", "--stream", "flow", "--root", "r", "--csv", "c", "--out", "o"))
    assert flow["model"]["weights"] == "flow_imagenet"
    given = resolve_config(parse("--weights", "rgb_scratch", "--root", "r", "--csv", "c", "--out", "o"))
    assert given["model"]["weights"] == "rgb_scratch" and "rgb_weights" not in given["recipe"]


def test_an_older_config_reads_its_recipe_weights_as_the_models(tmp_path):
    text = '[data]\nstream = "flow"\n[recipe]\nrgb_weights = "a"\nflow_weights = "b"\n'
    old = write_text(tmp_path / "old.toml", text)
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


def test_an_older_run_config_compares_with_the_defaults_filled_in(tmp_path):
    from i3d.train.config import write_config
    from i3d.train.runner import _check_resume

    out = tmp_path / "run"
    args = parse("--format", "folders", "--root", str(tmp_path), "--out", str(out), "--resume")
    config = resolve_config(args)
    write_config(config, out / CONFIG_NAME)
    (out / CHECKPOINT_NAME).write_bytes(b"")
    # Written before --hflip existed, and with the weights under [recipe].
    text = (out / CONFIG_NAME).read_text().replace('hflip = "on"\n', "")
    text = text.replace('weights = "rgb_imagenet"\n', "")
    text = text.replace("[recipe]\n", '[recipe]\nrgb_weights = "rgb_imagenet"\n')
    write_text(out / CONFIG_NAME, text)
    _check_resume(config, args)  # no difference
    _check_resume(resolve_config(parse("--format", "folders", "--root", str(tmp_path), "--out", str(out))), args)
    with pytest.raises(InputError, match=r"data.hflip: 'off' vs 'on'"):
        _check_resume(resolve_config(parse("--format", "folders", "--root", str(tmp_path), "--out", str(out),
                                           "--hflip", "off")), args)  # fmt: skip
