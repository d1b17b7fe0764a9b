"""TV-L1 flow, flow files, the flow cache and flow through open_input."""

from __future__ import annotations

import json
import os
import pickle
from concurrent.futures import Future
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from i3d.atomic import atomic_dir
from i3d.video import FlowEngine, load_input, open_input, tvl1_flow, write_flow_frames
from i3d.video import flow as flow_module
from i3d.video.flow import TASKS_IN_FLIGHT_PER_WORKER, FlowWorkerError, FlowWriter, flow_to_jpeg_values
from i3d.video.inputs import compute_flow, flow_cache_key
from i3d.video.presets import Preprocess
from i3d.video.readers import FlowArrayReader, FrameFolderReader
from i3d.video.transforms import crop, horizontal_flip, normalize, resize_flow_field
from tests.video.helpers import encode, write_flow_folder

# TV-L1 costs ~0.5 s a pair at 256 px; small frames keep the tests fast.
SMALL_FLOW = Preprocess("flow", fps=25.0, resize_short_side=48, crop=40)
MARGIN = 16
HEIGHT, WIDTH = 96, 128


def texture(seed: int = 0, pad: int = 20) -> np.ndarray:
    """Smooth random texture, float32 0..255, ``pad`` pixels larger on each side."""
    noise = np.random.default_rng(seed).random((HEIGHT + 2 * pad, WIDTH + 2 * pad)).astype(np.float32)
    return cv2.normalize(cv2.GaussianBlur(noise, (0, 0), 2.5), None, 0, 255, cv2.NORM_MINMAX)


def shifted_pair(dx: float, dy: float, pad: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Two uint8 frames; the content of the second is the first's moved by (dx, dy) pixels."""
    base = texture(pad=pad)
    moved = cv2.warpAffine(base, np.float32([[1, 0, dx], [0, 1, dy]]), base.shape[::-1], flags=cv2.INTER_CUBIC)
    crop = np.s_[pad : pad + HEIGHT, pad : pad + WIDTH]
    return base[crop].round().astype(np.uint8), np.clip(moved[crop].round(), 0, 255).astype(np.uint8)


def moving_frames(count: int, step: tuple[float, float] = (1.0, 0.5)) -> list[np.ndarray]:
    """RGB frames of the texture translating by ``step`` pixels a frame."""
    base = texture(pad=40)
    frames = []
    for i in range(count):
        matrix = np.float32([[1, 0, step[0] * i], [0, 1, step[1] * i]])
        grey = cv2.warpAffine(base, matrix, base.shape[::-1], flags=cv2.INTER_CUBIC)[40 : 40 + HEIGHT, 40 : 40 + WIDTH]
        frames.append(np.repeat(np.clip(grey.round(), 0, 255).astype(np.uint8)[..., None], 3, axis=-1))
    return frames


@pytest.mark.parametrize(("dx", "dy"), [(1.5, -0.75), (3.0, 2.0), (-2.25, 0.5)])
def test_tvl1_recovers_a_translation_within_half_a_pixel(dx, dy):
    field = tvl1_flow(*shifted_pair(dx, dy))
    assert field.shape == (HEIGHT, WIDTH, 2) and field.dtype == np.float32
    interior = field[MARGIN:-MARGIN, MARGIN:-MARGIN]
    assert np.abs(interior - np.float32([dx, dy])).max() < 0.5


def test_t_frames_give_t_fields_the_last_repeated():
    prev, moved = shifted_pair(2.0, 0.0)
    frames = [prev, moved, moved, prev]
    with FlowEngine(workers=1) as engine:
        fields = list(engine.fields(frames))
    assert len(fields) == 4
    assert np.all(fields[1] == 0)  # identical frames: zero flow, TV-L1 skipped
    np.testing.assert_array_equal(fields[3], fields[2])
    assert abs(float(np.median(fields[0][..., 0])) - 2.0) < 0.1
    assert abs(float(np.median(fields[2][..., 0])) + 2.0) < 0.1
    with pytest.raises(ValueError, match="at least 2 frames"):
        list(FlowEngine(workers=1).fields([prev]))


@pytest.mark.slow
def test_worker_processes_give_the_same_fields():
    frames = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in moving_frames(5)]
    with FlowEngine(workers=1, engine="opencv") as inline, FlowEngine(workers=2, engine="opencv") as pool:
        expected = list(inline.fields(frames))
        got = list(pool.fields(frames))
    assert len(got) == 5
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_flow_jpegs_round_trip_within_one_grey_level(tmp_path):
    prev, moved = shifted_pair(1.5, -0.75)
    rotated = cv2.warpAffine(moved, cv2.getRotationMatrix2D((WIDTH / 2, HEIGHT / 2), 4, 1.0), (WIDTH, HEIGHT))
    fields = [tvl1_flow(prev, moved), tvl1_flow(prev, rotated) * 8]  # * 8: use the whole +-20 range
    folder = write_flow_frames(fields, tmp_path, "rt", format="jpg")
    names = ["rt-000001x.jpg", "rt-000001y.jpg", "rt-000002x.jpg", "rt-000002y.jpg"]
    assert sorted(p.name for p in folder.iterdir()) == names
    back = np.concatenate([c.frames for c in FrameFolderReader(folder).chunks(8)])
    for original, read in zip(fields, back):
        levels = flow_to_jpeg_values(original).astype(int)
        assert np.abs(flow_to_jpeg_values(read).astype(int) - levels).max() <= 1


