"""``i3d train`` never replaces a device node or a symbolic link in its run
folder, and says so before step 1 (the rule: tests/test_output_paths.py)."""

from __future__ import annotations

import pytest

from i3d.train.cli import run_train
from i3d.train.config import CONFIG_NAME
from i3d.train.loop import LOG_NAME, MODEL_NAME
from tests.test_output_paths import device_node, link_intact, one_error_line, still_device, symlink
from tests.train.test_cli import tiny_args


@pytest.mark.slow
@pytest.mark.parametrize("name", [MODEL_NAME, CONFIG_NAME])
@pytest.mark.parametrize("kind", ["device", "symlink"])
def test_train_refuses_a_device_or_link_in_its_run_folder_before_step_1(mini_charades, tmp_path, capsys, name, kind):
    out = tmp_path / "run"
    out.mkdir()
    bad = device_node(out / name) if kind == "device" else symlink(out / name)
    assert run_train(tiny_args(mini_charades, out)) == 1
    one_error_line(capsys.readouterr().err, bad, "character device" if kind == "device" else "symbolic link")
    assert still_device(bad) if kind == "device" else link_intact(bad)
    assert not (out / LOG_NAME).exists()  # no step was taken
