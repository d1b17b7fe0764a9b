"""Training on labelled videos that are not Charades: clips, objectives, validation, outputs, resume, pre-flight."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from i3d.errors import I3DError
from i3d.train.checkpoint import load_checkpoint, save_checkpoint
from i3d.train.clips import TrainingClips, ValidationClips, clip_starts, index_videos
from i3d.train.datasets import read_class_folders, read_video_csv
from i3d.train.export import CLASSES_NAME, read_class_names
from i3d.train.finetune import lr_factor, parameter_groups
from i3d.train.loop import LOG_NAME, MODEL_NAME, Trainer, TrainOptions
from i3d.train.loss import ClipObjective
from i3d.train.metrics import accuracy
from i3d.train.plots import CONFUSION_JSON, CONFUSION_PNG, LOSS_PNG, VALIDATION_PNG
from i3d.train.validation import ClipValidation
from i3d.video.presets import Preprocess
from i3d.weights import load_state_dict_file
from tests.train.helpers import TinyNet, tiny_recipe
from tests.train.labelled_data import CLASSES, FPS, FRAMES, make_class_folders, write_text

SMALL = Preprocess("rgb", fps=FPS, resize_short_side=40, crop=32)
CLIP_FRAMES = 8


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("classes"))


def clip_data(videos, val_videos=None, val_clips=2):
    indexed = index_videos(videos.videos, SMALL, source_fps=FPS)
    train = TrainingClips(indexed, videos, SMALL, CLIP_FRAMES, FPS)
    val_list = val_videos or videos
    val_indexed = index_videos(val_list.videos, SMALL, source_fps=FPS, what="validation")
    val = ValidationClips(val_indexed, val_list, SMALL, CLIP_FRAMES, FPS, val_clips=val_clips)
    return train, ClipValidation(val)


def make_trainer(videos, out, steps=4, **options):
    torch.manual_seed(0)
    recipe = tiny_recipe(num_classes=videos.num_classes, clip_frames=CLIP_FRAMES, max_steps=steps)
    train, val = clip_data(videos)
    options = {"workers": 0, "checkpoint_every": 2, "log_every": 1, "echo": False, **options}
    return Trainer(
        TinyNet(num_classes=videos.num_classes),
        train,
        recipe,
        TrainOptions(out=out, **options),
        val,
        objective=ClipObjective(videos.multi_label, label_smoothing=0.1),
        classes=videos.classes,
    )


@pytest.mark.slow
def test_class_folders_train_validate_and_write_their_outputs(folders, tmp_path):
    videos = read_class_folders(folders)
    assert len(videos.videos) == 12 and videos.classes == CLASSES  # 6 mp4 files and 6 frame folders
    out = tmp_path / "run"
    result = make_trainer(videos, out).fit()
    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    (val,) = [r for r in log if r["event"] == "val"]
    assert val["videos"] == 12 and val["skipped"] == 0
    assert 0 <= val["top1"] <= val["top5"] == 1.0 and 0 <= val["mean_class_acc"] <= 1
    assert result.validation is not None and result.validation.metrics["top1"] == val["top1"]
    assert [r["loss"] > 0 for r in log if r["event"] == "train"] == [True] * 4
    # The model carries its class names; the confusion matrix counts every validation video.
    assert read_class_names(out / MODEL_NAME) == list(CLASSES)
    assert (out / CLASSES_NAME).read_text() == "bottom\ntop\n"
    assert set(load_state_dict_file(out / MODEL_NAME)) == set(TinyNet(2).state_dict())
    confusion = json.loads((out / CONFUSION_JSON).read_text())
    assert confusion["classes"] == list(CLASSES) and np.sum(confusion["confusion"]) == 12
    for name in (LOSS_PNG, VALIDATION_PNG, CONFUSION_PNG):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_resume_ends_with_the_weights_of_an_uninterrupted_run(folders, tmp_path):
    videos = read_class_folders(folders)
    straight = make_trainer(videos, tmp_path / "straight", steps=4, plots=False)
    straight.fit()
    first = make_trainer(videos, tmp_path / "resumed", steps=2, plots=False)
    first.fit()
    # A checkpoint of the MultiStepLR days resumes too: the schedule is a function of the step.
    path = tmp_path / "resumed" / "checkpoint.pt"
    state = load_checkpoint(path)
    state["scheduler"] = {"milestones": {2: 1, 4: 1}, "gamma": 0.1, "last_epoch": 2, "base_lrs": [0.1]}
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version")}, path)
    resumed = make_trainer(videos, tmp_path / "resumed", steps=4, plots=False, resume=True)
    assert resumed.fit().start_step == 2
    for name, tensor in straight.module.state_dict().items():
        assert torch.equal(tensor, resumed.module.state_dict()[name]), name


def test_multi_label_csv_trains_with_bce_and_reports_map(folders, tmp_path):
    rows = "".join(f"{label}/v{k}.mp4,{label if k else 'bottom;top'}\n" for label in CLASSES for k in range(3))
    videos = read_video_csv(write_text(tmp_path / "list.csv", "video,label\n" + rows), folders)
    assert videos.multi_label
    train, val = clip_data(videos)
    clips, target = train[0]
    assert clips.shape == (3, CLIP_FRAMES, 32, 32) and target.tolist() == [1.0, 1.0]
    out = tmp_path / "run"
    make_trainer(videos, out, steps=2, plots=False).fit()
    (record,) = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines() if '"val"' in line]
    assert 0 < record["map"] <= 1 and record["classes"] == 2 and "top1" not in record
    assert not (out / CONFUSION_JSON).exists()


def test_time_ranges_select_frames(folders, tmp_path):
    csv = write_text(tmp_path / "list.csv", "video,label,start,end\ntop/v0.mp4,top,0.2,0.6\ntop/v1.mp4,top,0.4,5\n")
    videos = read_video_csv(csv, folders)
    first, second = index_videos(videos.videos, SMALL, source_fps=FPS)
    assert (first.first, first.count) == (5, 10)  # 0.2 s to 0.6 s at 25 fps
    assert (second.first, second.count) == (10, FRAMES - 10)  # the end is past the video's
    empty = write_text(tmp_path / "empty.csv", "video,label,start,end\ntop/v0.mp4,top,3,4\n")
    with pytest.raises(I3DError, match="the range 3.0..4.0 s holds none of its 20 frames at 25 fps"):
        index_videos(read_video_csv(empty, folders).videos, SMALL, source_fps=FPS)


def test_validation_clip_starts_are_evenly_spaced():
    assert clip_starts(0, 100, 16, 3) == [0, 42, 84]
    assert clip_starts(10, 16, 16, 3) == [10, 10, 10]
    assert clip_starts(10, 5, 16, 2) == [10, 10]  # shorter than a clip: repeated to length


def test_a_broken_video_is_found_before_step_1(folders, tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes((folders / "top" / "v0.mp4").read_bytes()[:300])
    videos = read_class_folders(folders)
    entries = list(videos.videos) + [type(videos.videos[0])(broken, (1,), key="top/broken.mp4")]
    with pytest.raises(I3DError) as err:
        index_videos(entries, SMALL, source_fps=FPS)
    assert str(err.value).startswith(f"{broken}: ") and "found before training" in str(err.value)
    indexed = index_videos(entries, SMALL, source_fps=FPS, on_broken="skip")
    assert len(indexed) == 12
    assert capsys.readouterr().err.startswith(f"i3d: warning: skipped training video: {broken}: ")


def test_accuracy_metrics():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.1, 0.2, 0.7]])
    result = accuracy(scores, [0, 1, 1, 0])
    assert (result.top1, result.top5) == (0.5, 1.0)
    assert result.mean_class_acc == pytest.approx(0.5)  # class 0: 1 of 2, class 1: 1 of 2
    assert result.confusion.tolist() == [[1, 0, 1], [1, 1, 0], [0, 0, 0]]
    assert math.isnan(accuracy(np.zeros((0, 3)), np.zeros(0)).top1)


def test_schedules_and_parameter_groups():
    steps = tiny_recipe(max_steps=10, lr_milestones=(4, 8), warmup_steps=2)
    assert [lr_factor(steps, s) for s in (0, 1, 2, 4, 8)] == pytest.approx([0.5, 1, 1, 0.1, 0.01])
    cosine = tiny_recipe(max_steps=10, schedule="cosine", warmup_steps=2)
    assert [lr_factor(cosine, s) for s in (0, 2, 6, 10)] == pytest.approx([0.5, 1, 0.5, 0])
    from i3d.model import InceptionI3d
    from i3d.train.finetune import freeze, frozen_modules

    model = InceptionI3d(num_classes=3)
    freeze(frozen_modules(model, "Mixed_4f"))
    recipe = tiny_recipe(num_classes=3, trunk_lr_scale=0.1, freeze_until="Mixed_4f")
    head, trunk = parameter_groups(model, recipe)
    assert head["lr"] == recipe.learning_rate and trunk["lr"] == pytest.approx(recipe.learning_rate * 0.1)
    assert len(head["params"]) == 2  # the classifier's weight and bias
    trained = {id(p) for p in trunk["params"]}
    assert all(id(p) not in trained for p in model.Mixed_4f.parameters())
    assert any(id(p) in trained for p in model.Mixed_5b.parameters())
    with pytest.raises(ValueError, match="freeze_until must be an endpoint"):
        tiny_recipe(freeze_until="Mixed_9z")


class FakeBoard:
    def __init__(self):
        self.scalars = []
        self.closed = False

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_run_log_status_line_and_tensorboard(tmp_path, monkeypatch, capsys):
    from i3d.train import runlog

    board = FakeBoard()
    monkeypatch.setattr(runlog, "_tensorboard_writer", lambda folder: board)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    log = runlog.RunLog(tmp_path / "train.jsonl", echo=True, keep_until=None, total_steps=4)
    log.progress(1, 0.5, 3.0)
    log.write({"event": "train", "step": 2, "loss": float("nan"), "lr": 0.1}, "step 2 line")
    log.write({"event": "val", "step": 2, "top1": 0.75, "videos": 4})
    log.close()
    captured = capsys.readouterr()
    assert "step 2 line" in captured.out and "3.0 clips/s" in captured.err  # the status line, on the terminal
    assert board.closed and ("val/top1", 0.75, 2) in board.scalars and ("train/lr", 0.1, 2) in board.scalars
    # Strict JSON: NaN is null.
    assert json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])["loss"] is None


def test_bn_momentum_is_set_for_training_only_when_asked(tmp_path, folders):
    videos = read_class_folders(folders)
    kept = make_trainer(videos, tmp_path / "a")
    assert kept.module.bn.momentum == 0.1  # TinyNet's own
    recipe = tiny_recipe(num_classes=2, clip_frames=CLIP_FRAMES, bn_momentum=0.5)
    train, _ = clip_data(videos)
    trainer = Trainer(TinyNet(2), train, recipe, TrainOptions(out=tmp_path / "b", workers=0, echo=False))
    assert trainer.module.bn.momentum == 0.5
    with pytest.raises(ValueError, match="bn_momentum must be in"):
        tiny_recipe(bn_momentum=2.0)