def test_npy_flow_round_trip_and_atomic_writes(tmp_path):
    fields = [np.random.default_rng(i).normal(0, 4, (12, 16, 2)).astype(np.float32) for i in range(3)]
    path = write_flow_frames(fields, tmp_path, "n", format="npy", num_frames=3)
    assert path == tmp_path / "n.npy"
    stored = np.concatenate([c.frames for c in FlowArrayReader(path).chunks(2)])
    np.testing.assert_allclose(stored, np.stack(fields), atol=4e-3)

    def failing():
        yield fields[0]
        raise RuntimeError("decoder died")

    for format in ("npy", "jpg"):
        with pytest.raises(RuntimeError):
            write_flow_frames(failing(), tmp_path, "n", format=format, num_frames=3)
    # The earlier output is intact and no temporary file is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.npy"]
    np.testing.assert_array_equal(np.load(path), np.stack(fields).astype(np.float16))
    with pytest.raises(ValueError, match="expected 3 flow fields, got 2"):
        write_flow_frames(fields[:2], tmp_path, "n", format="npy", num_frames=3)
    with FlowWriter(tmp_path, "m", format="jpg") as writer:
        writer.add(fields[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.npy"]  # left without commit


def test_open_input_computes_flow_and_caches_it(tmp_path):
    video = encode(tmp_path / "move.mp4", moving_frames(6), rate=25, pix_fmt="yuv444p", options={"qp": "0"})
    cache = tmp_path / "cache"
    with FlowEngine(workers=1) as engine:
        stream = open_input(video, SMALL_FLOW, flow_dir=cache, flow_engine=engine)
        assert (stream.num_frames, stream.fps) == (6, 25.0)
        fresh = torch.cat(list(stream.chunks(4)), dim=1)
    assert fresh.shape == (2, 6, 40, 40) and fresh.abs().max() <= 1
    # Frames move right and down: positive x and y, scaled by 48/96 with the resize, then /20.
    assert torch.allclose(fresh[0, :5].median(), torch.tensor(0.5 / 20), atol=0.01)
    assert torch.allclose(fresh[1, :5].median(), torch.tensor(0.25 / 20), atol=0.01)
    entry = cache / f"{flow_cache_key(video)}.npy"  # keyed by the absolute path, with its source record
    assert sorted(cache.iterdir()) == [entry, entry.with_name(entry.name + ".json")]
    cached = load_input(video, SMALL_FLOW, flow_dir=cache)
    torch.testing.assert_close(cached, fresh)


def test_flow_written_by_compute_flow_serves_as_the_cache(tmp_path):
    video = encode(tmp_path / "move.mp4", moving_frames(5), rate=25, pix_fmt="yuv444p", options={"qp": "0"})
    with FlowEngine(workers=1) as engine:
        out = compute_flow(video, tmp_path / "flow", fps=25.0, short_side=48, format="jpg", engine=engine)
        fresh = load_input(video, SMALL_FLOW, flow_engine=engine)
    assert out == tmp_path / "flow" / "move" and len(list(out.iterdir())) == 10
    from_jpegs = load_input(video, SMALL_FLOW, flow_dir=tmp_path / "flow")
    # JPEG levels are 40/255 px apart, one level of JPEG error: 2 levels = 0.016 after /20.
    assert (from_jpegs - fresh).abs().max() < 0.02


def test_the_cache_records_its_engine_and_the_other_engine_recomputes(tmp_path, monkeypatch):
    video = encode(tmp_path / "move.mp4", moving_frames(4), rate=25, pix_fmt="yuv444p", options={"qp": "0"})
    cache = tmp_path / "cache"
    record = cache / f"{flow_cache_key(video)}.npy.json"
    opencv, torch_engine = FlowEngine(workers=1, engine="opencv"), FlowEngine(workers=1, engine="torch")
    load_input(video, SMALL_FLOW, flow_dir=cache, flow_engine=opencv)
    assert json.loads(record.read_text())["engine"] == "opencv"
    computed = []
    real = FlowEngine.fields
    monkeypatch.setattr(FlowEngine, "fields", lambda self, frames: computed.append(self.engine) or real(self, frames))
    load_input(video, SMALL_FLOW, flow_dir=cache, flow_engine="opencv")  # by name, as the CLI passes it
    assert computed == []  # its own engine's entry is reused
    load_input(video, SMALL_FLOW, flow_dir=cache, flow_engine=torch_engine)
    assert computed == ["torch"]  # the other engine's is not: recomputed and replaced
    assert json.loads(record.read_text())["engine"] == "torch"
    out = compute_flow(video, tmp_path / "flow", fps=25.0, short_side=48, format="npy", engine=opencv)
    assert json.loads(out.with_name(out.name + ".json").read_text())["engine"] == "opencv"


@pytest.mark.slow
def test_torch_batches_give_the_fields_of_single_pairs():
    frames = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[:32, :48] for f in moving_frames(5)]
    frames.insert(2, frames[2])  # a repeated frame: zero field in the middle of a batch
    with (
        FlowEngine(workers=1, engine="torch", batch_size=1) as single,
        FlowEngine(workers=1, engine="torch", batch_size=4) as batched,
    ):
        expected, got = list(single.fields(frames)), list(batched.fields(frames))
    assert len(got) == len(frames) and np.all(got[2] == 0)
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_an_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="flow engine must be one of torch, opencv"):
        FlowEngine(engine="raft")


