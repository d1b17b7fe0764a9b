"""Dataset lists: class folders, plain CSV and Kinetics' CSV, and their malformed lines (file and line named)."""

from __future__ import annotations

import pytest

from i3d.errors import InputError
from i3d.train.datasets import (
    read_class_folders,
    read_classes,
    read_kinetics_csv,
    read_video_csv,
    read_video_list,
)
from tests.train.labelled_data import write_text


@pytest.fixture
def folders(tmp_path):
    """``root/CLASS/...`` with empty files: listing never decodes."""
    root = tmp_path / "ucf"
    for label, names in {"Archery": ["v_a1.avi", "v_a2.mp4"], "Bowling": ["v_b1.avi"]}.items():
        (root / label).mkdir(parents=True)
        for name in names:
            (root / label / name).write_bytes(b"")
    (root / "Bowling" / "v_b2").mkdir()  # a frame folder
    (root / "Bowling" / "notes.txt").write_text("not a video")
    return root


def test_class_folders(folders):
    videos = read_class_folders(folders)
    assert videos.classes == ("Archery", "Bowling") and not videos.multi_label
    assert [(v.key, v.labels) for v in videos.videos] == [
        ("Archery/v_a1.avi", (0,)),
        ("Archery/v_a2.mp4", (0,)),
        ("Bowling/v_b1.avi", (1,)),
        ("Bowling/v_b2", (1,)),
    ]
    assert videos.videos[3].path == folders / "Bowling" / "v_b2"


def test_class_folders_with_a_split_file(folders, tmp_path):
    # UCF101's trainlist has the class number after the path; testlist has none.
    split = write_text(tmp_path / "trainlist01.txt", "Archery/v_a2.mp4 1\n\nBowling/v_b1.avi\n")
    videos = read_class_folders(folders, split)
    assert [v.key for v in videos.videos] == ["Archery/v_a2.mp4", "Bowling/v_b1.avi"]
    assert [v.labels for v in videos.videos] == [(0,), (1,)]


@pytest.mark.parametrize(
    ("text", "line", "cause"),
    [
        ("Archery/v_a1.avi\nArchery/v_a1.avi 1 extra\n", 2, "expected 'CLASS/VIDEO [number]', got 3 fields"),
        ("v_a1.avi\n", 1, "expected CLASS/VIDEO, got 'v_a1.avi'"),
        ("Archery/v_a1.avi\n\nCycling/v_c1.avi\n", 3, "unknown class 'Cycling'"),
        ("../Archery/v_a1.avi\n", 1, "video path '../Archery/v_a1.avi' must be relative to the root, without '..'"),
        ("Archery/v_a1.avi\nArchery/v_a1.avi\n", 2, "Archery/v_a1.avi is listed twice (first on line 1)"),
    ],
)
def test_malformed_split_lines(folders, tmp_path, text, line, cause):
    split = write_text(tmp_path / "split.txt", text)
    with pytest.raises(InputError) as err:
        read_class_folders(folders, split)
    assert str(err.value) == f"{split}: line {line}: {cause}"


def test_class_folders_not_in_the_class_list(folders, tmp_path):
    with pytest.raises(InputError, match="class folder 'Bowling' is not in the class list"):
        read_class_folders(folders, classes=("Archery",))
    with pytest.raises(InputError, match="no such folder"):
        read_class_folders(tmp_path / "nowhere")


def test_plain_csv_single_label(tmp_path):
    csv = write_text(tmp_path / "train.csv", "video,label\nclips/a.mp4,run\nclips/b.mp4,jump\n\nc.mp4,run\n")
    videos = read_video_csv(csv, tmp_path / "root")
    assert videos.classes == ("jump", "run") and not videos.multi_label
    assert [(v.key, v.labels, v.path) for v in videos.videos] == [
        ("clips/a.mp4", (1,), tmp_path / "root" / "clips" / "a.mp4"),
        ("clips/b.mp4", (0,), tmp_path / "root" / "clips" / "b.mp4"),
        ("c.mp4", (1,), tmp_path / "root" / "c.mp4"),
    ]


def test_plain_csv_multi_label_with_times_and_a_class_file(tmp_path):
    classes = write_text(tmp_path / "classes.txt", "sit\nstand\nwave\n")
    csv = write_text(tmp_path / "train.csv", "video,label,start,end\na.mp4,sit;wave,0,2.5\nb.mp4,stand,,\n")
    videos = read_video_list("csv", tmp_path, csv, classes)
    assert videos.classes == ("sit", "stand", "wave") and videos.multi_label
    first, second = videos.videos
    assert (first.labels, first.start, first.end) == ((0, 2), 0.0, 2.5)
    assert (second.labels, second.start, second.end) == ((1,), None, None)


