"""``FrechetVideoDistance``: the number of ``i3d fvd``, in one process or two (gloo);
and the command's repeated draws and per-length curve.

Each test compares one computation with another made the same way, whatever
the frame size: all embed at ``SMALL_SIDE`` (tests/fvd/test_cli.py and
test_protocols.py embed at FVD's 224x224)."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from i3d.cli import main
from tests.fvd.conftest import SMALL_SIDE, tiny_videos

pytest.importorskip("torchmetrics")

from i3d.fvd.metric import FrechetVideoDistance  # noqa: E402  (after the optional import's check)

# The same embeddings, float64 sums in another order: the reference's symmetric
# root drops round-off eigenvalues, so its distance moves by far less than this.
SAME = 1e-9


def videos() -> tuple[np.ndarray, np.ndarray]:
    return tiny_videos(4, seed=21, frames=2), tiny_videos(4, seed=22, frames=2, high=140)


def cli_fvd(tmp_path, capsys, weights, *extra: str) -> dict:
    real, gen = videos()
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "gen.npy", gen)
    argv = ["fvd", str(tmp_path / "real.npy"), str(tmp_path / "gen.npy"), "--weights", str(weights)]
    # --batch 1 here and in the metric: each clip runs alone, so both embed it bit for bit alike.
    assert main([*argv, "--device", "cpu", "--json", "--quiet", "--batch", "1", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_metric_equals_the_command(tmp_path, capsys, fvd_weights, small_frames):
    want = cli_fvd(tmp_path, capsys, fvd_weights, "--protocol", "cdfvd", "--max-videos", "4")["fvd"]
    real, gen = videos()
    metric = FrechetVideoDistance("cdfvd", fvd_weights, batch_size=1)
    metric.update(torch.from_numpy(real[:3]), real=True)
    metric.update(real[3:], real=True)  # NumPy too
    metric.update(gen, real=False)
    assert float(metric.compute()) == pytest.approx(want, rel=SAME)
    metric.reset()
    assert int(metric.real_count) == 0
    with pytest.warns(UserWarning, match="before the ``update``"), pytest.raises(ValueError, match="real: 0 clip"):
        metric.compute()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, weights: str, out: str) -> None:
    import i3d.fvd.embedding

    i3d.fvd.embedding.FVD_SIZE = SMALL_SIDE  # a fresh process: as the small_frames fixture does in the test's
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        real, gen = videos()
        metric = FrechetVideoDistance("reference", weights, batch_size=1)
        metric.update(real[rank::world], real=True)  # each process its share
        metric.update(gen[rank::world], real=False)
        np.save(f"{out}-{rank}.npy", np.array([float(metric.compute()), float(metric.real_count)]))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_give_the_number_of_one(tmp_path, capsys, fvd_weights, small_frames):
    want = cli_fvd(tmp_path, capsys, fvd_weights)["fvd"]
    out = str(tmp_path / "rank")
    mp.spawn(_worker, args=(2, _free_port(), str(fvd_weights), out), nprocs=2, join=True)
    for rank in range(2):
        value, local_count = np.load(f"{out}-{rank}.npy")
        assert local_count == 2  # each process embedded half ...
        assert value == pytest.approx(want, rel=SAME)  # ... and computed over all


@pytest.mark.slow
def test_runs_and_curve(tmp_path, capsys, fvd_weights, small_frames):
    real, gen = tiny_videos(3, seed=31, frames=4, size=(12, 14)), tiny_videos(3, seed=32, frames=4, size=(12, 14))
    np.save(tmp_path / "real.npy", real)
    np.save(tmp_path / "gen.npy", gen)
    base = ["fvd", str(tmp_path / "real.npy"), str(tmp_path / "gen.npy"), "--weights", str(fvd_weights)]
    base += ["--device", "cpu", "--json", "--quiet"]
    # styleganv draws a start per real clip: 2-frame clips of 4 frames start at 0, 1 or 2.
    runs = ["--protocol", "styleganv", "--num-frames", "2", "--runs", "3", "--seed", "5"]
    assert main([*base, *runs]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["seeds"] == [5, 6, 7] and len(result["fvd_runs"]) == 3
    assert result["fvd"] == pytest.approx(np.mean(result["fvd_runs"]), rel=SAME)
    assert result["fvd_std"] == pytest.approx(np.std(result["fvd_runs"]), rel=SAME)
    one = ["--protocol", "styleganv", "--num-frames", "2", "--seed", "6"]
    assert main([*base, *one]) == 0
    assert json.loads(capsys.readouterr().out)["fvd"] == pytest.approx(result["fvd_runs"][1], rel=SAME)
    # The curve: FVD of the first 2, 3, 4 frames (JunyaoHu's starts at 10: tiny clips here).
    assert main([*base, "--protocol", "junyaohu", "--num-frames", "4", "--curve", "2"]) == 0
    curve = json.loads(capsys.readouterr().out)["curve"]
    assert [p["num_frames"] for p in curve] == [2, 3, 4]
    for point in curve:
        assert main([*base, "--protocol", "junyaohu", "--num-frames", str(point["num_frames"])]) == 0
        assert json.loads(capsys.readouterr().out)["fvd"] == pytest.approx(point["fvd"], rel=SAME)
    assert main([*base, "--runs", "2"]) == 1
    assert "--runs: the reference protocol draws nothing at random" in capsys.readouterr().err