def test_training_flip_negates_flow_x(tmp_path):
    folder = write_flow_folder(tmp_path, "F", [np.full((48, 64, 2), (4.0, 2.0), np.float32)] * 3)
    signs = set()
    for seed in range(8):
        clip = load_input(folder, SMALL_FLOW, train=True, generator=torch.Generator().manual_seed(seed))
        x, y = clip[0], clip[1]
        assert torch.all(y > 0) and torch.allclose(x.abs(), 2 * y, atol=0.01)
        signs.add(float(x.sign().mean()))
    assert signs == {-1.0, 1.0}


@pytest.mark.parametrize("name", ["opencv", "torch"])
def test_a_tvl1_failure_is_a_one_line_error_and_the_engine_goes_on(name):
    small, large = np.zeros((16, 16), np.uint8), np.full((32, 32), 9, np.uint8)
    with FlowEngine(workers=1, engine=name) as engine:
        with pytest.raises(FlowWorkerError, match=r"^TV-L1 failed: .*size") as info:
            list(engine.fields([small, large]))
        assert "\n" not in str(info.value)
        assert len(list(engine.fields([large, large]))) == 2


def kill_workers(engine: FlowEngine) -> None:
    for process in list(engine._pool._processes.values()):
        process.kill()
        process.join()


@pytest.mark.slow
def test_a_dead_worker_is_an_error_and_the_next_video_gets_a_fresh_pool():
    frames = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)[:48, :64] for f in moving_frames(4)]
    with FlowEngine(workers=2, engine="opencv") as engine:
        assert len(list(engine.fields(frames))) == 4
        kill_workers(engine)
        with pytest.raises(FlowWorkerError, match="TV-L1 worker process died"):
            list(engine.fields(frames))
        assert len(list(engine.fields(frames))) == 4


def test_a_consumer_that_stops_early_cancels_the_queued_pairs():
    engine = FlowEngine(workers=2, engine="opencv")
    submitted: list[Future] = []

    def submit(pairs):
        future = Future()
        if not submitted:  # the first pair is done, the rest wait in the queue
            future.set_result([np.zeros((*pairs[0][0].shape, 2), np.float32)])
        submitted.append(future)
        return future

    engine._submit = submit
    frames = [np.full((8, 8), i, np.uint8) for i in range(10)]
    fields = engine.fields(frames)
    next(fields)
    fields.close()
    assert len(submitted) == engine.workers * TASKS_IN_FLIGHT_PER_WORKER
    assert all(future.cancelled() for future in submitted[1:])


