from __future__ import annotations

import json

import numpy as np
import pytest

from i3d.charades.annotations import (
    Action,
    Video,
    class_labels,
    frame_labels,
    localization_labels,
    read_classes,
    read_csv,
    read_split_json,
    validate_video_id,
)
from i3d.charades.submission import read_classification_submission
from i3d.errors import InputError
from tests.charades.helpers import write_classes, write_csv


def make_video(actions, length):
    return Video("V", length, tuple(Action(c, float(s), float(e)) for c, s, e in actions))


def test_read_csv_quoted_fields_and_empty_actions(tmp_path):
    path = write_csv(
        tmp_path / "Charades_v1_test.csv",
        [("46GP8", "c092 11.90 21.20;c147 0.00 12.60", 24.83), ("N11GT", "", 8.5)],
        description="He walks in, picks up a cup, and leaves.",
    )
    first, second = read_csv(path)
    assert first.id == "46GP8" and first.length == 24.83 and first.subset == "testing"
    assert first.actions == (Action(92, 11.9, 21.2), Action(147, 0.0, 12.6))
    assert first.descriptions == "He walks in, picks up a cup, and leaves."
    assert first.script == "A person opens a door,\nthen sits."
    assert first.classes == {92, 147}
    assert second.actions == () and second.classes == frozenset()


def test_subset_from_file_name(tmp_path):
    rows = [("A1", "", 1.0)]
    assert read_csv(write_csv(tmp_path / "Charades_v1_train.csv", rows))[0].subset == "training"
    assert read_csv(write_csv(tmp_path / "mine.csv", rows))[0].subset is None
    assert read_csv(write_csv(tmp_path / "mine2.csv", rows), subset="testing")[0].subset == "testing"


@pytest.mark.parametrize(
    "actions, length, cause",
    [
        ("c092 11.90", "5", "bad action"),
        ("x092 1 2", "5", "bad class"),
        ("c157 1 2", "5", "out of range"),
        ("c001 one 2", "5", "start 'one' is not a number"),
        ("c001 1 2", "", "length '' is not a number"),
        ("c001 1 2", "-3", "negative length"),
    ],
)
def test_malformed_csv_line_names_file_and_line(tmp_path, actions, length, cause):
    path = tmp_path / "gt.csv"
    write_csv(path, [("GOOD1", "c000 0.0 1.0", 2.0), ("BAD22", actions, 3.0)])
    # The quoted script field spans two lines: the second record starts on line 4.
    text = path.read_text().replace(",3.0\n", f",{length}\n")
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_csv(path)
    message = str(info.value)
    assert message.startswith(f"{path}:4: ") and cause in message and "BAD22" in message


def test_csv_wrong_field_count_and_missing_column(tmp_path):
    path = write_csv(tmp_path / "gt.csv", [("GOOD1", "", 2.0)])
    path.write_text(path.read_text() + "EXTRA,1,2\n")
    with pytest.raises(InputError, match=r"gt\.csv:4: 3 fields, the header has 11"):
        read_csv(path)
    path.write_text("id,actions\nA,\n")
    with pytest.raises(InputError, match=r"gt\.csv:1: header lacks column\(s\) length"):
        read_csv(path)


def test_csv_repeated_and_unsafe_ids(tmp_path):
    path = write_csv(tmp_path / "gt.csv", [("A1", "", 1.0), ("A1", "", 1.0)])
    with pytest.raises(InputError, match=r"gt\.csv:4: video id 'A1' repeated \(first on line 2\)"):
        read_csv(path)
    path = write_csv(tmp_path / "gt.csv", [("../../etc", "", 1.0)])
    with pytest.raises(InputError, match=r"gt\.csv:2: invalid video id '\.\./\.\./etc'"):
        read_csv(path)


@pytest.mark.parametrize("bad", ["", ".", "..", "../x", "a/b", "a\\b", "a b", "x.jpg", "é1", "a\n", "x" * 256])
def test_validate_video_id_rejects(bad):
    with pytest.raises(InputError, match="invalid video id"):
        validate_video_id(bad)


