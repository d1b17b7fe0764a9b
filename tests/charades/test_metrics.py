from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from i3d.charades.annotations import Action, Video
from i3d.charades.metrics import (
    average_precision,
    evaluate_classification,
    evaluate_classification_file,
    evaluate_localization,
    evaluate_localization_file,
    mean_average_precision,
)
from i3d.charades.submission import SubmissionWarning, read_classification_submission, read_localization_submission
from i3d.errors import InputError
from tests.charades.helpers import format_actions, write_csv


def video(video_id, classes=(), length=10.0):
    return Video(video_id, length, tuple(Action(c, 0.0, length) for c in classes))


def reference_ap(scores, labels):
    """Precision at each positive, counted row by row: O(n^2), no sorting.

    Row k ranks at or before row i when its score is higher, or equal and
    k comes first in the file; NaN scores rank after everything else.
    """

    def at_or_before(k, i):
        if math.isnan(scores[i]):
            return not math.isnan(scores[k]) or k <= i
        if math.isnan(scores[k]):
            return False
        return scores[k] > scores[i] or (scores[k] == scores[i] and k <= i)

    positives = [i for i in range(len(scores)) if labels[i]]
    if not positives:
        return None
    total = 0.0
    for i in positives:
        rank = sum(at_or_before(k, i) for k in range(len(scores)))
        hits = sum(at_or_before(k, i) for k in positives)
        total += hits / rank
    return total / len(positives)


@pytest.mark.parametrize("seed", range(4))
def test_against_straightforward_reference_on_random_data(seed):
    rng = np.random.default_rng(seed)
    n, c = 70, 9
    # Few distinct values, so that ties are everywhere, with -inf and NaN.
    scores = rng.choice(
        [-np.inf, -1.0, 0.0, 0.25, 0.5, 1.0, np.nan], size=(n, c), p=[0.1, 0.2, 0.2, 0.2, 0.1, 0.15, 0.05]
    )
    scores[:, 0] = rng.normal(size=n)  # one class without ties
    labels = rng.random((n, c)) < 0.3
    labels[:, 3] = False  # one class without positives
    result = mean_average_precision(scores, labels)
    expected = [reference_ap(scores[:, k].tolist(), labels[:, k].tolist()) for k in range(c)]
    assert result.per_class[3] is None and expected[3] is None
    for got, want in zip(result.per_class, expected):
        assert (got is None and want is None) or got == pytest.approx(want, rel=1e-12)
    kept = [(ap, labels[:, k].sum()) for k, ap in enumerate(expected) if ap is not None]
    assert result.classes == c - 1 == len(kept)
    assert result.map == pytest.approx(sum(ap for ap, _ in kept) / len(kept), rel=1e-12)
    assert result.wap == pytest.approx(sum(ap * w for ap, w in kept) / sum(w for _, w in kept), rel=1e-12)
    assert result.positives == tuple(int(x) for x in labels.sum(axis=0))
    assert result.samples == n


def test_hand_computed_classification():
    # Class 0: positives at ranks 1, 3 and 5. Class 1: a five-way tie, the
    # positive second in file order. Class 2: no positives. Class 3: a tie,
    # the positive fourth.
    videos = [video("V1", [0]), video("V2", [1]), video("V3", [0]), video("V4", [3]), video("V5", [0])]
    predictions = {
        "V1": [0.9, 0.5, 0.3, 0.0],
        "V2": [0.8, 0.5, 0.2, 0.0],
        "V3": [0.7, 0.5, 0.1, 0.0],
        "V4": [0.6, 0.5, 0.0, 0.0],
        "V5": [0.5, 0.5, -1.0, 0.0],
    }
    result = evaluate_classification(videos, predictions, num_classes=4)
    ap0 = (1 / 1 + 2 / 3 + 3 / 5) / 3
    assert result.per_class == pytest.approx((ap0, 1 / 2, None, 1 / 4))
    assert result.positives == (3, 1, 0, 1)
    assert result.classes == 3 and result.excluded == (2,)
    assert result.map == pytest.approx((ap0 + 1 / 2 + 1 / 4) / 3)
    assert result.wap == pytest.approx((3 * ap0 + 1 / 2 + 1 / 4) / 5)
    assert result.to_json() == {
        "map": result.map,
        "wap": result.wap,
        "classes": 3,
        "per_class": [result.per_class[0], 0.5, None, 0.25],
    }


def test_ties_keep_file_order():
    predictions = {"POS": [0.5, 0.0], "NEG": [0.5, 0.0]}
    pos_first = evaluate_classification([video("POS", [0]), video("NEG", [1])], predictions, num_classes=2)
    neg_first = evaluate_classification([video("NEG", [1]), video("POS", [0])], predictions, num_classes=2)
    assert pos_first.per_class[0] == 1.0
    assert neg_first.per_class[0] == 0.5


