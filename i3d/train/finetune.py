"""Fine-tuning controls: which parameters train, at which learning rate, on which schedule.

* :func:`frozen_modules`: the trunk up to an endpoint (``freeze_until``),
  which gets no gradients and keeps its BatchNorm statistics (the trainer
  puts those modules back in eval mode whenever it enters training mode).
* :func:`parameter_groups`: the classifier (``logits.*``) at the recipe's
  learning rate, the rest of the trainable parameters at ``trunk_lr_scale``
  times it; frozen parameters are left out of the optimizer.
* :func:`set_bn_momentum`: the BatchNorm running-average momentum, for short runs.
* :func:`lr_factor`: the schedule as a factor of each group's learning rate
  at a step (warm-up, then steps or cosine), for ``LambdaLR``.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from i3d.model import InceptionI3d
from i3d.train.recipe import Recipe

__all__ = ["HEAD_PREFIX", "frozen_modules", "freeze", "set_bn_momentum", "parameter_groups", "lr_factor"]

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
# The classifier's parameters in an InceptionI3d state dict.
HEAD_PREFIX = "logits."


def frozen_modules(model: nn.Module, until: str) -> list[nn.Module]:
    """The trunk modules of ``model`` up to and including endpoint ``until`` (none for ``""``)."""
    if not until:
        return []
    if not isinstance(model, InceptionI3d):
        raise ValueError(f"freeze_until {until!r} needs an InceptionI3d, not a {type(model).__name__}")
    if until not in model.trunk:
        raise ValueError(f"freeze_until {until!r} is not a trunk endpoint of this model ({', '.join(model.trunk)})")
    names = model.trunk[: model.trunk.index(until) + 1]
    return [getattr(model, name) for name in names]


def freeze(modules: list[nn.Module]) -> None:
    """No gradients for ``modules`` and BatchNorm statistics kept (eval mode)."""
    for module in modules:
        module.requires_grad_(False)
        module.eval()


def set_bn_momentum(model: nn.Module, momentum: float | None) -> None:
    """Set every BatchNorm layer's running-average momentum (``None``: leave them)."""
    if momentum is None:
        return
    for module in model.modules():
        if isinstance(module, _BATCH_NORMS):
            module.momentum = momentum


def parameter_groups(model: nn.Module, recipe: Recipe) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: head first (its rate is the one logged), then trunk."""
    head, trunk = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (head if name.startswith(HEAD_PREFIX) else trunk).append(parameter)
    groups = []
    if head:
        groups.append({"params": head, "lr": recipe.learning_rate})
    if trunk:
        groups.append({"params": trunk, "lr": recipe.learning_rate * (recipe.trunk_lr_scale if head else 1.0)})
    if not groups:
        raise ValueError("no parameter left to train (everything is frozen)")
    return groups


def lr_factor(recipe: Recipe, step: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based) as a factor of the base rate.

    ``steps``: ``lr_gamma ** (milestones <= step)``, exactly ``MultiStepLR``
    stepped once per optimizer step. ``cosine``: ``(1 + cos(pi * p)) / 2``
    with ``p`` the fraction of the steps after warm-up done. Warm-up scales
    either by ``(step + 1) / warmup_steps`` over its steps.
    """
    warmup = recipe.warmup_steps
    if recipe.schedule == "cosine":
        span = max(recipe.max_steps - warmup, 1)
        progress = min(max(step - warmup, 0) / span, 1.0)
        factor = 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        factor = recipe.lr_gamma ** sum(1 for m in recipe.lr_milestones if m <= step)
    if step < warmup:
        factor *= (step + 1) / warmup
    return factor
