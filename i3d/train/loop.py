"""Fine-tuning I3D: the training loop, checkpoints and resume.

::

    model = inception_i3d(weights="rgb_imagenet", num_classes=157, dropout_keep_prob=0.5)
    train = CharadesClips(root, read_csv("Charades_v1_train.csv"), CHARADES_RECIPE.preprocess("rgb"))
    val = CharadesVideos(root, read_csv("Charades_v1_test.csv"), CHARADES_RECIPE.preprocess("rgb"))
    Trainer(model, train, CHARADES_RECIPE, TrainOptions(out="runs/rgb"), val_data=val).fit()

Any labelled videos train the same way with a clip objective and clip
validation (what ``i3d train`` builds from a class-folder or CSV dataset)::

    Trainer(model, TrainingClips(...), recipe, options, val_data=ClipValidation(ValidationClips(...)),
            objective=ClipObjective(multi_label=False), classes=video_list.classes).fit()

One optimizer step sums the gradients of ``recipe.accumulation_steps``
batches of ``recipe.batch_size`` clips (shared out among the processes of a
``torchrun`` job, which train under DistributedDataParallel); the learning
rate follows the recipe's schedule (:func:`i3d.train.finetune.lr_factor`),
stepped once per optimizer step.

Reproducibility: a run is a function of its seed and its starting model
(``i3d train`` draws the new classifier from the seed). Clip sampling and
augmentation are seeded by each clip's place in the data stream
(:mod:`i3d.train.data`), dropout by ``(seed, rank, step, batch)``, the
loader workers' own generators by ``(seed, rank, first batch)``, so a run
stopped after any checkpoint and resumed with ``resume=True`` ends with the
same weights as one that ran straight through (up to the non-determinism of
the device's kernels; exact on the CPU), whatever the number of loader
workers. Resuming first removes the temporary files a run killed while
writing left in the output folder (``.checkpoint.pt.*.tmp`` and the like).

Outputs, written by rank 0 only, in ``options.out``:

* ``checkpoint.pt``: the whole training state (:mod:`i3d.train.checkpoint`),
  every ``checkpoint_every`` steps and at the end;
* ``train.jsonl``: one JSON object per line, ``{"event": "start" | "train" |
  "val" | "skipped" | "checkpoint" | "end", "step": ..., ...}``
  (:mod:`i3d.train.runlog`); validation records carry the validator's
  numbers (``map``/``wap`` for Charades; ``top1``, ``top5``,
  ``mean_class_acc`` or ``map`` for clip validation);
* ``model.safetensors`` (and ``classes.txt`` when the classes are known):
  the final weights, for :func:`i3d.weights.inception_i3d`
  (:mod:`i3d.train.export`);
* ``confusion.json`` and PNG plots (:mod:`i3d.train.plots`) where matplotlib
  is installed; TensorBoard events where tensorboard is.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from i3d import console
from i3d.atomic import OutputError, check_replaceable, open_atomic, remove_stale
from i3d.charades.datasets import CharadesVideos
from i3d.errors import CheckpointError, I3DError
from i3d.runtime import PRECISIONS, Placement, Precision, allow_tf32, autocast, prepare_for_training
from i3d.train.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    plain_scheduler_state,
    save_checkpoint,
)
from i3d.train.data import (
    DROPOUT_STREAM,
    ClipDataset,
    ClipStream,
    batches_per_epoch,
    clip_loader,
    derive_seed,
    seeded,
)
from i3d.train.distributed import World, barrier, broadcast_buffers, broadcast_object, device_for
from i3d.train.export import CLASSES_NAME, ModelInput, save_model
from i3d.train.finetune import freeze, frozen_modules, lr_factor, parameter_groups, set_bn_momentum
from i3d.train.loss import CharadesObjective, Objective
from i3d.train.plots import CONFUSION_JSON, CONFUSION_PNG, LOSS_PNG, VALIDATION_PNG, plot_run
from i3d.train.recipe import Recipe
from i3d.train.runlog import RunLog, Window
from i3d.train.validation import (
    DEFAULT_VAL_CHUNK_FRAMES,
    CharadesValidation,
    Validation,
    ValidationOutcome,
    Validator,
    validate,
    video_logits,
)
from i3d.weights import load_weights

__all__ = [
    "Trainer",
    "TrainOptions",
    "TrainResult",
    "Validation",
    "validate",
    "video_logits",
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "MODEL_NAME",
    "DEFAULT_VAL_CHUNK_FRAMES",
]

LOG_NAME = "train.jsonl"
MODEL_NAME = "model.safetensors"
# Recipe fields a resumed run may change: training for longer is continuing.
_RESUMABLE_CHANGES = ("max_steps",)
# Files of the output folder whose killed writers may have left temporaries.
# (config.toml is written by i3d.train.cli.)
_OUTPUTS = (
    CHECKPOINT_NAME,
    LOG_NAME,
    MODEL_NAME,
    CLASSES_NAME,
    CONFUSION_JSON,
    LOSS_PNG,
    VALIDATION_PNG,
    CONFUSION_PNG,
    "config.toml",
)


@dataclass(frozen=True)
class TrainOptions:
    """How to run a training (the recipe says what to train).

    Attributes:
        out: folder for the checkpoint, the log and the final model.
        resume: continue from ``out/checkpoint.pt`` if there is one (else
            start afresh); without it an existing checkpoint is an error.
        seed: the run seed; a resumed run keeps its checkpoint's.
        workers: loader processes reading clips ahead, per training process.
        device: torch device; default CUDA (``cuda:$LOCAL_RANK`` under
            torchrun) if available, else the CPU.
        precision: ``fp32`` (exact: TF32 off on CUDA), ``tf32``, ``bf16``
            (autocast) or ``fp16`` (autocast and gradient scaling, CUDA only).
        checkpoint_every: optimizer steps between checkpoints.
        val_every: optimizer steps between validations (0: only at the end).
        log_every: optimizer steps per log line (losses averaged over them).
        val_chunk_frames: frames per network call in whole-video validation.
        echo: print the log lines on stdout too (and a progress bar on a terminal).
        force_config: resume even if the checkpoint's recipe differs.
        tensorboard: write TensorBoard events where the package is installed.
        plots: write PNG plots at the end where matplotlib is installed.
    """

    out: str | os.PathLike[str]
    resume: bool = False
    seed: int = 0
    workers: int = 4
    device: str | torch.device | None = None
    precision: Precision = "fp32"
    checkpoint_every: int = 100
    val_every: int = 0
    log_every: int = 10
    val_chunk_frames: int = DEFAULT_VAL_CHUNK_FRAMES
    echo: bool = True
    force_config: bool = False
    tensorboard: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        for name in ("checkpoint_every", "log_every", "val_chunk_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0 or self.val_every < 0 or self.seed < 0:
            raise ValueError("workers, val_every and seed must be >= 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass(frozen=True)
class TrainResult:
    """Where a run ended.

    Attributes:
        step: optimizer steps done.
        start_step: the step it started from (non-zero when resumed).
        out: the output folder (written by rank 0 only).
        validation: the last validation, if any.
    """

    step: int
    start_step: int
    out: Path
    validation: ValidationOutcome | None = None

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT_NAME

    @property
    def model(self) -> Path:
        return self.out / MODEL_NAME


class Trainer:
    """Fine-tune a video classifier.

    Args:
        model: ``(B, C, T, H, W) -> (B, num_classes, T')`` per-time logits,
            e.g. :func:`i3d.weights.inception_i3d` with ``num_classes=157``;
            moved to the device and trained in place.
        train_data: training clips with ``recipe.clip_frames`` frames, e.g.
            :class:`~i3d.charades.datasets.CharadesClips` or
            :class:`~i3d.train.clips.TrainingClips` (see
            :class:`i3d.train.data.ClipDataset`).
        recipe: hyper-parameters.
        options: where and how to run.
        val_data: the periodic validation: a :class:`~i3d.train.validation.Validator`,
            Charades videos (scored by :class:`~i3d.train.validation.CharadesValidation`),
            or ``None``.
        objective: the loss of a batch (default: Charades' per-frame loss
            with the recipe's weights).
        classes: class names, saved with the final model.
        model_input: the clips' preprocessing and length, saved with the
            final model (``i3d eval accuracy`` makes its clips so).

    Under ``torchrun`` (an initialized process group, see
    :func:`i3d.train.distributed.process_group`) every process builds the
    same Trainer and calls :meth:`fit`.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: ClipDataset,
        recipe: Recipe,
        options: TrainOptions,
        val_data: Validator | CharadesVideos | None = None,
        *,
        objective: Objective | None = None,
        classes: Sequence[str] | None = None,
        model_input: ModelInput | None = None,
    ) -> None:
        for name in ("clip_frames", "num_classes"):
            have = getattr(train_data, name, getattr(recipe, name))
            if have != getattr(recipe, name):
                raise ValueError(f"the training set has {name}={have}, the recipe {getattr(recipe, name)}")
        if classes is not None and len(classes) != recipe.num_classes:
            raise ValueError(f"{len(classes)} class names for {recipe.num_classes} classes")
        self.recipe = recipe
        self.options = options
        self.train_data = train_data
        if isinstance(val_data, CharadesVideos):
            val_data = CharadesValidation(val_data, options.val_chunk_frames)
        self.validator: Validator | None = val_data
        self.objective: Objective = objective or CharadesObjective(
            recipe.localization_weight, recipe.classification_weight
        )
        self.classes = tuple(classes) if classes is not None else None
        self.model_input = model_input
        self.world = World.current()
        self.device = device_for(Placement.resolve(options.device, options.precision).device, self.world)
        self.out = Path(options.out)
        self.seed = options.seed
        self.module = prepare_for_training(model, self.device, options.precision)
        set_bn_momentum(self.module, recipe.bn_momentum)
        self._frozen = frozen_modules(self.module, recipe.freeze_until)
        freeze(self._frozen)
        self._train_mode()
        self.optimizer = torch.optim.SGD(
            parameter_groups(self.module, recipe),
            lr=recipe.learning_rate,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=options.precision == "fp16")
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self._log: RunLog | None = None
        self._saved_step: int | None = None
        self._last_validation: ValidationOutcome | None = None

    def _lr_factor(self, step: int) -> float:
        # Reads self.recipe at each step: a resumed run may train for longer.
        return lr_factor(self.recipe, step)

    def _train_mode(self) -> None:
        """Training mode, except the frozen trunk (its BatchNorm statistics stay as loaded)."""
        self.module.train()
        for module in self._frozen:
            module.eval()

    # ---- public -------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train up to ``recipe.max_steps`` optimizer steps; see the module docstring.

        Raises:
            I3DError: an existing checkpoint without ``resume``, a checkpoint
                of another recipe, a loss that is not finite, or a training
                clip that cannot be read (``"<path>: <cause>"``; the run
                stops there, see :mod:`i3d.train.data`).
            ValueError: a batch size the processes cannot share evenly.
        """
        start = self._restore()
        if self.world.is_main:
            self._log = RunLog(
                self.out / LOG_NAME,
                self.options.echo,
                keep_until=start if start else None,
                total_steps=self.recipe.max_steps,
                start_step=start,
                tensorboard=self.options.tensorboard,
            )
            self._log.write(
                {
                    "event": "start",
                    "step": start,
                    "seed": self.seed,
                    "world_size": self.world.world_size,
                    "device": str(self.device),
                    "precision": self.options.precision,
                    "recipe": self.recipe.to_dict(),
                },
                f"{'resuming at' if start else 'starting'} step {start}/{self.recipe.max_steps} "
                f"on {self.world.world_size} x {self.device}, {self.recipe.clips_per_step} clips per step",
            )
        validation = None
        try:
            with self._precision():
                if self.step < self.recipe.max_steps:
                    validation = self._train()
            if self.validator is not None and not any(v["step"] == self.step for v in self.history):
                validation = self._validate()
                self._saved_step = None  # so that the checkpoint records it
            self._finish()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return TrainResult(self.step, start, self.out, validation)

    # ---- steps ----------------------------------------------------------------

    def _train(self) -> ValidationOutcome | None:
        recipe, options, world = self.recipe, self.options, self.world
        network: nn.Module = self.module
        if world.distributed:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            network = DistributedDataParallel(self.module, device_ids=device_ids)
        stream = ClipStream(
            len(self.train_data),
            recipe.batch_size,
            world.rank,
            world.world_size,
            self.seed,
            start_batch=self.step * recipe.accumulation_steps,
        )
        per_epoch = batches_per_epoch(len(self.train_data), recipe.batch_size)
        loader = clip_loader(self.train_data, stream, workers=options.workers, pin_memory=self.device.type == "cuda")
        batches = iter(loader)
        window = Window(self.objective.names)
        validation = None
        try:
            while self.step < recipe.max_steps:
                lr = self.optimizer.param_groups[0]["lr"]
                terms = self._optimizer_step(network, batches)
                self.step += 1
                window.add(terms)
                if not math.isfinite(terms[0]) and not self.scaler.is_enabled():
                    raise I3DError(
                        f"step {self.step}: the loss is {terms[0]}; lower the learning rate or check the inputs "
                        f"(the checkpoint in {self.out} is from before)"
                    )
                if self._log is not None:
                    self._log.progress(self.step, terms[0], window.rate(recipe.clips_per_step))
                final = self.step == recipe.max_steps
                if self.step % options.log_every == 0 or final:
                    self._log_train(window, lr, self.step * recipe.accumulation_steps / per_epoch)
                    window = Window(self.objective.names)
                periodic = options.val_every and self.step % options.val_every == 0
                paused = time.perf_counter()
                if self.validator is not None and (periodic or final):
                    validation = self._validate()
                if self.step % options.checkpoint_every == 0 or final:
                    self._checkpoint()
                window.started += time.perf_counter() - paused  # clips/s of training alone
        finally:
            del batches  # stops the loader's worker processes
        return validation

    def _optimizer_step(self, network: nn.Module, batches: Iterator) -> list[float]:
        """Forward and backward ``accumulation_steps`` batches, then one SGD step.

        Returns the mean of each loss term (``objective.names``) over the
        batches and the processes.
        """
        accumulate = self.recipe.accumulation_steps
        sums = torch.zeros(len(self.objective.names), device=self.device)
        for micro in range(accumulate):
            clips, targets = next(batches)
            clips = clips.to(self.device, non_blocking=True)
            targets = targets.to(self.device, non_blocking=True)
            # Gradients are averaged across processes only on the last batch.
            last = micro == accumulate - 1
            ddp = isinstance(network, DistributedDataParallel)
            sync = network.no_sync() if ddp and not last else contextlib.nullcontext()
            with sync:
                with self._dropout_rng(micro), autocast(self.device, self.options.precision):
                    logits = network(clips)
                terms = self.objective(logits, targets)
                self.scaler.scale(terms[0] / accumulate).backward()
            sums += torch.stack([t.detach().float() for t in terms])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.world.distributed:
            torch.distributed.all_reduce(sums)
        return (sums / (accumulate * self.world.world_size)).tolist()

    def _dropout_rng(self, micro: int) -> contextlib.AbstractContextManager[None]:
        """Seed the default generators of this process for one forward pass, then restore them."""
        return seeded(derive_seed(DROPOUT_STREAM, self.seed, self.world.rank, self.step, micro), self.device)

    def _precision(self) -> contextlib.AbstractContextManager[None]:
        """TF32 on CUDA only for ``tf32``, ``bf16`` and ``fp16``, as for inference."""
        return allow_tf32(self.device, self.options.precision)

    # ---- validation, logs, checkpoints -----------------------------------------------

    def _validate(self) -> ValidationOutcome:
        assert self.validator is not None
        broadcast_buffers(self.module, self.world)
        started = time.perf_counter()
        validation = self.validator(self.module, device=self.device, precision=self.options.precision, world=self.world)
        self._train_mode()
        self._last_validation = validation
        record = {"event": "val", "step": self.step, **validation.to_json()}
        self.history.append({k: v for k, v in record.items() if k not in ("event", "per_class")})
        if self._log is not None:
            for message in validation.skipped:
                skipped = {"event": "skipped", "step": self.step, "error": message}
                self._log.write(skipped, f"{console.current_command()}: warning: {message}", sys.stderr)
            elapsed = time.perf_counter() - started
            self._log.write(
                {**record, "seconds": elapsed}, f"val step {self.step}: {validation.summary()} ({elapsed:.0f} s)"
            )
        return validation

    def _log_train(self, window: Window, lr: float, epoch: float) -> None:
        if self._log is None:
            return
        rate = window.rate(self.recipe.clips_per_step)
        means = window.means()
        # Strict JSON has no NaN: a non-finite loss (skipped fp16 steps) is written as null.
        record = {"event": "train", "step": self.step, "epoch": epoch, "lr": lr, **means, "clips_per_s": rate}
        terms = " ".join(f"{name} {value:.4f}" for name, value in means.items())
        self._log.write(
            record,
            f"step {self.step}/{self.recipe.max_steps} epoch {epoch:.2f} lr {lr:.3g} {terms} {rate:.1f} clips/s",
        )

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "seed": self.seed,
            "world_size": self.world.world_size,
            "recipe": self.recipe.to_dict(),
            "model": {k: v.detach().cpu() for k, v in self.module.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": plain_scheduler_state(self.scheduler.state_dict()),
            "scaler": self.scaler.state_dict(),
            "validation": list(self.history),
        }

    def _checkpoint(self) -> None:
        if not self.world.is_main:
            return
        path = save_checkpoint(self._state(), self.out / CHECKPOINT_NAME)
        self._saved_step = self.step
        assert self._log is not None
        self._log.write({"event": "checkpoint", "step": self.step, "path": str(path)})

    def _finish(self) -> None:
        broadcast_buffers(self.module, self.world)
        if self.world.is_main:
            if self._saved_step != self.step:
                self._checkpoint()
            save_model(self.module.state_dict(), self.out / MODEL_NAME, self.classes, self.model_input)
            confusion = getattr(self._last_validation, "confusion", None)
            if confusion is not None and self.classes is not None:
                with open_atomic(self.out / CONFUSION_JSON) as f:
                    json.dump({"step": self.step, "classes": list(self.classes), "confusion": confusion}, f)
            assert self._log is not None
            if self.options.plots:
                for path in plot_run(self.out, LOG_NAME):
                    self._log.write({"event": "plot", "step": self.step, "path": str(path)})
            self._log.write(
                {"event": "end", "step": self.step, "model": str(self.out / MODEL_NAME)},
                f"step {self.step}: model written to {self.out / MODEL_NAME}",
            )
        barrier(self.world)

    def _restore(self) -> int:
        """Load ``out/checkpoint.pt`` on rank 0 and share it; returns the step to start from."""
        path = self.out / CHECKPOINT_NAME
        # Rank 0 alone may see the file; every process must take the same branch.
        outcome: tuple[str, Any] = ("fresh", None)
        if self.world.is_main:
            try:
                for name in _OUTPUTS:  # before any step: a device node or link there is never replaced
                    check_replaceable(self.out / name)
            except OutputError as err:
                outcome = ("error", str(err))
        if self.world.is_main and self.options.resume:
            # A run killed while writing left these; the resumed run is their only writer now.
            for name in _OUTPUTS:
                remove_stale(self.out / name)
        if self.world.is_main and outcome[0] == "fresh" and path.exists():
            if not self.options.resume:
                message = f"{path} exists; pass resume (--resume) to continue that run, or another output folder"
                outcome = ("error", message)
            else:
                try:
                    outcome = ("state", load_checkpoint(path))
                except CheckpointError as err:
                    outcome = ("bad checkpoint", err.cause)
        kind, value = broadcast_object(outcome, self.world)
        if kind == "error":
            raise I3DError(value)
        if kind == "bad checkpoint":
            raise CheckpointError(path, value)
        if kind == "fresh":
            return 0
        state: dict[str, Any] = value
        try:
            saved = Recipe.from_dict(dict(state["recipe"]))
        except (TypeError, ValueError) as err:
            raise CheckpointError(path, f"bad recipe ({err})") from None
        differences = self.recipe.differences(saved, ignore=_RESUMABLE_CHANGES)
        if differences and not self.options.force_config:
            raise CheckpointError(
                path,
                "written with another recipe (now vs then: "
                + "; ".join(differences)
                + "); use another output folder, or --force-config to go on with the new one",
            )
        load_weights(self.module, state["model"], str(path))
        base_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as err:
            raise CheckpointError(path, f"its optimizer state does not fit this run ({err})") from None
        # The schedule is a function of the step: set it, rather than load a
        # scheduler state (which checkpoints of the MultiStepLR days hold).
        step = int(state["step"])
        self.scheduler.base_lrs = base_lrs
        self.scheduler.last_epoch = step
        for group, base in zip(self.optimizer.param_groups, base_lrs):
            group["initial_lr"] = base
            group["lr"] = base * lr_factor(self.recipe, step)
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step = self._saved_step = int(state["step"])
        self.seed = int(state["seed"])
        self.history = list(state["validation"])
        return self.step
