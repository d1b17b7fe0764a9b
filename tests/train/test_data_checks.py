"""Datasets that would train silently wrong are refused or warned about: one class, an empty
class, a class folder that is a link to another, a class name with a line break; bad numbers
name their flag or config key."""

from __future__ import annotations

import os

import pytest

from i3d.errors import InputError
from i3d.train.cli import run_train
from i3d.train.datasets import read_class_folders, read_video_csv
from tests.train.labelled_data import TINY, copy_tree, parse, write_text


def test_a_single_class_is_an_error(folders, tmp_path, capsys):
    csv = write_text(tmp_path / "one.csv", "video,label\ntop/v0.mp4,top\ntop/v1.mp4,top\n")
    args = parse(*TINY, "--format", "csv", "--root", str(folders), "--csv", str(csv), "--out", str(tmp_path / "o"))
    assert run_train(args) == 1
    err = capsys.readouterr().err
    assert err == f"i3d: error: {csv}: only 'top' of its 1 class(es) has training videos; a classifier needs two\n"


def test_an_empty_class_folder_is_named_in_a_warning(folders, tmp_path, capsys):
    root = copy_tree(folders, tmp_path / "root")
    (root / "sideways").mkdir()
    listed = read_class_folders(root)
    assert listed.classes == ("bottom", "sideways", "top")
    from i3d.train.sources import video_lists

    video_lists({"format": "folders", "root": str(root), "train": None, "classes": None, "val": None,
                 "val_root": None})  # fmt: skip
    err = capsys.readouterr().err
    assert err == f"i3d: warning: {root}: 1 class folder(s) without videos, trained as never seen: 'sideways'\n"


def test_a_linked_class_folder_is_refused(folders, tmp_path):
    root = copy_tree(folders, tmp_path / "root")
    os.symlink(root / "top", root / "up")
    with pytest.raises(InputError, match=r"up: is a link to the class folder 'top': one class would count twice"):
        read_class_folders(root)
    # A link to a folder elsewhere is a class like any other.
    (root / "up").unlink()
    os.symlink(folders / "top", root / "up")
    assert read_class_folders(root).classes == ("bottom", "top", "up")


def test_a_label_with_a_line_break_is_refused(tmp_path):
    csv = write_text(tmp_path / "l.csv", 'video,label\na.mp4,"one\ntwo"\nb.mp4,three\n')
    with pytest.raises(InputError, match=r"l.csv: class name 'one\\ntwo' holds a line break"):
        read_video_csv(csv, tmp_path)


@pytest.mark.parametrize(
    ("argv", "config", "message"),
    [
        (("--trunk-lr-scale", "-1"), None, "i3d: error: --trunk-lr-scale: trunk_lr_scale must be a finite number >= 0"),
        ((), "[recipe]\nlearning_rate = nan\n", "recipe.learning_rate = nan: not a finite number"),
        ((), "[recipe]\nmomentum = 1.5\n", "recipe.momentum: momentum must be in [0, 1), got 1.5"),
    ],
)
def test_bad_numbers_name_their_flag_or_config_key(folders, tmp_path, capsys, argv, config, message):
    extra = ("--config", str(write_text(tmp_path / "c.toml", config))) if config else ()
    args = parse(*TINY, *argv, *extra, "--root", str(folders), "--out", str(tmp_path / "o"))
    assert run_train(args) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    if config:
        assert err.startswith(f"i3d: error: {tmp_path / 'c.toml'}: ")


def test_float_flags_refuse_nan_and_infinity():
    for flag in ("--label-smoothing", "--weight-decay", "--bn-momentum", "--trunk-lr-scale"):
        for value in ("nan", "inf"):
            with pytest.raises(SystemExit):
                parse(flag, value)


def test_the_layout_is_told_by_the_header(tmp_path, capsys):
    from i3d.train.cli import resolve_config

    lists = {
        "plain.csv": ("video,label\na.mp4,x\n", "csv"),
        "kin.csv": ("label,youtube_id,time_start,time_end,split\nx,abc,0,10,train\n", "kinetics"),
        "Charades_v1_train.csv": ("id,subject,actions,length\nAB12,s,,3\n", "charades"),
        "split.json": ("{}", "charades"),
    }
    for name, (text, layout) in lists.items():
        path = write_text(tmp_path / name, text)
        config = resolve_config(parse("--root", str(tmp_path), "--csv", str(path), "--out", str(tmp_path / "o")))
        assert config["data"]["format"] == layout, name
    # Told, it is not guessed.
    told = resolve_config(parse("--format", "kinetics", "--csv", str(tmp_path / "plain.csv"), "--root", "r",
                                "--out", "o"))  # fmt: skip
    assert told["data"]["format"] == "kinetics"
    odd = write_text(tmp_path / "odd.csv", "file,class\na.mp4,x\n")
    assert run_train(parse("--root", str(tmp_path), "--csv", str(odd), "--out", str(tmp_path / "o"))) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"i3d: error: {odd}: line 1: cannot tell the dataset layout from the header 'file,class'")
    assert err.endswith("; pass --format\n") and err.count("\n") == 1


def test_flip_label_map(tmp_path):
    from i3d.train.datasets import read_flip_map

    classes = ("left to right", "right to left", "still", "up")
    good = write_text(tmp_path / "flip.csv", "left to right,right to left\n\n")
    assert read_flip_map(good, classes) == (1, 0, 2, 3)
    for text, cause in [
        ("left to right\n", "line 1: expected two different labels"),
        ("still,sideways\n", "line 1: unknown class 'sideways'"),
        ("left to right,right to left\nup,left to right\n", "line 2: class 'left to right' is already paired"),
    ]:
        with pytest.raises(InputError, match=cause):
            read_flip_map(write_text(tmp_path / "bad.csv", text), classes)


def _flips(folders, hflip: bool, flipped_classes=None) -> list[tuple[bool, int]]:
    """(mirrored, target) of video 0 (class 'bottom') under 16 seeds."""
    import torch

    from i3d.train.clips import TrainingClips, index_videos
    from i3d.train.datasets import read_class_folders
    from i3d.video.presets import Preprocess

    videos = read_class_folders(folders)
    preprocess = Preprocess("rgb", fps=25.0, resize_short_side=32, crop=32)
    indexed = index_videos(videos.videos[:1], preprocess, source_fps=25.0)
    frames = indexed[0].count  # whole videos: the clips differ by their flip only
    clips = TrainingClips(indexed, videos, preprocess, frames, 25.0, hflip=hflip, flipped_classes=flipped_classes)
    out = []
    for seed in range(16):
        clips.generator = torch.Generator().manual_seed(seed)
        clip, target = clips[0]
        clips.generator = torch.Generator().manual_seed(seed)
        plain = clips._open(clips.videos[0], train=True, generator=clips.generator, hflip=False)
        out.append((not torch.equal(clip, next(plain.chunks(frames))), int(target)))
    return out


@pytest.mark.slow
def test_hflip_off_never_mirrors_and_a_flip_map_swaps_labels(folders):
    assert all(not mirrored and target == 0 for mirrored, target in _flips(folders, hflip=False))
    drawn = _flips(folders, hflip=True, flipped_classes=(1, 0))
    assert {mirrored for mirrored, _ in drawn} == {True, False}  # both, in 16 draws of p = 1/2
    assert all(target == (1 if mirrored else 0) for mirrored, target in drawn)
