"""``i3d flow``: a batch over good and bad inputs."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from i3d.video import inputs
from i3d.video.cli import add_flow_arguments, run_flow
from i3d.video.inputs import compute_flow
from tests.video.helpers import encode, indexed_frames, write_rgb_folder


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="i3d flow")
    add_flow_arguments(parser)
    return parser.parse_args(argv)


def test_every_flag_has_help():
    parser = argparse.ArgumentParser()
    add_flow_arguments(parser)
    assert all(action.help for action in parser._actions)


@pytest.mark.slow
def test_batch_processes_every_good_input_and_reports_the_bad_ones(tmp_path, capsys):
    good = [
        encode(tmp_path / "one.mp4", indexed_frames(4), rate=25),
        encode(tmp_path / "two.avi", indexed_frames(6), rate=30, codec="mpeg4"),
        write_rgb_folder(tmp_path, "THREE", indexed_frames(3)),
    ]
    (tmp_path / "empty.mp4").touch()
    (tmp_path / "text.mkv").write_text("not a video\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    same_stem = encode(sub / "one.mp4", indexed_frames(3), rate=25)  # named sub/one: no clash with one
    bad = [tmp_path / "missing.mp4", tmp_path / "empty.mp4", tmp_path / "text.mkv"]
    inputs = [good[0], bad[0], good[1], bad[1], bad[2], same_stem, good[2]]
    out = tmp_path / "flow"
    args = parse([*map(str, inputs), "--out", str(out), "--short-side", "48", "--workers", "1"])
    assert run_flow(args) == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == len(bad)
    for line, path in zip(errors, bad):
        assert line.startswith(f"i3d: error: {path}: ")
    # Nothing half-written; each output with the record of its source.
    assert sorted(p.name for p in out.iterdir()) == ["THREE", "THREE.json", "one", "one.json", "sub", "two", "two.json"]
    assert len(list((out / "one").iterdir())) == 2 * 4
    assert len(list((out / "sub" / "one").iterdir())) == 2 * 3
    assert len(list((out / "two").iterdir())) == 2 * 5  # 6 frames at 30 fps are 5 at 25
    assert captured.out.split() == [str(out / "one"), str(out / "two"), str(out / "sub" / "one"), str(out / "THREE")]


def test_npy_output(tmp_path, capsys):
    video = encode(tmp_path / "clip.mp4", indexed_frames(5), rate=25)
    argv = [str(video), "--out", str(tmp_path), "--format", "npy", "--short-side", "48", "--workers", "1"]
    assert run_flow(parse(argv)) == 0
    flow = np.load(tmp_path / "clip.npy")
    assert flow.shape == (5, 48, 64, 2) and flow.dtype == np.float16
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_a_dead_tvl1_worker_fails_its_video_only(tmp_path, capsys, monkeypatch):
    videos = [encode(tmp_path / f"{name}.mp4", indexed_frames(4), rate=25) for name in ("one", "two", "three")]

    def compute_flow_with_a_dying_pool(video, out_dir, **kwargs):
        engine = kwargs["engine"]
        if Path(video).stem == "two":
            for process in list(engine._pool._processes.values()):  # started by video one
                process.kill()
                process.join()
        return compute_flow(video, out_dir, **kwargs)

    monkeypatch.setattr(inputs, "compute_flow", compute_flow_with_a_dying_pool)  # run_flow imports it when it runs
    out = tmp_path / "flow"
    args = parse([*map(str, videos), "--out", str(out), "--short-side", "48", "--workers", "2"])
    assert run_flow(args) == 1
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        f"i3d: error: {videos[1]}: TV-L1 worker process died (killed, or out of memory?)"
    ]
    assert captured.out.split() == [str(out / "one"), str(out / "three")]
    assert sorted(p.name for p in out.iterdir()) == ["one", "one.json", "three", "three.json"]


@pytest.mark.parametrize("flag", [["--workers", "0"], ["--fps", "inf"], ["--short-side", "x"]])
def test_bad_numbers_are_usage_errors(flag, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse(["v.mp4", "--out", "o", *flag])
    assert exit_.value.code == 2
    assert f"argument {flag[0]}: " in capsys.readouterr().err


def test_the_fps_help_names_the_charades_rate():
    parser = argparse.ArgumentParser()
    add_flow_arguments(parser)
    (fps,) = [a for a in parser._actions if "--fps" in a.option_strings]
    assert "25, Kinetics; 24 for Charades" in fps.help