def test_an_engine_pickles_as_its_settings():
    engine = FlowEngine(workers=1)
    list(engine.fields([np.zeros((8, 8), np.uint8)] * 2))  # holds an OpenCV algorithm now
    copy = pickle.loads(pickle.dumps(engine))
    assert copy.workers == 1
    assert len(list(copy.fields([np.zeros((8, 8), np.uint8)] * 3))) == 3


@pytest.mark.slow
def test_a_clip_from_a_start_frame_computes_only_its_own_fields(tmp_path, monkeypatch):
    video = encode(tmp_path / "move.mp4", moving_frames(20), rate=25)
    calls = []
    real = flow_module.tvl1_flow
    monkeypatch.setattr(flow_module, "tvl1_flow", lambda *a: calls.append(1) or real(*a))
    with FlowEngine(workers=1, engine="opencv") as engine:
        stream = open_input(video, SMALL_FLOW, flow_engine=engine)
        # Frames 14..19 need 5 pairs (the last field repeats); frame 19 alone, the pair 18-19.
        for start, size, needed in ((0, 8, 8), (5, 8, 8), (14, 8, 5), (19, 8, 1)):
            calls.clear()
            clip = next(stream.chunks(size, start))
            assert clip.shape[1] == min(size, 20 - start)
            assert len(calls) == needed, (start, size)


def test_the_cache_is_complete_when_the_last_chunk_arrives(tmp_path):
    video = encode(tmp_path / "move.mp4", moving_frames(6), rate=25)
    cache = tmp_path / "cache"
    with FlowEngine(workers=1) as engine:
        chunks = open_input(video, SMALL_FLOW, flow_dir=cache, flow_engine=engine).chunks(4)
        entry = f"{flow_cache_key(video)}.npy"
        next(chunks)
        assert not (cache / entry).exists()
        last = next(chunks)  # the consumer may stop here, before the generator finishes
        assert last.shape[1] == 2
        assert sorted(p.name for p in cache.iterdir()) == [entry, entry + ".json"]
        chunks.close()
    assert sorted(p.name for p in cache.iterdir()) == [entry, entry + ".json"]


def test_flow_frames_under_scale_jitter_are_resized_once(tmp_path):
    # Stored at twice the preset's size: the fields must go straight to the jittered size.
    fields = [np.random.default_rng(i).normal(0, 3, (96, 128, 2)).astype(np.float32) for i in range(2)]
    folder = write_flow_folder(tmp_path, "FJ", fields)
    stored = np.concatenate([c.frames for c in FrameFolderReader(folder).chunks(8)])
    for seed in range(20):
        stream = open_input(folder, SMALL_FLOW, train=True, generator=torch.Generator().manual_seed(seed))
        if stream.frame_size != (48, 64):
            break
    clip = torch.cat(list(stream.chunks(8)), dim=1)
    once = np.stack([resize_flow_field(f, stream.frame_size) for f in stored])
    video = torch.from_numpy(once).permute(3, 0, 1, 2)
    height, width = stream.frame_size
    matches = [
        (top, left, flip)
        for top in range(height - SMALL_FLOW.crop + 1)
        for left in range(width - SMALL_FLOW.crop + 1)
        for flip in (False, True)
        if torch.allclose(_expected(video, top, left, flip), clip, atol=1e-6)
    ]
    assert len(matches) == 1


def _expected(video: torch.Tensor, top: int, left: int, flip: bool) -> torch.Tensor:
    out = normalize(crop(video, top, left, SMALL_FLOW.crop), SMALL_FLOW)
    return horizontal_flip(out, flow=True) if flip else out


def test_flow_writer_replaces_a_folder_whole_or_not_at_all(tmp_path):
    fields = [np.full((8, 8, 2), i, np.float32) for i in range(3)]
    write_flow_frames(fields, tmp_path, "j", format="jpg")
    out = write_flow_frames(fields[:2], tmp_path, "j", format="jpg")
    assert sorted(p.name for p in out.iterdir()) == ["j-000001x.jpg", "j-000001y.jpg", "j-000002x.jpg", "j-000002y.jpg"]

    def failing():
        yield from fields
        raise RuntimeError("decoder died")

    with pytest.raises(RuntimeError):
        write_flow_frames(failing(), tmp_path, "j", format="jpg")
    assert len(list(out.iterdir())) == 4  # the earlier output, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["j"]  # no temporary folder left


def test_atomic_dir_puts_the_old_folder_back_when_the_new_one_cannot_move_in(tmp_path, monkeypatch):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    real = os.replace

    def replace(src, dst):
        if Path(src).name.endswith(".tmpdir"):
            raise OSError("disk on fire")
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError, match="disk on fire"), atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]
