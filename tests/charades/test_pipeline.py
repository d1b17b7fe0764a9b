"""The synthetic mini-Charades through the datasets, the submission writers and both evaluations."""

from __future__ import annotations

import argparse
import json
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d.charades import cli
from i3d.charades.annotations import Video
from i3d.charades.datasets import CharadesClips, CharadesVideos, source_path
from i3d.charades.metrics import evaluate_classification_file, evaluate_localization_file
from i3d.charades.submission import localization_scores, video_scores, write_classification, write_localization
from i3d.errors import InputError
from i3d.video import flow
from i3d.video.presets import Preprocess
from tests.charades.helpers import ENCODED_CLASSES, FPS

# Small frames keep the test fast; the crop covers the centre of every
# (jittered) resize, so each quadrant keeps a corner of the crop.
SMALL_RGB = Preprocess("rgb", fps=FPS, resize_short_side=32, crop=28)
SMALL_FLOW = Preprocess("flow", fps=FPS, resize_short_side=32, crop=28)
# I3D's per-frame outputs come at 1/8 of the input rate.
OUTPUT_STRIDE = 8
# A horizontal flip swaps the left and right quadrants: classes 0 <-> 1, 2 <-> 3.
FLIPPED = [1, 0, 3, 2]


def quadrant_scores(chunk: torch.Tensor) -> torch.Tensor:
    """The stand-in "model": mean of each quadrant's channel 0, ``(C, t, H, W)`` -> ``(157, t)``.

    Classes that no quadrant encodes score -1 (never positive).
    """
    x = chunk[0]
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    # Stay clear of the blurred centre lines.
    m = 2
    quadrants = [
        x[:, m : h - m, m : w - m],
        x[:, m : h - m, w + m : -m],
        x[:, h + m : -m, m : w - m],
        x[:, h + m : -m, w + m : -m],
    ]
    scores = torch.full((157, x.shape[0]), -1.0)
    scores[:ENCODED_CLASSES] = torch.stack([q.mean(dim=(1, 2)) for q in quadrants])
    return scores


def corner_signs(clip: torch.Tensor) -> torch.Tensor:
    """Whether each crop corner is bright, ``(4, T)``: robust to the random crop."""
    x = clip[0]
    return torch.stack([x[:, 0, 0], x[:, 0, -1], x[:, -1, 0], x[:, -1, -1]]) > 0


def run_model(item) -> torch.Tensor:
    """Per-frame outputs at 1/8 of the frame rate, ``(157, ceil(T / 8))``, as I3D gives them."""
    scores = torch.cat([quadrant_scores(chunk) for chunk in item.net_input.chunks(40)], dim=1)
    assert scores.shape[1] == item.net_input.num_frames
    return torch.nn.functional.avg_pool1d(scores[None], OUTPUT_STRIDE, ceil_mode=True)[0]


def test_evaluation_dataset_submissions_and_both_evaluations(mini_charades, tmp_path, capsys):
    dataset = CharadesVideos(mini_charades.rgb, mini_charades.videos, SMALL_RGB)
    classify, localize = {}, {}
    for item in dataset:
        assert item.net_input.num_frames == mini_charades.frames[item.video.id]
        assert item.labels.shape == (157, item.net_input.num_frames)
        outputs = run_model(item)
        classify[item.video.id] = video_scores(outputs, "max")
        localize[item.video.id] = localization_scores(outputs, item.net_input.num_frames)
    assert list(classify) == ["VID01", "VID02", "VID03", "VID04"]
    write_classification(tmp_path / "classify.txt", classify)
    write_localization(tmp_path / "localize.txt", localize)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", rf"{157 - ENCODED_CLASSES} class\(es\) without positives")
        result = evaluate_classification_file(mini_charades.csv, tmp_path / "classify.txt")
        assert result.classes == ENCODED_CLASSES and result.map == 1.0 and result.wap == 1.0
        result = evaluate_localization_file(mini_charades.csv, tmp_path / "localize.txt")
    assert result.classes == ENCODED_CLASSES and result.samples == 4 * 25
    # Averaging 8 frames blurs the boundaries: close to, not quite, perfect.
    assert 0.9 < result.map < 1.0

    parser = argparse.ArgumentParser()
    cli.add_localize_arguments(parser)
    args = parser.parse_args(["--gt", str(mini_charades.csv), "--pred", str(tmp_path / "localize.txt"), "--json"])
    assert cli.run_localize(args) == 0
    assert json.loads(capsys.readouterr().out)["map"] == result.map


def test_localization_is_perfect_at_full_rate(mini_charades, tmp_path):
    # One output per frame: the 25 sampled frames are exactly the official
    # time points, so the stand-in model localizes perfectly.
    localize = {}
    for item in CharadesVideos(mini_charades.rgb, mini_charades.videos, SMALL_RGB):
        scores = torch.cat([quadrant_scores(chunk) for chunk in item.net_input.chunks(64)], dim=1)
        localize[item.video.id] = localization_scores(scores, item.net_input.num_frames)
    write_localization(tmp_path / "localize.txt", localize)
    result = evaluate_localization_file(mini_charades.csv, tmp_path / "localize.txt")
    assert result.map == 1.0 and result.classes == ENCODED_CLASSES


