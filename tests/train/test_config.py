"""The TOML config: the shipped recipe, round trips, overrides, bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from i3d.errors import InputError
from i3d.train.cli import resolve_config
from i3d.train.config import DEFAULTS, dumps, load_config, merge, recipe_of
from i3d.train.recipe import CHARADES_RECIPE
from tests.train.labelled_data import parse, write_text

REPO = Path(__file__).resolve().parents[2]


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
