"""The feature sets papers use: multi-crop, a row per frame, evenly spaced
windows, both streams in one file; each checked against the model run on
explicitly cut input from real frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from i3d import extract as E
from i3d.model import InceptionI3d
from i3d.video import FlowEngine, Preprocess, VideoReader, open_input
from i3d.video.transforms import crop_views
from i3d.video.windows import centred_windows, gather_windows, spaced_starts
from tests.conftest import random_weights_file

# Real frames, kept small: 1 frame a second of an 18 s clip, short side 40
# (40x53 frames), 32-pixel crops.
FPS, SHORT, CROP = 1.0, 40, 32
SIZE = dict(fps=FPS, short_side=SHORT, crop=CROP)
# 40x53 frames, 32 crops: margins 8 (rows) and 21 (columns).
# torchvision's five_crop: corners flush, centre at round(8 / 2), round(21 / 2) = 4, 10 (ties to even).
FIVE = [(0, 0), (0, 21), (8, 0), (8, 21), (4, 10)]
# mmaction2's ThreeCrop along the long side: step (53 - 32) // 2 = 10, centred on the short side.
THREE = [(4, 0), (4, 10), (4, 20)]


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return random_weights_file(tmp_path_factory.mktemp("w") / "rgb.safetensors", seed=21)


@pytest.fixture(scope="module")
def flow_weights(tmp_path_factory) -> Path:
    return random_weights_file(tmp_path_factory.mktemp("w") / "flow.safetensors", seed=22, in_channels=2)


@pytest.fixture(scope="module")
def model(weights) -> InceptionI3d:
    from i3d.weights import inception_i3d

    return inception_i3d(weights=weights)


@pytest.fixture(scope="module")
def video(upstream) -> Path:
    return upstream / "video-features" / "v_GGSY1Qvo990.mp4"


@pytest.fixture(scope="module")
def frames(video) -> np.ndarray:
    """``(T, 40, 53, 3)`` uint8: the decoded, resized, uncropped frames."""
    reader = VideoReader(video, FPS, short_side=SHORT)
    return np.concatenate([c.frames for c in reader.chunks(64)])


def network_input(frames: np.ndarray) -> torch.Tensor:
    """``(T, S, S, 3)`` uint8 -> ``(1, 3, T, S, S)`` in ``[-1, 1]``."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float() * (2 / 255) - 1


def features(model, frames: np.ndarray) -> np.ndarray:
    """Pooled features ``(T', 1024)`` of one whole clip in one pass."""
    with torch.no_grad():
        return model.extract_features(network_input(frames)).mean(dim=(3, 4))[0].T.numpy()


def clip_vector(model, frames: np.ndarray) -> np.ndarray:
    """A clip's pooled features averaged over time and space ``(1024,)``."""
    with torch.no_grad():
        return model.extract_features(network_input(frames)).mean(dim=(2, 3, 4))[0].numpy()


def close(got: np.ndarray, expected: np.ndarray) -> None:
    # Chunked runs reorder fp32 sums: ~1e-6 relative; random weights give features in the hundreds.
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5 * max(1.0, float(np.abs(expected).max()))


def test_crop_positions_follow_torchvision_and_mmaction2():
    assert [(v.top, v.left) for v in crop_views(40, 53, 32, 5)] == FIVE
    assert [(v.top, v.left) for v in crop_views(40, 53, 32, 3)] == THREE
    assert [v.name for v in crop_views(40, 53, 32, 3)] == ["left", "center", "right"]
    assert [(v.top, v.left, v.name) for v in crop_views(53, 40, 32, 3)] == [
        (0, 4, "top"),
        (10, 4, "center"),
        (20, 4, "bottom"),
    ]
    ten = crop_views(40, 53, 32, 10)
    assert [v.flip for v in ten] == [False] * 5 + [True] * 5
    # The mirrored frame's top-left is the frame's top-right; its centre
    # (column 10 there) is columns 11..42 here.
    assert [(v.top, v.left) for v in ten[5:]] == [(0, 21), (0, 0), (8, 21), (8, 0), (4, 11)]
    assert [(v.top, v.left) for v in crop_views(40, 53, 32, 1)] == [(4, 10)]  # today's centre crop
    with pytest.raises(ValueError, match="crops must be one of"):
        crop_views(40, 53, 32, 4)