@pytest.mark.parametrize("good", ["46GP8", "a_b-c", "0", "x" * 255])
def test_validate_video_id_accepts(good):
    assert validate_video_id(good) == good


def test_read_classes(tmp_path):
    classes = read_classes(write_classes(tmp_path / "classes.txt"))
    assert len(classes) == 157
    assert classes[0].code == "c000" and classes[0].name == "Class number 0, made up"
    assert classes[156].index == 156
    bad = tmp_path / "bad.txt"
    bad.write_text("c000 Holding some clothes\nc002 Skipped one\n")
    with pytest.raises(InputError, match=r"bad\.txt:2: class c002 out of order \(expected c001\)"):
        read_classes(bad)
    bad.write_text("c000 Holding some clothes\nnonsense\n")
    with pytest.raises(InputError, match=r"bad\.txt:2: expected 'cNNN class name'"):
        read_classes(bad)


def test_read_split_json(tmp_path):
    path = tmp_path / "charades.json"
    path.write_text(
        json.dumps(
            {
                "46GP8": {"subset": "training", "duration": 24.83, "actions": [[92, 11.9, 21.2], [147, 0, 12.6]]},
                "N11GT": {"subset": "testing", "duration": 8.5, "actions": []},
            }
        )
    )
    first, second = read_split_json(path)
    assert first.subset == "training" and first.actions == (Action(92, 11.9, 21.2), Action(147, 0.0, 12.6))
    assert second.subset == "testing" and second.length == 8.5 and second.actions == ()
    path.write_text(json.dumps({"X": {"subset": "training", "duration": 3, "actions": [[157, 0, 1]]}}))
    with pytest.raises(InputError, match=r"charades\.json: video X: bad class 157"):
        read_split_json(path)
    path.write_text(json.dumps({"../X": {"subset": "training", "duration": 3, "actions": []}}))
    with pytest.raises(InputError, match="invalid video id"):
        read_split_json(path)
    path.write_text('{"X": {\n"subset": }')
    with pytest.raises(InputError, match=r"charades\.json:2: bad JSON"):
        read_split_json(path)


def test_frame_labels_inclusive_ends():
    video = make_video([(3, 0.5, 1.0), (5, 0.0, 0.25)], length=2.0)
    labels = frame_labels(video, num_frames=8, fps=4.0)
    assert labels.shape == (157, 8) and labels.dtype == np.float32
    # Frame f is at f / 4 seconds.
    assert labels[3].tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
    assert labels[5].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert labels.sum() == 5


def test_localization_labels_use_the_official_arithmetic():
    # (3 / 25) * 1.01 is exactly 0.1212 in floating point, 3 * 1.01 / 25 is not.
    video = make_video([(0, 0.0, 0.1212)], length=1.01)
    labels = localization_labels(video, 25)
    assert labels.shape == (25, 157)
    assert labels[:, 0].tolist() == [True] * 4 + [False] * 21
    assert not labels[:, 1:].any()


def test_class_labels():
    videos = [make_video([(2, 0, 1), (2, 3, 4)], 5.0), make_video([], 5.0)]
    labels = class_labels(videos)
    assert labels.shape == (2, 157) and labels[0, 2] and labels.sum() == 1


@pytest.mark.parametrize("reader", [read_split_json, read_classes, read_classification_submission])
def test_a_file_that_is_not_utf8_is_an_error_naming_it(tmp_path, reader):
    path = tmp_path / "latin1.txt"
    path.write_bytes('{"caf\u00e9": 1}\n'.encode("latin-1"))
    with pytest.raises(InputError) as info:
        reader(path)
    assert str(info.value).startswith(f"{path}: not UTF-8 text: invalid continuation byte")
    with pytest.raises(InputError, match=r"missing\.txt: cannot read: No such file"):
        reader(tmp_path / "missing.txt")


def test_a_byte_order_mark_is_not_content(tmp_path):
    path = tmp_path / "charades.json"
    path.write_text("\ufeff" + json.dumps({"X": {"subset": "testing", "duration": 1.0, "actions": []}}), "utf-8")
    assert [v.id for v in read_split_json(path)] == ["X"]
