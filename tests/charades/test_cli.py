from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest

from i3d.charades import cli
from i3d.charades.submission import LOCALIZATION_FRAMES, write_classification, write_localization
from tests.charades.helpers import format_actions, write_classes, write_csv


@pytest.fixture
def files(tmp_path):
    rows = [
        ("A", format_actions([(0, 0.0, 3.0), (5, 1.0, 2.0)]), 4.0),
        ("B", "", 2.0),
        ("C", format_actions([(5, 0.5, 1.5)]), 6.0),
    ]
    rng = np.random.default_rng(0)
    classify = tmp_path / "classify.txt"
    # Perfect for class 0, a tie for class 5 with A first.
    scores = {vid: rng.normal(size=157) for vid in "AC"}
    scores["A"][0], scores["C"][0] = 2.0, -2.0
    scores["A"][5] = scores["C"][5] = 1.0
    write_classification(classify, scores)
    localize = tmp_path / "localize.txt"
    write_localization(localize, {vid: rng.normal(size=(25, 157)) for vid in "ABC"})
    return {
        "gt": write_csv(tmp_path / "gt.csv", rows),
        "classes": write_classes(tmp_path / "classes.txt"),
        "classify": classify,
        "localize": localize,
        "tmp": tmp_path,
    }


def parse(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args([str(a) for a in argv])


def test_classify_json(files, capsys):
    args = parse(cli.add_classify_arguments, ["--gt", files["gt"], "--pred", files["classify"], "--json"])
    assert cli.run_classify(args) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert set(result) == {"map", "wap", "classes", "per_class"}
    assert result["classes"] == 2 and len(result["per_class"]) == 157
    assert result["per_class"][0] == 1.0 and result["per_class"][5] == 1.0 and result["per_class"][1] is None
    # The official script's mean would be NaN: the classes left out are named.
    no_positives = "i3d: warning: 155 class(es) without positives in the ground truth (c001, c002, c003, c004, c006"
    assert result["map"] == 1.0 and err.startswith(no_positives) and err.count("\n") == 1


def test_localize_json_and_plot(files, capsys):
    plot = files["tmp"] / "ap.png"
    argv = ["--gt", files["gt"], "--pred", files["localize"], "--json", "--plot", plot]
    assert cli.run_localize(parse(cli.add_localize_arguments, argv)) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["classes"] == 2 and 0 < result["map"] <= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_classify_table_with_names_and_warnings(files, capsys):
    files["classify"].write_text(files["classify"].read_text().splitlines()[0] + "\n")
    argv = ["--gt", files["gt"], "--pred", files["classify"], "--classes", files["classes"]]
    assert cli.run_classify(parse(cli.add_classify_arguments, argv)) == 0
    out, err = capsys.readouterr()
    assert "classification mAP: " in out and "classes averaged: 2 of 157" in out
    assert "c000     1.0000         1  Class number 0, made up" in out
    assert "i3d: warning: 1 videos missing from the submission (C); they score -inf" in err


def test_malformed_submission_exit_status(files, capsys):
    files["classify"].write_text("A 1 2 3\n")
    argv = ["--gt", files["gt"], "--pred", files["classify"], "--json"]
    assert cli.run_classify(parse(cli.add_classify_arguments, argv)) == 1
    out, err = capsys.readouterr()
    assert out == "" and err == f"i3d: error: {files['classify']}:1: video A: 3 scores, expected 157\n"


@pytest.mark.slow
def test_timeline(files, capsys):
    out = files["tmp"] / "A.png"
    argv = [
        "--gt",
        files["gt"],
        "--pred",
        files["localize"],
        "--video",
        "A",
        "--out",
        out,
        "--classes",
        files["classes"],
    ]
    assert cli.run_timeline(parse(cli.add_timeline_arguments, argv)) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    argv[argv.index("A")] = "Z"
    assert cli.run_timeline(parse(cli.add_timeline_arguments, argv)) == 1
    assert "no video Z" in capsys.readouterr().err


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Imports of matplotlib fail, as where the ``plot`` extra is not installed."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


MATPLOTLIB_MISSING = "i3d: error: plots need matplotlib: pip install 'i3d[plot]'\n"


def test_without_matplotlib_the_numbers_still_come_out(files, capsys, no_matplotlib):
    plot = files["tmp"] / "ap.png"
    argv = ["--gt", files["gt"], "--pred", files["classify"], "--json", "--plot", plot]
    assert cli.run_classify(parse(cli.add_classify_arguments, argv)) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["map"] == 1.0
    assert err.endswith("\n" + MATPLOTLIB_MISSING) and not plot.exists()


def test_timeline_without_matplotlib_is_a_one_line_error(files, capsys, no_matplotlib):
    argv = ["--gt", files["gt"], "--pred", files["localize"], "--video", "A", "--out", files["tmp"] / "A.png"]
    assert cli.run_timeline(parse(cli.add_timeline_arguments, argv)) == 1
    assert capsys.readouterr().err == MATPLOTLIB_MISSING


def test_top_must_be_positive(files, capsys):
    argv = ["--gt", files["gt"], "--pred", files["localize"], "--video", "A", "--out", "x.png", "--top", "0"]
    with pytest.raises(SystemExit) as exit_:
        parse(cli.add_timeline_arguments, argv)
    assert exit_.value.code == 2 and "argument --top: 0 is not >= 1" in capsys.readouterr().err


def test_the_help_gives_the_official_frame_count():
    # The flags are defined without importing numpy, hence a copy of the constant.
    assert cli._LOCALIZATION_FRAMES == LOCALIZATION_FRAMES
