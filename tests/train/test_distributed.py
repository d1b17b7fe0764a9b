"""DistributedDataParallel with two CPU processes (Gloo on 127.0.0.1), as torchrun would start them."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from i3d.charades.datasets import CharadesClips, CharadesVideos
from i3d.train.checkpoint import load_checkpoint
from i3d.train.distributed import World, process_group, world_from_env
from i3d.train.loop import CHECKPOINT_NAME, LOG_NAME, MODEL_NAME, Trainer, TrainOptions
from i3d.weights import load_state_dict_file
from tests.train.helpers import SMALL_RGB, TinyNet, tiny_recipe

WORLD_SIZE = 2
RECIPE = tiny_recipe(max_steps=3, lr_milestones=(2,))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_rank(rank: int, port: int, root: Path, train, val, out: Path, results: Path) -> None:
    # What torchrun sets for each process.
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD_SIZE), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)  # two processes share the cores

    def trainer(out: Path, recipe=RECIPE, resume=False, val_data=None) -> Trainer:
        torch.manual_seed(rank)  # different initial weights: DDP must start every rank from rank 0's
        return Trainer(
            TinyNet(),
            CharadesClips(root, train, SMALL_RGB, recipe.clip_frames),
            recipe,
            TrainOptions(out=out, resume=resume, workers=0, checkpoint_every=2, log_every=1, echo=False),
            val_data=val_data,
        )

    with process_group(torch.device("cpu")) as world:
        assert world == World(rank, WORLD_SIZE, rank)
        straight = trainer(out, val_data=CharadesVideos(root, val, SMALL_RGB))
        result = straight.fit()
        # The same run in two parts: the second loads the checkpoint on rank 0 and shares it.
        trainer(out.with_name("parts"), dataclasses.replace(RECIPE, max_steps=2)).fit()
        resumed = trainer(out.with_name("parts"), resume=True)
        resumed.fit()
        torch.save(
            {
                "state": straight.module.state_dict(),
                "resumed": resumed.module.state_dict(),
                "map": result.validation.result.map,
            },
            results / f"rank{rank}.pt",
        )


@pytest.mark.slow
def test_two_processes_end_with_the_same_weights_straight_or_resumed(mini_charades, tmp_path):
    out, results = tmp_path / "out", tmp_path / "results"
    results.mkdir()
    args = (free_port(), mini_charades.root, mini_charades.train, mini_charades.val, out, results)
    mp.spawn(train_rank, args=args, nprocs=WORLD_SIZE, join=True)

    ranks = [torch.load(results / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    first, second = ranks[0]["state"], ranks[1]["state"]
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert ranks[0]["map"] == ranks[1]["map"]  # both ranks get the evaluation of all videos
    for rank in ranks:
        for name in first:
            torch.testing.assert_close(rank["resumed"][name], first[name], rtol=0, atol=1e-6, msg=name)

    # Rank 0 alone wrote the outputs, and they hold its weights.
    model = load_state_dict_file(out / MODEL_NAME)
    assert all(torch.equal(model[k], first[k]) for k in first)
    state = load_checkpoint(out / CHECKPOINT_NAME)
    assert (state["step"], state["world_size"]) == (3, WORLD_SIZE)
    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    assert [r["step"] for r in log if r["event"] == "start"] == [0]
    assert [r["step"] for r in log if r["event"] == "train"] == [1, 2, 3]
    (val,) = [r for r in log if r["event"] == "val"]
    assert val["videos"] == 3 and val["map"] == ranks[0]["map"]


def test_world_from_env(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert world_from_env() == World(0, 1, 0)
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert world_from_env() == World(3, 8, 1)
    monkeypatch.setenv("RANK", "8")
    with pytest.raises(Exception, match="inconsistent torchrun environment"):
        world_from_env()
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(Exception, match="RANK='x' is not an integer"):
        world_from_env()
