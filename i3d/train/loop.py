"""Fine-tuning on Charades: the training loop, validation, checkpoints and resume.

::

    model = inception_i3d(weights="rgb_imagenet", num_classes=157, dropout_keep_prob=0.5)
    train = CharadesClips(root, read_csv("Charades_v1_train.csv"), CHARADES_RECIPE.preprocess("rgb"))
    val = CharadesVideos(root, read_csv("Charades_v1_test.csv"), CHARADES_RECIPE.preprocess("rgb"))
    Trainer(model, train, CHARADES_RECIPE, TrainOptions(out="runs/rgb"), val_data=val).fit()

One optimizer step sums the gradients of ``recipe.accumulation_steps``
batches of ``recipe.batch_size`` clips (shared out among the processes of a
``torchrun`` job, which train under DistributedDataParallel); the learning
rate follows ``MultiStepLR``, stepped once per optimizer step.

Reproducibility: a run is a function of its seed. Clip sampling and
augmentation are seeded by each clip's place in the data stream
(:mod:`i3d.train.data`), dropout by ``(seed, rank, step, batch)``, so a run
stopped after any checkpoint and resumed with ``resume=True`` ends with the
same weights as one that ran straight through (up to the non-determinism of
the device's kernels; exact on the CPU), whatever the number of loader
workers.

Outputs, written by rank 0 only, in ``options.out``:

* ``checkpoint.pt``: the whole training state (:mod:`i3d.train.checkpoint`),
  every ``checkpoint_every`` steps and at the end;
* ``train.jsonl``: one JSON object per line, ``{"event": "start" | "train" |
  "val" | "checkpoint" | "end", "step": ..., ...}``; a resumed run drops the
  lines past its checkpoint's step, so the file reads as one run;
* ``model.safetensors``: the final weights, for :func:`i3d.weights.inception_i3d`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from i3d.atomic import open_atomic
from i3d.charades.datasets import CharadesVideos
from i3d.charades.metrics import EvalResult, SubmissionWarning, evaluate_classification
from i3d.charades.submission import video_scores
from i3d.errors import CheckpointError, I3DError
from i3d.model import InceptionI3d
from i3d.runtime import PRECISIONS, Precision, allow_tf32, autocast, default_device, precision_context, prepare
from i3d.streaming import LOGITS, run_chunks
from i3d.train.checkpoint import (
    CHECKPOINT_NAME,
    load_checkpoint,
    plain_scheduler_state,
    restore_scheduler_state,
    save_checkpoint,
)
from i3d.train.data import DROPOUT_STREAM, ClipDataset, ClipStream, batches_per_epoch, clip_loader, derive_seed
from i3d.train.distributed import World, barrier, broadcast_buffers, broadcast_object, device_for, gather_objects
from i3d.train.loss import charades_loss
from i3d.train.recipe import Recipe
from i3d.video import InputStream
from i3d.weights import load_weights, save_state_dict

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
# Frames per network call in validation: bounds memory, not the result.
DEFAULT_VAL_CHUNK_FRAMES = 256
# Recipe fields a resumed run may change: training for longer is continuing.
_RESUMABLE_CHANGES = ("max_steps",)


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
        val_chunk_frames: frames per network call in validation.
        echo: print the log lines on stdout too.
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

    def __post_init__(self) -> None:
        for name in ("checkpoint_every", "log_every", "val_chunk_frames"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0 or self.val_every < 0 or self.seed < 0:
            raise ValueError("workers, val_every and seed must be >= 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


@dataclass(frozen=True)
class Validation:
    """The official classification evaluation of the validation videos.

    Attributes:
        result: mAP and the rest, over the videos that have actions.
        videos: videos run through the network.
        skipped: one-line errors of videos that could not be read (they
            score ``-inf``, as a submission missing them would).
    """

    result: EvalResult
    videos: int
    skipped: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {**self.result.to_json(), "videos": self.videos, "skipped": len(self.skipped)}


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
    validation: Validation | None = None

    @property
    def checkpoint(self) -> Path:
        return self.out / CHECKPOINT_NAME

    @property
    def model(self) -> Path:
        return self.out / MODEL_NAME


def video_logits(
    model: nn.Module,
    stream: InputStream,
    device: torch.device,
    precision: Precision = "fp32",
    chunk_frames: int = DEFAULT_VAL_CHUNK_FRAMES,
) -> torch.Tensor:
    """Per-frame logits ``(C, T')`` of a whole video, float32 on the CPU.

    Args:
        model: in eval mode; an :class:`InceptionI3d` runs streamed (memory
            bounded by ``chunk_frames``, same result as one pass), any other
            module ``(1, C, T, H, W) -> (1, K, T')`` in one pass.
        stream: the video as network input (``stream.chunks(n)`` gives
            ``(C, t, H, W)`` pieces in order).
    """
    chunks = (chunk.unsqueeze(0).to(device) for chunk in stream.chunks(chunk_frames))
    with precision_context(device, precision):
        if isinstance(model, InceptionI3d):
            logits = torch.cat(list(run_chunks(model, chunks, stream.num_frames, LOGITS)), dim=2)
        else:
            logits = model(torch.cat(list(chunks), dim=2))
    return logits[0].float().cpu()


def validate(
    model: nn.Module,
    videos: CharadesVideos,
    *,
    device: torch.device,
    precision: Precision = "fp32",
    chunk_frames: int = DEFAULT_VAL_CHUNK_FRAMES,
    world: World | None = None,
) -> Validation:
    """Charades classification mAP (``Charades_v1_classify.m``) of ``model`` on whole videos.

    A video's score for a class is the maximum over time of its per-frame
    logits. Videos without actions are not run: the official evaluation
    ignores their scores. Under several processes each runs its share of
    the videos and every process gets the result. The model is left in
    eval mode.
    """
    world = world or World()
    model.eval()
    scores: dict[str, Any] = {}
    skipped: list[str] = []
    for index in range(world.rank, len(videos), world.world_size):
        if not videos.videos[index].actions:
            continue
        try:
            item = videos[index]
            scores[item.video.id] = video_scores(video_logits(model, item.stream, device, precision, chunk_frames))
        except I3DError as err:
            skipped.append(str(err))
    merged: dict[str, Any] = {}
    all_skipped: list[str] = []
    for part_scores, part_skipped in gather_objects((scores, skipped), world):
        merged.update(part_scores)
        all_skipped.extend(part_skipped)
    with warnings.catch_warnings():
        # The skipped videos are reported with their causes instead.
        warnings.simplefilter("ignore", SubmissionWarning)
        result = evaluate_classification(videos.videos, merged, videos.num_classes)
    return Validation(result, len(merged), tuple(all_skipped))


class _Log:
    """Rank 0's JSON-lines log, echoed to stdout as readable lines."""

    def __init__(self, path: Path, echo: bool, keep_until: int | None) -> None:
        self.path = path
        self.echo = echo
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = self._records_until(keep_until) if keep_until is not None else []
        with open_atomic(path) as f:
            f.write("".join(json.dumps(r) + "\n" for r in kept))
        self.file: IO[str] = open(path, "a", encoding="utf-8")

    def _records_until(self, step: int) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if isinstance(record, dict) and record.get("step", 0) <= step:
                records.append(record)
        return records

    def write(self, record: dict[str, Any], line: str | None = None, stream: IO[str] | None = None) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.echo and line is not None:
            print(line, file=stream or sys.stdout, flush=True)

    def close(self) -> None:
        self.file.close()


@dataclass
class _Window:
    """Sums over the optimizer steps since the last log line."""

    steps: int = 0
    loss: float = 0.0
    localization: float = 0.0
    classification: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def add(self, terms: list[float]) -> None:
        self.steps += 1
        self.loss += terms[0]
        self.localization += terms[1]
        self.classification += terms[2]


class Trainer:
    """Fine-tune a per-frame video classifier on Charades clips.

    Args:
        model: ``(B, C, T, H, W) -> (B, num_classes, T')`` per-frame logits,
            e.g. :func:`i3d.weights.inception_i3d` with ``num_classes=157``;
            moved to the device and trained in place.
        train_data: training clips, e.g. :class:`CharadesClips` with
            ``recipe.clip_frames`` frames (see :class:`i3d.train.data.ClipDataset`).
        recipe: hyper-parameters.
        options: where and how to run.
        val_data: whole videos for the periodic validation, or ``None``.

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
        val_data: CharadesVideos | None = None,
    ) -> None:
        for name in ("clip_frames", "num_classes"):
            have = getattr(train_data, name, getattr(recipe, name))
            if have != getattr(recipe, name):
                raise ValueError(f"the training set has {name}={have}, the recipe {getattr(recipe, name)}")
        self.recipe = recipe
        self.options = options
        self.train_data = train_data
        self.val_data = val_data
        self.world = World.current()
        device = torch.device(options.device) if options.device is not None else default_device()
        self.device = device_for(device, self.world)
        self.out = Path(options.out)
        self.seed = options.seed
        self.module = prepare(model, self.device, options.precision).train()
        self.optimizer = torch.optim.SGD(
            self.module.parameters(),
            lr=recipe.learning_rate,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, list(recipe.lr_milestones), gamma=recipe.lr_gamma
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=options.precision == "fp16")
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self._log: _Log | None = None
        self._saved_step: int | None = None

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
            self._log = _Log(self.out / LOG_NAME, self.options.echo, keep_until=start if start else None)
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
            if self.val_data is not None and not any(v["step"] == self.step for v in self.history):
                validation = self._validate()
                self._saved_step = None  # so that the checkpoint records it
            self._finish()
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None
        return TrainResult(self.step, start, self.out, validation)

    # ---- steps ----------------------------------------------------------------

    def _train(self) -> Validation | None:
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
        window = _Window()
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
                final = self.step == recipe.max_steps
                if self.step % options.log_every == 0 or final:
                    self._log_train(window, lr, self.step * recipe.accumulation_steps / per_epoch)
                    window = _Window()
                periodic = options.val_every and self.step % options.val_every == 0
                if self.val_data is not None and (periodic or final):
                    validation = self._validate()
                if self.step % options.checkpoint_every == 0 or final:
                    self._checkpoint()
        finally:
            del batches  # stops the loader's worker processes
        return validation

    def _optimizer_step(self, network: nn.Module, batches: Iterator) -> list[float]:
        """Forward and backward ``accumulation_steps`` batches, then one SGD step.

        Returns the mean ``[total, localization, classification]`` loss over
        the batches and the processes.
        """
        recipe = self.recipe
        accumulate = recipe.accumulation_steps
        sums = torch.zeros(3, device=self.device)
        for micro in range(accumulate):
            clips, labels = next(batches)
            clips = clips.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            # Gradients are averaged across processes only on the last batch.
            last = micro == accumulate - 1
            ddp = isinstance(network, DistributedDataParallel)
            sync = network.no_sync() if ddp and not last else contextlib.nullcontext()
            with sync:
                with self._dropout_rng(micro), autocast(self.device, self.options.precision):
                    logits = network(clips)
                terms = charades_loss(logits, labels, recipe.localization_weight, recipe.classification_weight)
                self.scaler.scale(terms.total / accumulate).backward()
            sums += torch.stack([t.detach() for t in terms])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.world.distributed:
            torch.distributed.all_reduce(sums)
        return (sums / (accumulate * self.world.world_size)).tolist()

    @contextlib.contextmanager
    def _dropout_rng(self, micro: int) -> Iterator[None]:
        """Seed the default generators of this process for one forward pass, then restore them."""
        seed = derive_seed(DROPOUT_STREAM, self.seed, self.world.rank, self.step, micro)
        cuda = self.device.type == "cuda"
        with torch.random.fork_rng(devices=[self.device.index] if cuda else [], device_type=self.device.type):
            torch.default_generator.manual_seed(seed)
            if cuda:
                torch.cuda.default_generators[self.device.index].manual_seed(seed)
            yield

    def _precision(self) -> contextlib.AbstractContextManager[None]:
        """TF32 on CUDA only for ``tf32``, ``bf16`` and ``fp16``, as for inference."""
        return allow_tf32(self.device, self.options.precision)

    # ---- validation, logs, checkpoints -----------------------------------------------

    def _validate(self) -> Validation:
        assert self.val_data is not None
        broadcast_buffers(self.module, self.world)
        started = time.perf_counter()
        validation = validate(
            self.module,
            self.val_data,
            device=self.device,
            precision=self.options.precision,
            chunk_frames=self.options.val_chunk_frames,
            world=self.world,
        )
        self.module.train()
        record = {"event": "val", "step": self.step, **validation.to_json()}
        self.history.append({k: record[k] for k in ("step", "map", "wap", "classes", "videos", "skipped")})
        if self._log is not None:
            for message in validation.skipped:
                skipped = {"event": "skipped", "step": self.step, "error": message}
                self._log.write(skipped, f"warning: {message}", sys.stderr)
            elapsed = time.perf_counter() - started
            self._log.write(
                {**record, "seconds": elapsed},
                f"val step {self.step}: mAP {_percent(validation.result.map)} wAP {_percent(validation.result.wap)} "
                f"over {validation.result.classes} classes, {validation.videos} videos ({elapsed:.0f} s)",
            )
        return validation

    def _log_train(self, window: _Window, lr: float, epoch: float) -> None:
        if self._log is None:
            return
        rate = window.steps * self.recipe.clips_per_step / max(time.perf_counter() - window.started, 1e-9)
        loss, localization, classification = (
            x / window.steps for x in (window.loss, window.localization, window.classification)
        )
        record = {
            "event": "train",
            "step": self.step,
            "epoch": epoch,
            "lr": lr,
            # Strict JSON has no NaN: a non-finite loss (skipped fp16 steps) is null.
            "loss": _finite_or_none(loss),
            "localization": _finite_or_none(localization),
            "classification": _finite_or_none(classification),
            "clips_per_s": rate,
        }
        self._log.write(
            record,
            f"step {self.step}/{self.recipe.max_steps} epoch {epoch:.2f} lr {lr:.3g} loss {loss:.4f} "
            f"(loc {localization:.4f} cls {classification:.4f}) {rate:.1f} clips/s",
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
            save_state_dict(self.module.state_dict(), self.out / MODEL_NAME)
            assert self._log is not None
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
        if self.world.is_main and path.exists():
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
        if differences:
            raise CheckpointError(
                path,
                "written with another recipe (now vs then: " + "; ".join(differences) + "); use another output folder",
            )
        load_weights(self.module, state["model"], str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(restore_scheduler_state(state["scheduler"]))
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step = self._saved_step = int(state["step"])
        self.seed = int(state["seed"])
        self.history = list(state["validation"])
        return self.step


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _percent(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.2f}%"
