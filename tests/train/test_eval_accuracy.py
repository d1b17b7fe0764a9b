"""``i3d eval accuracy`` makes clips as the model was trained on, unless told, and says so."""

from __future__ import annotations

import json

import pytest
import torch

from i3d.cli import main
from i3d.model import InceptionI3d
from i3d.train.export import ModelInput, read_model_input, save_model
from i3d.video.presets import Preprocess
from tests.train.labelled_data import CLASSES, write_text

SMALL = ModelInput(Preprocess("rgb", fps=25.0, resize_short_side=40, crop=32), clip_frames=8)


def test_model_input_round_trips(tmp_path):
    path = save_model(InceptionI3d(num_classes=2).state_dict(), tmp_path / "m.safetensors", CLASSES, SMALL)
    assert read_model_input(path) == SMALL
    plain = save_model(InceptionI3d(num_classes=2).state_dict(), tmp_path / "p.safetensors", CLASSES)
    assert read_model_input(plain) is None


def test_class_names_with_a_line_break_are_refused(tmp_path):
    from i3d.errors import InputError

    with pytest.raises(InputError, match=r"class name 'a\\nb' holds a line break"):
        save_model(InceptionI3d(num_classes=2).state_dict(), tmp_path / "m.safetensors", ["a\nb", "c"])
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "classes.txt").exists()


@pytest.mark.slow
def test_eval_accuracy_uses_the_models_clip_settings(folders, tmp_path, capsys):
    torch.manual_seed(0)
    weights = save_model(InceptionI3d(num_classes=2).state_dict(), tmp_path / "model.safetensors", CLASSES, SMALL)
    csv = write_text(tmp_path / "test.csv", "video,label\ntop/v0.mp4,top\nbottom/v0.mp4,bottom\n")
    common = ["eval", "accuracy", "--weights", str(weights), "--root", str(folders), "--csv", str(csv)]
    common += ["--val-clips", "1", "--device", "cpu", "--json"]
    # The defaults would be 64 frames of short side 256, cropped 224: the 20-frame 32x32 clips
    # are read at the model's 8 frames, short side 40, crop 32, without a word.
    assert main(common) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and json.loads(captured.out)["videos"] == 2
    # A flag overrides the model's value, and a warning says so.
    assert main([*common, "--crop", "24"]) == 0
    err = capsys.readouterr().err
    override = "overriding the clip settings saved with the model: --crop 24 (the model's: 32)"
    assert err == f"i3d eval accuracy: warning: {weights}: {override}\n"
    # An error speaks as the command.
    assert main([*common, "--crop", "64"]) == 1
    assert capsys.readouterr().err.endswith("\ni3d eval accuracy: error: --crop 64 is larger than --short-side 40\n")
