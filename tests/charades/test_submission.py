from __future__ import annotations

import numpy as np
import pytest
import torch

from i3d.charades.submission import (
    localization_scores,
    read_classification_submission,
    read_localization_submission,
    upsample_frames,
    video_scores,
    write_classification,
    write_localization,
)
from i3d.errors import InputError


def test_video_scores_max_and_mean():
    logits = torch.tensor([[0.0, 2.0, 1.0], [-1.0, -3.0, -2.0]])
    assert video_scores(logits, "max").tolist() == [2.0, -1.0]
    assert video_scores(logits.numpy(), "mean").tolist() == [1.0, -2.0]
    with pytest.raises(ValueError, match="reduce"):
        video_scores(logits, "median")
    with pytest.raises(ValueError, match=r"\(C, T'\)"):
        video_scores(torch.zeros(3))


def test_upsample_matches_torch_linear_interpolation():
    x = torch.randn(4, 7, dtype=torch.float64)
    for frames in (1, 7, 20, 57):
        expected = torch.nn.functional.interpolate(x[None], size=frames, mode="linear", align_corners=False)[0]
        np.testing.assert_allclose(upsample_frames(x, frames), expected.numpy(), rtol=1e-12, atol=1e-12)


def test_localization_scores_sample_the_official_times():
    # One output per video frame: upsampling is the identity and frame j is
    # video frame floor((j - 1) * 100 / 25) = 4 (j - 1).
    frames = np.arange(100, dtype=np.float64)[None].repeat(3, axis=0)
    scores = localization_scores(frames, num_frames=100)
    assert scores.shape == (25, 3)
    assert scores[:, 0].tolist() == [4.0 * j for j in range(25)]
    # A single output covers the whole video.
    assert localization_scores(np.array([[5.0], [6.0]]), num_frames=30).tolist() == [[5.0, 6.0]] * 25


def test_writers_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    scores = {"A": rng.normal(size=157), "B": torch.randn(157), "C": np.full(157, -np.inf)}
    path = tmp_path / "classify.txt"
    write_classification(path, scores)
    back = read_classification_submission(path)
    assert list(back) == ["A", "B", "C"]
    np.testing.assert_array_equal(back["A"], scores["A"])
    # float32 scores come back as the same float32 values.
    np.testing.assert_array_equal(back["B"].astype(np.float32), scores["B"].numpy())
    assert np.all(back["C"] == -np.inf)

    frames = {"A": rng.normal(size=(25, 157)), "B": torch.randn(25, 157)}
    path = tmp_path / "localize.txt"
    write_localization(path, frames.items())
    lines = path.read_text().splitlines()
    assert len(lines) == 50 and lines[0].startswith("A 1 ") and lines[49].startswith("B 25 ")
    back = read_localization_submission(path)
    np.testing.assert_array_equal(back[("A", 7)], frames["A"][6])


def test_writers_are_atomic(tmp_path):
    path = tmp_path / "classify.txt"
    path.write_text("old\n")
    with pytest.raises(ValueError, match=r"scores of 'B' have shape \(3,\), expected \(157,\)"):
        write_classification(path, {"A": np.zeros(157), "B": np.zeros(3)})
    with pytest.raises(InputError, match="invalid video id"):
        write_localization(path, {"../A": np.zeros((25, 157))})
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["classify.txt"]