@pytest.mark.parametrize(
    ("text", "line", "cause"),
    [
        ("video,labels\na.mp4,x\n", 1, "header must be 'video,label' or 'video,label,start,end', got 'video,labels'"),
        ("video,label\na.mp4\n", 2, "expected 2 fields (video,label), got 1"),
        ("video,label\na.mp4,x\n,y\n", 3, "empty video path"),
        ("video,label\n/etc/passwd,x\n", 2, "video path '/etc/passwd' must be relative to the root, without '..'"),
        ("video,label\na.mp4,x;;y\n", 2, "empty label in 'x;;y'"),
        ("video,label,start,end\na.mp4,x,one,2\n", 2, "start 'one' is not a number of seconds"),
        ("video,label,start,end\na.mp4,x,3,2\n", 2, "end 2 is not after start 3"),
        ("video,label\na.mp4,x\na.mp4,y\n", 3, "a.mp4 is listed twice (first on line 2)"),
    ],
)
def test_malformed_csv_lines(tmp_path, text, line, cause):
    csv = write_text(tmp_path / "list.csv", text)
    with pytest.raises(InputError) as err:
        read_video_csv(csv, tmp_path)
    assert str(err.value) == f"{csv}: line {line}: {cause}"


def test_csv_labels_must_be_in_the_class_file(tmp_path):
    classes = write_text(tmp_path / "classes.txt", "a\nb\n")
    csv = write_text(tmp_path / "list.csv", "video,label\nx.mp4,a\ny.mp4,c\n")
    with pytest.raises(InputError) as err:
        read_video_list("csv", tmp_path, csv, classes)
    assert str(err.value) == f"{csv}: line 3: unknown class 'c' (not in the class list)"
    duplicate = write_text(tmp_path / "dup.txt", "a\nb\na\n")
    with pytest.raises(InputError, match=r"dup.txt: line 3: class 'a' is listed twice \(first on line 1\)"):
        read_classes(duplicate)


KINETICS_HEADER = "label,youtube_id,time_start,time_end,split,is_cc\n"


def test_kinetics_csv_finds_both_file_names(tmp_path):
    root = tmp_path / "kinetics"
    (root / "abseiling").mkdir(parents=True)
    trimmed = root / "abseiling" / "AAAAAAAAAAA_000010_000020.mp4"
    by_id = root / "BBBBBBBBBBB.mp4"
    trimmed.write_bytes(b"")
    by_id.write_bytes(b"")
    csv = write_text(
        tmp_path / "train.csv",
        KINETICS_HEADER + "abseiling,AAAAAAAAAAA,10,20,train,0\n"
        "air drumming,BBBBBBBBBBB,3,13,train,0\n"
        "abseiling,CCCCCCCCCCC,0,10,train,0\n",
    )
    videos = read_kinetics_csv(csv, root)
    assert videos.classes == ("abseiling", "air drumming")
    assert [(v.path, v.labels, v.key) for v in videos.videos] == [
        (trimmed, (0,), "AAAAAAAAAAA_000010_000020"),
        (by_id, (1,), "BBBBBBBBBBB_000003_000013"),
        # Not there: the trimmed name, which the pre-flight index reports as missing.
        (root / "CCCCCCCCCCC_000000_000010.mp4", (0,), "CCCCCCCCCCC_000000_000010"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "cause"),
    [
        ("youtube_id,time_start,time_end,split\nA,0,10,test\n", 1, "header lacks label"),
        (KINETICS_HEADER + "x,A,0,10,train\n", 2, "expected 6 fields, got 5"),
        (KINETICS_HEADER + "x,A,zero,10,train,0\n", 2, "time_start 'zero' is not a number of seconds"),
        (KINETICS_HEADER + "x,A,1.5,10,train,0\n", 2, "time_start '1.5' is not a whole number of seconds"),
        (KINETICS_HEADER + "x,A,10,10,train,0\n", 2, "time_end 10 is not after time_start 10"),
        (KINETICS_HEADER + "x,../A,0,10,train,0\n", 2, "invalid youtube_id '../A'"),
        (KINETICS_HEADER + "x,A,0,10,train,0\ny,A,0,10,train,0\n", 3, "A_000000_000010 is listed twice"),
    ],
)
def test_malformed_kinetics_lines(tmp_path, text, line, cause):
    csv = write_text(tmp_path / "kinetics.csv", text)
    with pytest.raises(InputError) as err:
        read_kinetics_csv(csv, tmp_path)
    assert str(err.value).startswith(f"{csv}: line {line}: {cause}")


def test_empty_and_non_utf8_files(tmp_path):
    empty = write_text(tmp_path / "empty.csv", "")
    with pytest.raises(InputError, match="empty file, expected a header line"):
        read_video_csv(empty, tmp_path)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"video,label\n\xff\xfe,x\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_video_csv(binary, tmp_path)