def test_missing_video_scores_minus_inf_with_warning():
    videos = [video("A", [0]), video("B", [0]), video("C", [1])]
    with pytest.warns(SubmissionWarning, match=r"1 videos missing from the submission \(B\); they score -inf"):
        result = evaluate_classification(videos, {"A": [0.2, 0.0], "C": [0.9, 0.0]}, num_classes=2)
    # Class 0 ranks C, A, then B at -inf.
    assert result.per_class[0] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_extra_ids_are_ignored_with_warning():
    videos = [video("A", [0]), video("B", [1])]
    predictions = {"A": [0.9, 0.1], "B": [0.1, 0.9]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = evaluate_classification(videos, predictions, num_classes=2)
    with pytest.warns(SubmissionWarning, match=r"1 ids not in the ground truth \(ZZZ\); ignored"):
        extra = evaluate_classification(videos, predictions | {"ZZZ": [5.0, 5.0]}, num_classes=2)
    assert extra == clean


def test_videos_without_actions_score_minus_inf():
    # As the official script: whatever the submission says, a video without
    # actions scores -inf, so it cannot push a positive down...
    predictions = {"P": [0.0, 0.0], "E": [10.0, 10.0], "Q": [-1.0, 1.0]}
    result = evaluate_classification([video("P", [0]), video("E"), video("Q", [1])], predictions, num_classes=2)
    assert result.per_class[0] == 1.0 and result.samples == 3
    # ...but ties at -inf with a missing positive listed after it.
    with pytest.warns(SubmissionWarning, match="missing"):
        result = evaluate_classification([video("E"), video("P", [0])], {"E": [1.0, 1.0]}, num_classes=2)
    assert result.per_class[0] == 0.5


def test_no_positives_at_all():
    result = evaluate_classification([video("E")], {"E": [1.0, 2.0]}, num_classes=2)
    assert result.classes == 0 and math.isnan(result.map) and math.isnan(result.wap)
    assert result.to_json() == {"map": None, "wap": None, "classes": 0, "per_class": [None, None]}


def test_hand_computed_localization():
    # 10 s: frames j = 1..25 at 0.4 * (j - 1) s; class 1 covers 2.0..4.0 s, frames 6..11, ends included.
    videos = [Video("V", 10.0, (Action(1, 2.0, 4.0),)), Video("E", 5.0)]
    predictions = {("V", j): [0.0, float(j)] for j in range(1, 26)}
    predictions |= {("E", j): [0.0, -1.0] for j in range(1, 26)}
    result = evaluate_localization(videos, predictions, num_classes=2)
    # Frame 11 ranks 15th, frame 6 20th.
    expected = sum(k / (14 + k) for k in range(1, 7)) / 6
    assert result.per_class == pytest.approx((None, expected))
    assert result.classes == 1 and result.positives == (0, 6) and result.samples == 50
    # A video without actions counts: its 25 negative frames, scored highest, come first.
    predictions |= {("E", j): [0.0, 100.0] for j in range(1, 26)}
    result = evaluate_localization(videos, predictions, num_classes=2)
    assert result.per_class[1] == pytest.approx(sum(k / (39 + k) for k in range(1, 7)) / 6)


def test_localization_missing_and_extra_frames():
    videos = [Video("V", 10.0, (Action(0, 0.0, 10.0),))]
    predictions = {("V", j): [1.0] for j in range(2, 27)}
    with pytest.warns(SubmissionWarning) as record:
        result = evaluate_localization(videos, predictions, num_classes=1)
    messages = " | ".join(str(w.message) for w in record)
    assert "1 frames missing from the submission (V frame 1)" in messages
    assert "1 frames not in the ground truth (V frame 26)" in messages
    # Frame 1 scores -inf: last of 25.
    assert result.per_class[0] == pytest.approx((24 + 25 / 25) / 25)


def _submission_line(video_id, scores, frame=None):
    frame_field = "" if frame is None else f"{frame}\t"
    return f"{video_id}\t{frame_field}" + " ".join(str(s) for s in scores) + "\n"


def test_submission_files_tabs_and_spaces(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        ("A", format_actions([(0, 0.0, 3.0), (5, 1.0, 2.0)]), 4.0),
        ("B", "", 2.0),
        ("C", format_actions([(5, 0.5, 1.5)]), 6.0),
    ]
    gt = write_csv(tmp_path / "gt.csv", rows)
    scores = rng.normal(size=(3, 157))
    pred = tmp_path / "classify.txt"
    pred.write_text(
        "A\t"
        + "\t".join(map(str, scores[0]))
        + "\t\n"  # trailing tab, as some writers leave
        + "B "
        + " ".join(map(str, scores[1]))
        + "\n\n"
        + "C  "
        + "  ".join(map(str, scores[2]))
        + "\n"
    )
    assert set(read_classification_submission(pred)) == {"A", "B", "C"}
    result = evaluate_classification_file(gt, pred)
    assert result.classes == 2 and result.samples == 3

    lines = [_submission_line(vid, rng.normal(size=157), j) for vid in "ABC" for j in range(1, 26)]
    loc = tmp_path / "localize.txt"
    loc.write_text("".join(lines))
    result = evaluate_localization_file(gt, loc)
    assert result.samples == 75 and result.classes == 2


def test_zero_based_localization_frames_are_shifted(tmp_path):
    gt = write_csv(tmp_path / "gt.csv", [("A", format_actions([(3, 1.0, 2.5)]), 4.0)])
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(25, 157))
    one = tmp_path / "one.txt"
    one.write_text("".join(_submission_line("A", scores[j - 1], j) for j in range(1, 26)))
    zero = tmp_path / "zero.txt"
    zero.write_text("".join(_submission_line("A", scores[j], j) for j in range(25)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", r"156 class\(es\) without positives")
        expected = evaluate_localization_file(gt, one)
    with pytest.warns(SubmissionWarning, match="frame numbers start at 0.*adding 1"):
        warnings.filterwarnings("ignore", r"156 class\(es\) without positives")
        got = evaluate_localization_file(gt, zero)
    assert got == expected


@pytest.mark.parametrize(
    "line, cause",
    [
        ("A " + "1 " * 156 + "\n", "A: 156 scores, expected 157"),
        ("A " + "1 " * 158 + "\n", "A: 158 scores, expected 157"),
        ("A " + "1 " * 156 + "abc\n", "score 157 is 'abc', not a number"),
        ("A " + "1_0 " * 157 + "\n", "score 1 is '1_0', not a number"),
        ("../A " + "1 " * 157 + "\n", "invalid video id '../A'"),
    ],
)
def test_malformed_classification_line(tmp_path, line, cause):
    path = tmp_path / "pred.txt"
    path.write_text("B " + "0 " * 157 + "\n" + line)
    with pytest.raises(InputError) as info:
        read_classification_submission(path)
    assert str(info.value).startswith(f"{path}:2: ") and cause in str(info.value)


@pytest.mark.parametrize(
    "line, cause",
    [
        ("A " + "1 " * 157 + "\n", "A: 156 scores, expected 157"),
        ("A 1.5 " + "1 " * 157 + "\n", "frame number '1.5' is not an integer"),
        ("A\n", "frame number '' is not an integer"),
        ("A 2 " + "1 " * 156 + "x\n", "score 157 is 'x', not a number"),
    ],
)
def test_malformed_localization_line(tmp_path, line, cause):
    path = tmp_path / "pred.txt"
    path.write_text("B 1 " + "0 " * 157 + "\n" + line)
    with pytest.raises(InputError) as info:
        read_localization_submission(path)
    assert str(info.value).startswith(f"{path}:2: ") and cause in str(info.value)


def test_repeated_submission_lines_keep_the_last(tmp_path):
    path = tmp_path / "pred.txt"
    path.write_text("A " + "0 " * 157 + "\nA " + "1 " * 157 + "\n")
    with pytest.warns(SubmissionWarning, match="ids repeated"):
        predictions = read_classification_submission(path)
    assert predictions["A"].tolist() == [1.0] * 157


def test_average_precision_scalar_cases():
    assert average_precision([0.1, 0.2], [False, False]) is None
    assert average_precision([np.nan, 0.0], [True, False]) == 0.5
    assert average_precision([-np.inf, np.nan], [False, True]) == 0.5
    with pytest.raises(ValueError):
        average_precision([0.1], [True, False])


def test_classes_without_positives_are_named(tmp_path):
    from i3d.charades.annotations import read_csv
    from i3d.charades.metrics import evaluate_classification

    gt = read_csv(write_csv(tmp_path / "gt.csv", [("A", format_actions([(0, 0.0, 1.0)]), 2.0),
                                                  ("B", format_actions([(1, 0.0, 1.0)]), 2.0)]))  # fmt: skip
    predictions = {"A": np.array([1.0, 0.0, 0.5]), "B": np.array([0.0, 1.0, 0.5])}
    named = r"^1 class\(es\) without positives in the ground truth \(c002\); left out"
    with pytest.warns(SubmissionWarning, match=named):
        result = evaluate_classification(gt, predictions, num_classes=3)
    assert result.classes == 2 and result.excluded == (2,)
