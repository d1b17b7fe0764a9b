"""``i3d fvd``, ``i3d fvd stats``, ``i3d fvd merge`` end to end on tiny synthetic sets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from i3d.cli import main
from i3d.fvd.stats import Statistics
from tests.fvd.conftest import tiny_videos

KEYS = {
    "fvd",
    "kvd",
    "kvd_std",
    "n_real",
    "n_gen",
    "failed",
    "protocol",
    "weights",
    "weights_sha256",
    "precision",
    "preprocess",
}


def run_json(capsys, *argv: str) -> dict:
    assert main(["fvd", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_distance_equals_merged_shards(tmp_path, capsys, fvd_weights, small_frames):
    real, gen = tmp_path / "real.npy", tmp_path / "gen.npy"
    np.save(real, tiny_videos(4, seed=1, frames=2))
    np.save(gen, tiny_videos(4, seed=2, high=128, frames=2))
    # --batch 1: every clip runs alone, so that both routes embed it identically.
    embedding = ["--weights", str(fvd_weights), "--device", "cpu", "--batch", "1"]
    direct = run_json(capsys, str(real), str(gen), "--kvd", *embedding)
    assert set(direct) == KEYS
    assert direct["n_real"] == direct["n_gen"] == 4 and direct["failed"] == 0
    assert direct["fvd"] > 0 and direct["kvd"] is not None and direct["kvd_std"] is None  # one KVD block
    # The size embedded at (224 outside this test: see test_protocols.py's end-to-end test).
    assert direct["preprocess"] == {
        "resize": "reference",
        "size": small_frames,
        "range": "2*x/255-1",
        "num_frames": None,
    }
    assert direct["weights"] == str(fvd_weights) and direct["precision"] == "fp32"

    for shard in ("0/2", "1/2"):
        out = tmp_path / f"real-{shard[0]}.npz"
        assert main(["fvd", "stats", str(real), "--out", str(out), "--shard", shard, "--kvd", *embedding]) == 0
        assert "2 videos" in capsys.readouterr().err
    assert (
        main(
            [
                "fvd",
                "merge",
                str(tmp_path / "real-0.npz"),
                str(tmp_path / "real-1.npz"),
                "--out",
                str(tmp_path / "real.npz"),
            ]
        )
        == 0
    )
    assert main(["fvd", "stats", str(gen), "--out", str(tmp_path / "gen.npz"), "--kvd", *embedding]) == 0
    capsys.readouterr()
    merged = run_json(capsys, str(tmp_path / "real.npz"), str(tmp_path / "gen.npz"), "--kvd")
    assert merged["fvd"] == pytest.approx(direct["fvd"], rel=1e-9)
    assert merged["kvd"] == pytest.approx(direct["kvd"], rel=1e-9)
    assert {k: merged[k] for k in KEYS - {"fvd", "kvd"}} == {k: direct[k] for k in KEYS - {"fvd", "kvd"}}


def statistics_file(path, seed: int, keep: bool = False, **meta) -> str:
    x = np.random.default_rng(seed).normal(size=(12, 5))
    Statistics(keep_activations=keep, meta={"weights": "w", **meta}).update(x).save(path)
    return str(path)


def test_statistics_made_differently_are_refused(tmp_path, capsys):
    a = statistics_file(tmp_path / "a.npz", 0, resize="reference")
    b = statistics_file(tmp_path / "b.npz", 1, resize="torch")
    assert main(["fvd", a, b]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "i3d fvd distance: error: REAL and GEN were embedded differently (resize: reference vs torch)"
    assert main(["fvd", "merge", a, b, "--out", str(tmp_path / "ab.npz")]) == 1
    assert "made differently" in capsys.readouterr().err and not (tmp_path / "ab.npz").exists()


def test_a_statistics_file_is_checked_before_anything_is_embedded(tmp_path, capsys, fvd_weights):
    a = statistics_file(tmp_path / "a.npz", 0)
    np.save(tmp_path / "gen.npy", np.zeros((2, 1, 2, 2, 3), np.uint8))
    assert main(["fvd", a, str(tmp_path / "gen.npy"), "--weights", str(fvd_weights), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"i3d fvd distance: error: {a} was embedded differently (") and "weights: w vs " in err


def test_text_output_and_kvd_without_activations(tmp_path, capsys):
    a, b = statistics_file(tmp_path / "a.npz", 0), statistics_file(tmp_path / "b.npz", 1)
    assert main(["fvd", a, b]) == 0
    out = capsys.readouterr().out
    assert out.startswith("FVD ") and "real: 12 videos, gen: 12 videos, protocol: reference, weights: w" in out
    assert main(["fvd", a, b, "--kvd"]) == 1
    assert "a.npz: holds no embeddings for --kvd" in capsys.readouterr().err
    a, b = statistics_file(tmp_path / "ka.npz", 0, keep=True), statistics_file(tmp_path / "kb.npz", 1, keep=True)
    result = run_json(capsys, a, b, "--kvd", "--kvd-block", "4")
    assert result["kvd"] is not None and result["kvd_std"] > 0  # three blocks


def test_bad_inputs_are_reported_and_the_others_go_on(tmp_path, capsys, fvd_weights, small_frames):
    folder = tmp_path / "videos"
    folder.mkdir()
    np.save(folder / "a.npy", tiny_videos(1, seed=3, frames=3)[0])  # one video (T, H, W, 3)
    np.save(folder / "b.npy", tiny_videos(2, seed=4, frames=1))  # too short for --num-frames 2
    np.save(folder / "c.npy", np.zeros((2, 2, 8, 8, 3), np.float32))  # not uint8
    (folder / "d.mp4").write_bytes(b"not a video")
    np.savez(tmp_path / "e.npz", tiny_videos(2, seed=5, frames=2))
    listing = tmp_path / "list.txt"
    listing.write_text(f"# a list of videos\n{tmp_path / 'e.npz'}\n")
    out = tmp_path / "s.npz"
    argv = [
        "fvd",
        "stats",
        str(folder),
        str(listing),
        "--out",
        str(out),
        "--num-frames",
        "2",
        "--weights",
        str(fvd_weights),
    ]
    assert main([*argv, "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 5, err  # b[0], b[1], c, d, then the summary
    assert any("b.npy[0]: has 1 frames, fewer than the 2 asked for" in line for line in err)
    assert any("c.npy: expected uint8 videos" in line for line in err)
    assert any("d.mp4: " in line for line in err)
    assert err[-1].startswith("i3d fvd stats: 3 videos, 4 failed in ")
    stats = Statistics.load(out)
    assert stats.count == 3 and stats.meta["preprocess"]["num_frames"] == 2


def test_usage_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fvd", "stats", "x.npy", "--out", str(tmp_path / "s.npz"), "--shard", "2/2"])
    assert exit_info.value.code == 2 and "need 0 <= I < N" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["fvd", "real.npy"])
    assert exit_info.value.code == 2


def test_the_same_videos_twice_are_refused(tmp_path, capsys):
    a = statistics_file(tmp_path / "a0.npz", 0)
    copy = tmp_path / "copy.npz"
    copy.write_bytes((tmp_path / "a0.npz").read_bytes())
    out = tmp_path / "all.npz"
    for parts in ([a, a], [a, str(copy)]):
        assert main(["fvd", "merge", *parts, "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert (
            err
            == f"i3d fvd merge: error: {a} and {parts[1]} hold the same statistics: the same videos would count twice"
        )
        assert not out.exists()
    b = statistics_file(tmp_path / "b.npz", 1)
    assert main(["fvd", "merge", a, b, "--out", b]) == 1
    assert (
        capsys.readouterr().err.strip()
        == f"i3d fvd merge: error: --out {b} is one of the files to merge ({b}); write elsewhere"
    )
    assert Statistics.load(b).count == 12


def test_broken_statistics_files_give_one_line(tmp_path, capsys):
    a, b = statistics_file(tmp_path / "a.npz", 0), statistics_file(tmp_path / "b.npz", 1)
    with np.load(b) as archive:
        content = {k: archive[k] for k in archive.files}
    np.savez(b, **{**content, "sum": content["sum"] * np.nan})
    truncated = tmp_path / "t.npz"
    truncated.write_bytes((tmp_path / "a.npz").read_bytes()[:200])
    assert main(["fvd", a, b]) == 1
    assert capsys.readouterr().err.strip() == (
        f"i3d fvd distance: error: {b}: holds non-finite values (NaN or infinity) in sum; "
        "not the statistics of real embeddings"
    )
    assert main(["fvd", "merge", a, str(truncated), "--out", str(tmp_path / "m.npz")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"i3d fvd merge: error: {truncated}: cannot read statistics (BadZipFile") and "\n" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["fvd", "stats", "x.npy", "--out", str(tmp_path / "st.txt")])
    assert exit_info.value.code == 2 and "st.txt: a statistics file must end in .npz" in capsys.readouterr().err


@pytest.mark.slow
def test_progress_lines_in_logs_and_errors_in_the_commands_voice(
    tmp_path, capsys, monkeypatch, fvd_weights, small_frames
):
    import i3d.progress

    monkeypatch.setattr(i3d.progress, "LOG_INTERVAL", 0.0)  # a line per batch
    np.save(tmp_path / "v.npy", tiny_videos(3, seed=1, frames=2))
    np.save(tmp_path / "short.npy", tiny_videos(1, seed=1, frames=1))
    argv = ["fvd", "stats", str(tmp_path / "v.npy"), str(tmp_path / "short.npy"), "--num-frames", "2"]
    argv += ["--out", str(tmp_path / "s.npz"), "--weights", str(fvd_weights), "--device", "cpu", "--batch", "2"]
    assert main(argv) == 1  # the short video failed
    err = capsys.readouterr().err.strip().splitlines()
    # The reading thread reports the short video whenever it meets it: in the command's voice.
    assert f"i3d fvd stats: error: {tmp_path / 'short.npy'}[0]: has 1 frames, fewer than the 2 asked for" in err
    progress = [line.split(", ")[0] for line in err if " videos/s, ETA" in line]
    assert progress == ["i3d fvd stats: 2/4 videos", "i3d fvd stats: 3/4 videos"]
    assert err[-1].startswith("i3d fvd stats: 3 videos, 1 failed in ") and len(err) == 4
    assert main([*argv, "--quiet"]) == 1
    assert len(capsys.readouterr().err.strip().splitlines()) == 2  # the error and the summary