def test_flow_frames_read_with_their_labels(mini_charades):
    for item in CharadesVideos(mini_charades.flow, mini_charades.videos[:2], SMALL_FLOW):
        chunk = next(item.net_input.chunks(item.net_input.num_frames))
        assert chunk.shape == (2, item.net_input.num_frames, 28, 28)
        # x flow is positive exactly where a class is active; y flow is zero.
        active = quadrant_scores(chunk)[:ENCODED_CLASSES] > 0
        assert torch.equal(active, item.labels[:ENCODED_CLASSES] > 0)
        assert chunk[1].abs().max() < 0.05


def test_training_clips_are_aligned_with_their_labels(mini_charades):
    generator = torch.Generator().manual_seed(0)
    dataset = CharadesClips(mini_charades.rgb, mini_charades.videos, SMALL_RGB, generator=generator)
    assert len(dataset) == 4
    for _ in range(3):
        for index in range(len(dataset)):
            clip, labels = dataset[index]
            assert clip.shape == (3, 64, 28, 28) and clip.dtype == torch.float32
            assert labels.shape == (157, 64) and labels.dtype == torch.float32
            assert not labels[ENCODED_CLASSES:].any()
            seen = corner_signs(clip)
            truth = labels[:ENCODED_CLASSES] > 0
            assert torch.equal(seen, truth) or torch.equal(seen, truth[FLIPPED])


def test_training_clip_of_a_short_video_loops(mini_charades):
    short = [v for v in mini_charades.videos if mini_charades.frames[v.id] < 64]
    assert [v.id for v in short] == ["VID03"]
    clip, labels = CharadesClips(mini_charades.rgb, short, SMALL_RGB, generator=torch.Generator().manual_seed(0))[0]
    assert clip.shape == (3, 64, 28, 28) and not labels.any()
    # Frames 50.. repeat frames 0..
    assert torch.equal(clip[:, 50:], clip[:, :14])


def test_training_clip_start_is_uniform(mini_charades):
    # VID01 has 75 frames: 12 possible starts, 0..11.
    video = [v for v in mini_charades.videos if v.id == "VID01"]
    dataset = CharadesClips(
        mini_charades.rgb, video, SMALL_RGB, clip_frames=64, generator=torch.Generator().manual_seed(1)
    )
    seen = set()
    for _ in range(40):
        clip, labels = dataset[0]
        # Class 1 of VID01 starts at 1.05 s, frame 26: where it starts in the clip gives the start.
        first = int(np.flatnonzero(labels[1].numpy())[0])
        seen.add(26 - first)
    assert seen <= set(range(12)) and len(seen) >= 9


def test_source_paths_stay_inside_root(tmp_path):
    assert source_path(tmp_path, "46GP8") == tmp_path / "46GP8"
    assert source_path(tmp_path, "46GP8", ".mp4") == tmp_path / "46GP8.mp4"
    with pytest.raises(InputError, match="invalid video id"):
        source_path(tmp_path, "../46GP8")


def write_video(mini_charades, video: Video, folder: Path) -> Path:
    """``folder/ID.mp4`` from the video's RGB frames."""
    import av
    import cv2

    path = folder / f"{video.id}.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width = stream.height = 48
        stream.pix_fmt = "yuv420p"
        stream.options = {"qscale": "2"}
        for f in range(mini_charades.frames[video.id]):
            rgb = cv2.cvtColor(
                cv2.imread(str(mini_charades.rgb / video.id / f"{video.id}-{f + 1:06d}.jpg")), cv2.COLOR_BGR2RGB
            )
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_video_files(mini_charades, tmp_path):
    video = mini_charades.videos[0]
    write_video(mini_charades, video, tmp_path)
    (item,) = CharadesVideos(tmp_path, [video], SMALL_RGB, video_ext=".mp4")
    assert item.net_input.num_frames == mini_charades.frames[video.id]
    chunk = next(item.net_input.chunks(item.net_input.num_frames))
    assert torch.equal(quadrant_scores(chunk)[:ENCODED_CLASSES] > 0, item.labels[:ENCODED_CLASSES] > 0)


@pytest.mark.slow
def test_training_flow_from_video_files_starts_no_process_pool(mini_charades, tmp_path, monkeypatch):
    video = mini_charades.videos[2]  # 50 frames
    write_video(mini_charades, video, tmp_path)

    def no_pool(*args, **kwargs):
        raise AssertionError("a TV-L1 process pool was started for one clip")

    monkeypatch.setattr(flow, "default_workers", lambda: 4)
    monkeypatch.setattr(flow, "ProcessPoolExecutor", no_pool)
    dataset = CharadesClips(
        tmp_path, [video], SMALL_FLOW, clip_frames=8, video_ext=".mp4", generator=torch.Generator().manual_seed(0)
    )
    clip, labels = dataset[0]
    assert clip.shape == (2, 8, 28, 28) and labels.shape == (157, 8)
    # Loader workers started with "spawn" get the dataset pickled, after it has been used here.
    copy = pickle.loads(pickle.dumps(dataset))
    copy.generator = torch.Generator().manual_seed(0)
    torch.testing.assert_close(copy[0][0], clip, rtol=0, atol=0)
