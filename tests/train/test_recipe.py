"""The published recipe's numbers, and the recipe's checks."""

from __future__ import annotations

import dataclasses

import pytest

from i3d.train.recipe import CHARADES_RECIPE, Recipe
from i3d.video.presets import CHARADES_FLOW, CHARADES_RGB


def test_published_numbers():
    # piergiaj/pytorch-i3d train_i3d.py and charades_dataset.py, commit eb3580b.
    r = CHARADES_RECIPE
    assert (r.learning_rate, r.momentum, r.weight_decay) == (0.1, 0.9, 1e-7)
    assert r.lr_milestones == (300, 1000) and r.lr_gamma == 0.1
    assert (r.batch_size, r.accumulation_steps, r.clips_per_step) == (40, 4, 160)
    assert r.max_steps == 64_000
    assert (r.clip_frames, r.crop) == (64, 224)
    assert (r.localization_weight, r.classification_weight) == (0.5, 0.5)
    assert r.num_classes == 157 and r.dropout_keep_prob == 0.5
    assert (r.weights("rgb"), r.weights("flow")) == ("rgb_imagenet", "flow_imagenet")


def test_learning_rate_follows_multisteplr():
    import torch

    # The Trainer's schedule: MultiStepLR over the recipe's milestones, stepped once per optimizer step.
    r = CHARADES_RECIPE
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=r.learning_rate)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(r.lr_milestones), r.lr_gamma)
    rates = []
    for _ in range(1100):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    for step, rate in enumerate(rates):
        passed = sum(step >= milestone for milestone in r.lr_milestones)
        assert rate == pytest.approx(r.learning_rate * r.lr_gamma**passed, rel=1e-12), step
    assert rates[299] == 0.1
    assert rates[300] == pytest.approx(0.01)
    assert rates[1000] == pytest.approx(0.001)


def test_preprocess_is_the_charades_preset_with_the_crop():
    assert CHARADES_RECIPE.preprocess("rgb") == CHARADES_RGB
    assert CHARADES_RECIPE.preprocess("flow") == CHARADES_FLOW
    small = dataclasses.replace(CHARADES_RECIPE, crop=112).preprocess("flow")
    assert small.crop == 112 and small.modality == "flow" and small.fps == 24.0


def test_dict_round_trip_and_differences():
    values = CHARADES_RECIPE.to_dict()
    assert Recipe.from_dict(values) == CHARADES_RECIPE
    # JSON turns the milestones into a list.
    assert Recipe.from_dict({**values, "lr_milestones": [300, 1000]}) == CHARADES_RECIPE
    other = dataclasses.replace(CHARADES_RECIPE, max_steps=10, learning_rate=0.01)
    assert CHARADES_RECIPE.differences(other, ignore=("max_steps",)) == ["learning_rate: 0.1 vs 0.01"]
    with pytest.raises(ValueError, match="unknown recipe fields: lr"):
        Recipe.from_dict({**values, "lr": 1})


@pytest.mark.parametrize(
    "change",
    [
        {"batch_size": 0},
        {"accumulation_steps": 1.5},
        {"learning_rate": 0.0},
        {"momentum": 1.0},
        {"lr_milestones": (1000, 300)},
        {"lr_milestones": (0,)},
        {"dropout_keep_prob": 0.0},
        {"weight_decay": -1.0},
    ],
)
def test_bad_values_are_refused(change):
    with pytest.raises(ValueError):
        dataclasses.replace(CHARADES_RECIPE, **change)