@pytest.mark.slow
@pytest.mark.parametrize("crops", [3, 5, 10])
def test_each_crop_equals_the_model_on_that_crop(weights, model, video, frames, crops):
    got = E.Extractor(weights=weights, crops=crops, chunk_frames=25, device="cpu", **SIZE).extract(video)["rgb"]
    mirrored = frames[:, :, ::-1]
    positions = THREE if crops == 3 else FIVE
    cuts = [frames[:, t : t + CROP, left : left + CROP] for t, left in positions]
    if crops == 10:
        cuts += [mirrored[:, t : t + CROP, left : left + CROP] for t, left in FIVE]
    assert got.data.shape == (len(features(model, cuts[0])), crops, 1024)
    for k, cut in enumerate(cuts):
        close(got.data[:, k], features(model, cut))
    assert [v["name"] for v in got.meta["crop_views"]][:3] == (
        ["left", "center", "right"] if crops == 3 else ["top_left", "top_right", "bottom_left"]
    )
    assert got.meta["crops"] == crops


@pytest.mark.slow
def test_mirrored_flow_has_its_x_component_negated(video):
    # TV-L1 in this process, by OpenCV: the views' geometry does not depend on the engine, and the
    # default one starts a pool of processes that each import torch.
    engine = FlowEngine(workers=1, engine="opencv")
    stream = open_input(video, Preprocess("flow", FPS, SHORT, CROP), crops=10, flow_engine=engine)
    (chunk,) = list(stream.chunks(stream.num_frames))  # (10, 2, T, 32, 32)
    assert chunk.shape == (10, 2, stream.num_frames, CROP, CROP)
    # View 5, the mirrored frame's top-left, is view 1 (top-right) mirrored.
    top_right, mirrored = chunk[1], chunk[5]
    torch.testing.assert_close(mirrored[1], top_right[1].flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(mirrored[0], -top_right[0].flip(-1), rtol=0, atol=0)
    assert top_right[0].abs().max() > 0


@pytest.mark.slow
def test_frames_mode_rows_equal_padded_windows(weights, model, video, frames):
    length = 8
    ex = E.Extractor(weights=weights, mode="frames", clip_len=length, batch=3, chunk_frames=5, device="cpu", **SIZE)
    got = ex.extract(video)["rgb"]
    count = len(frames)
    assert got.data.shape == (count, 1024)
    centre = frames[:, 4 : 4 + CROP, 10 : 10 + CROP]
    # Row i covers frames i - 4 .. i + 3; outside the video, the edge frame again.
    first = np.concatenate([np.repeat(centre[:1], 4, axis=0), centre[:4]])
    middle = centre[count // 2 - 4 : count // 2 + 4]
    last = np.concatenate([centre[count - 5 :], np.repeat(centre[-1:], 3, axis=0)])
    for row, window in ((0, first), (count // 2, middle), (count - 1, last)):
        close(got.data[row], clip_vector(model, window))
    spans = got.meta["row_spans"]
    assert spans[0] == [0.0, 4.0] and spans[count // 2] == [count // 2 - 4, count // 2 + 4]
    # Three crops, four clips per call: a window's crops straddle network calls.
    ex = E.Extractor(
        weights=weights, mode="frames", clip_len=length, crops=3, batch=4, chunk_frames=9, device="cpu", **SIZE
    )
    three = ex.extract(video)["rgb"].data
    assert three.shape == (count, 3, 1024)
    for k, (t, left) in enumerate(THREE):
        cut = frames[:, t : t + CROP, left : left + CROP]
        close(
            three[count - 1, k], clip_vector(model, np.concatenate([cut[count - 5 :], np.repeat(cut[-1:], 3, axis=0)]))
        )
        close(three[count // 2, k], clip_vector(model, cut[count // 2 - 4 : count // 2 + 4]))


def test_spaced_starts():
    # k * (frames - length) / (count - 1), to the nearest frame, as mmaction2's test clips (np.round of float64).
    assert spaced_starts(100, 16, 5).tolist() == [0, 21, 42, 63, 84]
    assert spaced_starts(21, 16, 3).tolist() == [0, 2, 5]  # 2.5 -> 2: halves to even
    assert spaced_starts(23, 16, 3).tolist() == [0, 4, 7]  # 3.5 -> 4
    assert spaced_starts(41, 16, 23)[11] == 13  # 11 * (25 / 22) is 12.500000000000002 in float64, as mmaction2 has it
    assert spaced_starts(21, 16, 1).tolist() == [2]  # one window: centred
    assert spaced_starts(10, 16, 3).tolist() == [0, 0, 0]  # shorter than a window


def test_spaced_starts_are_the_clips_training_validates_on():
    from i3d.train.clips import clip_starts

    for frames in range(16, 80):
        for count in range(2, 12):  # one clip: centred here, training's first (left alone)
            assert spaced_starts(frames, 16, count).tolist() == clip_starts(0, frames, 16, count), (frames, count)


@pytest.mark.slow
def test_num_clips_windows(weights, model, video, frames):
    ex = E.Extractor(
        weights=weights, mode="clips", clip_len=6, num_clips=4, batch=3, chunk_frames=7, device="cpu", **SIZE
    )
    got = ex.extract(video)["rgb"]
    count = len(frames)
    starts = [round(k * (count - 6) / 3 + 1e-9) for k in range(4)]  # count - 6 = 12: 0, 4, 8, 12
    assert starts[0] == 0 and starts[-1] + 6 == count
    centre = frames[:, 4 : 4 + CROP, 10 : 10 + CROP]
    expected = np.stack([clip_vector(model, centre[s : s + 6]) for s in starts])
    close(got.data, expected)
    assert got.meta["row_spans"] == [[s / FPS, (s + 6) / FPS] for s in starts]
    assert got.meta["num_clips"] == 4 and got.meta["stride"] is None


def test_gather_windows_holds_little():
    chunks = [torch.arange(t0, min(t0 + 3, 20)).float().view(1, -1, 1, 1) for t0 in range(0, 20, 3)]
    windows = list(centred_windows(20, 5))
    got = [w.flatten().long().tolist() for w in gather_windows(iter(chunks), iter(windows), 20)]
    assert got == [w.tolist() for w in windows]
    with pytest.raises(ValueError, match="expected 21"):
        list(gather_windows(iter(chunks), centred_windows(21, 5), 21))


@pytest.mark.slow
def test_concat_halves_equal_the_separate_streams(tmp_path, weights, flow_weights, video):
    def run(out: Path, combine: str, crops: int) -> E.Summary:
        ex = E.Extractor(
            ("rgb", "flow"),
            weights=weights,
            flow_weights=flow_weights,
            flow_dir=tmp_path / "flow",  # TV-L1 once
            flow_engine="opencv",  # the halves do not depend on the engine; OpenCV's is the quick one on a CPU
            combine=combine,
            crops=crops,
            chunk_frames=12,
            device="cpu",
            **SIZE,
        )
        return E.extract_all([str(video)], out, ex, progress=False)

    for crops in (1, 3):
        assert run(tmp_path / f"sep{crops}", "separate", crops).ok
        assert run(tmp_path / f"cat{crops}", "concat", crops).ok
        rgb = np.load(tmp_path / f"sep{crops}" / f"{video.name}.rgb.npy")
        flow = np.load(tmp_path / f"sep{crops}" / f"{video.name}.flow.npy")
        both = np.load(tmp_path / f"cat{crops}" / f"{video.name}.rgb+flow.npy")
        assert both.shape == (*rgb.shape[:-1], 2048)
        np.testing.assert_array_equal(both[..., :1024], rgb)
        np.testing.assert_array_equal(both[..., 1024:], flow)
        meta = json.loads((tmp_path / f"cat{crops}" / f"{video.name}.rgb+flow.npy.json").read_text())
        assert meta["halves"] == {"rgb": [0, 1024], "flow": [1024, 2048]}
        assert [p["stream"] for p in meta["parts"]] == ["rgb", "flow"]


@pytest.mark.slow
def test_multi_view_predict_averages_its_views(weights, model, video, frames):
    from i3d.predict import Classifier

    labels = [f"c{i}" for i in range(model.num_classes)]
    make = dict(rgb_weights=weights, labels=labels, device="cpu", progress=False, chunk_frames=9, **SIZE)
    count = len(frames)
    starts = [0, count - 8]  # two windows of 8: the first at frame 0, the last ending at the last frame
    views = []
    for s in starts:
        for t, left in THREE:
            with torch.no_grad():
                cut = frames[s : s + 8, t : t + CROP, left : left + CROP]
                views.append(model(network_input(cut)).mean(dim=2)[0])  # (num_classes,)
    views = torch.stack(views)  # (6, num_classes), clip-major
    scale = float(views.abs().max())
    for average in ("score", "prob"):
        classifier = Classifier(clips=2, clip_len=8, crops=3, average=average, **make)
        got = classifier.predict(video, top=3)
        torch.testing.assert_close(got.logits, views.mean(dim=0), rtol=0, atol=1e-5 * scale)
        probs = views.softmax(dim=1).mean(dim=0) if average == "prob" else views.mean(dim=0).softmax(dim=0)
        ranked = (probs if average == "prob" else views.mean(dim=0)).argsort(descending=True)[:3]
        assert [t.index for t in got.top] == ranked.tolist()
        np.testing.assert_allclose([t.prob for t in got.top], probs[ranked], atol=1e-5)
    # Crops alone: each crop over the whole video, fully convolutionally.
    whole = Classifier(crops=3, **make).view_logits(video)
    for k, (t, left) in enumerate(THREE):
        with torch.no_grad():
            expected = model(network_input(frames[:, t : t + CROP, left : left + CROP])).mean(dim=2)[0]
        torch.testing.assert_close(whole[k], expected, rtol=0, atol=1e-5 * scale)


@pytest.mark.slow
def test_eval_accuracy_averages_clips_and_crops(upstream, tmp_path):
    from i3d.model import InceptionI3d
    from i3d.train.evaluate import evaluate_accuracy
    from i3d.train.export import save_model
    from tests.conftest import randomize

    net = randomize(InceptionI3d(num_classes=2), seed=5)
    weights = save_model(net.state_dict(), tmp_path / "model.safetensors", ["a", "b"])
    root = upstream / "video-features"
    names = ["v_GGSY1Qvo990.mp4", "v_ZNVhz7ctTq0.mp4"]
    csv = tmp_path / "test.csv"
    csv.write_text("video,label\n" + "".join(f"{n},{c}\n" for n, c in zip(names, "ab")))
    small = dict(clip_frames=8, val_clips=2, crops=3, fps=FPS, short_side=SHORT, crop=CROP, device="cpu")
    for average in ("score", "prob"):
        result = evaluate_accuracy(weights, "csv", root, csv, average=average, **small)
        for row, name in zip(result.scores, names):
            reader = VideoReader(root / name, FPS, short_side=SHORT)
            frames = np.concatenate([c.frames for c in reader.chunks(64)])
            views = []
            for s in (0, len(frames) - 8):  # two clips: the first and the last 8 frames
                for t, left in THREE:
                    with torch.no_grad():
                        cut = frames[s : s + 8, t : t + CROP, left : left + CROP]
                        views.append(net(network_input(cut)).mean(dim=2)[0])
            views = torch.stack(views)  # (6, 2)
            expected = views.softmax(dim=1).mean(dim=0) if average == "prob" else views.mean(dim=0)
            np.testing.assert_allclose(row, expected.numpy(), rtol=1e-5, atol=1e-5 * float(views.abs().max()))


def test_cli_refuses_flags_that_do_not_go_together(tmp_path, capsys):
    from i3d.cli import main

    # Refused before any input or weights file is opened.
    base = ["extract", str(tmp_path / "v.npy"), "--out", str(tmp_path / "out"), "--weights", "unused.pt"]
    for extra, cause in (
        (["--combine", "concat"], "--combine concat needs --stream both"),
        (["--mode", "clips", "--step", "4", "--num-clips", "3"], "--num-clips is for --mode clips, instead of --step"),
        (["--num-clips", "3"], "--num-clips is for --mode clips"),
        (["--layout", "port", "--crops", "10"], "--crops 1"),
    ):
        assert main([*base, *extra]) == 2
        assert cause in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--crops", "4"])
    assert "invalid choice: 4" in capsys.readouterr().err


@pytest.mark.slow
def test_npy_arrays_are_not_cropped_into_views(tmp_path, weights, capsys):
    from i3d.cli import main

    np.save(tmp_path / "v.npy", np.zeros((1, 9, 32, 32, 3), np.float32))
    args = ["extract", str(tmp_path / "v.npy"), "--out", str(tmp_path / "out"), "--weights", str(weights)]
    assert main([*args, "--crops", "3", "--device", "cpu", "--quiet"]) == 1
    assert "cannot be cropped into views" in capsys.readouterr().err
