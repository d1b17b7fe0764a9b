"""``--seed`` decides every random draw of a run: the new layers' weights, data order, clips, dropout."""

from __future__ import annotations

import json

import pytest
import torch

from i3d.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from i3d.train.cli import run_train
from i3d.train.loop import LOG_NAME
from tests.train.labelled_data import TINY, parse


def _run(folders, out, seed: int) -> tuple[dict[str, torch.Tensor], list[float]]:
    # The global generator is left in another state before each run: a run must not read it.
    torch.manual_seed(seed + 1000 + len(str(out)))
    args = parse("--root", str(folders), "--out", str(out), *TINY, "--steps", "1", "--seed", str(seed))
    assert run_train(args) == 0
    log = [json.loads(line) for line in (out / LOG_NAME).read_text().splitlines()]
    losses = [r["loss"] for r in log if r["event"] == "train"]
    return load_checkpoint(out / CHECKPOINT_NAME)["model"], losses


@pytest.mark.slow
def test_one_seed_one_run_bit_for_bit(folders, tmp_path, capsys):
    first, first_losses = _run(folders, tmp_path / "a", seed=7)
    again, again_losses = _run(folders, tmp_path / "again", seed=7)
    other, other_losses = _run(folders, tmp_path / "b", seed=8)
    capsys.readouterr()
    assert first_losses == again_losses
    assert first.keys() == again.keys()
    for name in first:
        assert torch.equal(first[name], again[name]), name
    # Another seed: another classifier, other clips, another loss.
    assert not torch.equal(first["logits.conv3d.weight"], other["logits.conv3d.weight"])
    assert first_losses != other_losses
