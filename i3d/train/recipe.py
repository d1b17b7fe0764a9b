"""The Charades fine-tuning recipe of the PyTorch port of I3D, as plain data.

Every default is the published number of piergiaj/pytorch-i3d
``train_i3d.py`` (commit eb3580b; line numbers below refer to it) or of the
dataset and model files it uses. Where this package deliberately departs
from the port, the field says so.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from i3d.charades.sizes import CLIP_FRAMES, NUM_CLASSES
from i3d.choices import ENDPOINTS
from i3d.video.presets import CHARADES_FLOW, CHARADES_RGB, Modality, Preprocess

__all__ = ["Recipe", "RecipeError", "CHARADES_RECIPE", "SCHEDULES"]

SCHEDULES: tuple[str, ...] = ("steps", "cosine")


class RecipeError(ValueError):
    """An invalid recipe value; ``field`` names it, so that a caller can name its flag or config key."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Recipe:
    """Hyper-parameters of a fine-tuning run; :data:`CHARADES_RECIPE` holds the published ones.

    Attributes:
        learning_rate: initial SGD learning rate (train_i3d.py:34 ``init_lr=0.1``).
        momentum: SGD momentum (train_i3d.py:64).
        weight_decay: SGD weight decay, applied to every parameter, BatchNorm
            and biases included (train_i3d.py:64 ``weight_decay=0.0000001``).
        lr_milestones: optimizer steps after which the learning rate is
            multiplied by ``lr_gamma`` (train_i3d.py:65 ``MultiStepLR(optimizer,
            [300, 1000])``; the scheduler steps once per optimizer step, :120).
        lr_gamma: the factor at each milestone (``MultiStepLR``'s default,
            0.1; train_i3d.py:65 passes none).
        batch_size: clips per forward pass, over all processes together
            (train_i3d.py:34 ``batch_size=8*5``, split among the GPUs by
            ``nn.DataParallel``, :61); under DistributedDataParallel each of
            ``W`` processes takes ``batch_size / W``.
        accumulation_steps: forward passes whose gradients are summed into
            one optimizer step (train_i3d.py:68 ``num_steps_per_update = 4``);
            each loss is divided by it (:111), so a step sees the mean over
            ``batch_size * accumulation_steps`` clips.
        max_steps: optimizer steps to train for (train_i3d.py:34
            ``max_steps=64e3``, counted in optimizer steps, :116). The port
            only checks it between epochs (:71) and overshoots; training here
            stops exactly there.
        clip_frames: frames per training clip (charades_dataset.py:115
            ``load_rgb_frames(..., start_f, 64)``).
        crop: side of the random training crop and of the centre crop for
            validation (train_i3d.py:36 ``RandomCrop(224)``, :39 ``CenterCrop(224)``).
        localization_weight: weight of the per-frame BCE on the logits
            upsampled to the clip's frames (train_i3d.py:111 ``0.5*loc_loss``).
        classification_weight: weight of the BCE on the maximum over time of
            logits and labels (train_i3d.py:111 ``0.5*cls_loss``).
        num_classes: size of the new classifier (train_i3d.py:58
            ``replace_logits(157)``).
        dropout_keep_prob: probability of keeping an activation before the
            logits. The port passes its ``dropout_keep_prob=0.5`` to
            ``nn.Dropout`` as the drop probability (pytorch_i3d.py); at 0.5
            both readings agree.
        rgb_weights, flow_weights: registry names of the starting points
            (train_i3d.py:57 ``rgb_imagenet.pt``, :54 ``flow_imagenet.pt``).

    Fine-tuning options (not in the port; their defaults change nothing):

    Attributes:
        schedule: ``"steps"`` (the learning rate times ``lr_gamma`` at each
            of ``lr_milestones``) or ``"cosine"`` (from ``learning_rate`` down
            to 0 at ``max_steps``, half a cosine).
        warmup_steps: the learning rate grows linearly over these first
            steps, ``(step + 1) / warmup_steps`` of the schedule's.
        trunk_lr_scale: the trunk's learning rate is ``learning_rate`` times
            this; the classifier (``logits``) gets ``learning_rate``.
        freeze_until: an endpoint such as ``"Mixed_4f"``: the trunk up to and
            including it is not trained (no gradients, BatchNorm statistics
            kept); ``""``: train everything.
        label_smoothing: for clip losses (not Charades'), see
            :class:`i3d.train.loss.ClipObjective`.
        val_clips: clips per validation video, their scores averaged (not
            Charades', which runs whole videos), see :mod:`i3d.train.clips`.
        bn_momentum: the BatchNorm layers' running-average momentum while
            training; ``None`` keeps the model's (I3D's 0.01, TensorFlow's
            decay 0.99). A short run from scratch wants more, e.g. 0.1: at
            0.01 the running statistics that evaluation uses are still far
            from the batches' after a few hundred steps.
    """

    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-7
    lr_milestones: tuple[int, ...] = (300, 1000)
    lr_gamma: float = 0.1
    batch_size: int = 40
    accumulation_steps: int = 4
    max_steps: int = 64_000
    clip_frames: int = CLIP_FRAMES
    crop: int = 224
    localization_weight: float = 0.5
    classification_weight: float = 0.5
    num_classes: int = NUM_CLASSES
    dropout_keep_prob: float = 0.5
    rgb_weights: str = "rgb_imagenet"
    flow_weights: str = "flow_imagenet"
    schedule: str = "steps"
    warmup_steps: int = 0
    trunk_lr_scale: float = 1.0
    freeze_until: str = ""
    label_smoothing: float = 0.0
    val_clips: int = 3
    bn_momentum: float | None = None

    def __post_init__(self) -> None:
        positive_ints = (
            "batch_size",
            "accumulation_steps",
            "max_steps",
            "clip_frames",
            "crop",
            "num_classes",
            "val_clips",
        )
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RecipeError(name, f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise RecipeError("learning_rate", f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.momentum < 1:
            raise RecipeError("momentum", f"momentum must be in [0, 1), got {self.momentum}")
        if not self.weight_decay >= 0:
            raise RecipeError("weight_decay", f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.lr_gamma <= 1:
            raise RecipeError("lr_gamma", f"lr_gamma must be in (0, 1], got {self.lr_gamma}")
        milestones = tuple(self.lr_milestones)
        integers = all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in milestones)
        if not integers or list(milestones) != sorted(set(milestones)):
            raise RecipeError(
                "lr_milestones",
                f"lr_milestones must be increasing positive integers, got {self.lr_milestones!r}",
            )
        # A list from JSON becomes the tuple the dataclass is declared with.
        object.__setattr__(self, "lr_milestones", milestones)
        for name in ("localization_weight", "classification_weight"):
            if not getattr(self, name) >= 0:
                raise RecipeError(name, f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.dropout_keep_prob <= 1:
            raise RecipeError("dropout_keep_prob", f"dropout_keep_prob must be in (0, 1], got {self.dropout_keep_prob}")
        if self.schedule not in SCHEDULES:
            raise RecipeError("schedule", f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        warmup = self.warmup_steps
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise RecipeError("warmup_steps", f"warmup_steps must be an integer >= 0, got {warmup!r}")
        if not 0 <= self.trunk_lr_scale < float("inf"):
            raise RecipeError(
                "trunk_lr_scale",
                f"trunk_lr_scale must be a finite number >= 0, got {self.trunk_lr_scale}",
            )
        if not 0 <= self.label_smoothing < 1:
            raise RecipeError("label_smoothing", f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.bn_momentum is not None and not 0 <= self.bn_momentum <= 1:
            raise RecipeError("bn_momentum", f"bn_momentum must be in [0, 1], got {self.bn_momentum}")
        if self.freeze_until and self.freeze_until not in ENDPOINTS:
            raise RecipeError(
                "freeze_until",
                f"freeze_until must be an endpoint ({', '.join(ENDPOINTS[:-2])}), got {self.freeze_until!r}",
            )

    @property
    def clips_per_step(self) -> int:
        """Clips behind one optimizer step (160 in the published recipe)."""
        return self.batch_size * self.accumulation_steps

    def weights(self, modality: Modality) -> str:
        """The registry name to start from for ``"rgb"`` or ``"flow"``."""
        return self.rgb_weights if modality == "rgb" else self.flow_weights

    def preprocess(self, modality: Modality) -> Preprocess:
        """The Charades preset for ``modality`` with this recipe's crop.

        Training clips get the preset's scale jitter (short side drawn from
        ``[256, 320]``), a random crop and a flip; the port instead cropped
        frames at their stored size (at least 226 pixels, charades_dataset.py:33).
        """
        preset = CHARADES_RGB if modality == "rgb" else CHARADES_FLOW
        return dataclasses.replace(preset, crop=self.crop)

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, strings and a tuple: safe for JSON and ``torch.load(weights_only=True)``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """The inverse of :meth:`to_dict`. Raises ``ValueError`` on unknown or invalid fields."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown recipe fields: {', '.join(unknown)}")
        return cls(**values)

    def differences(self, other: Recipe, ignore: tuple[str, ...] = ()) -> list[str]:
        """``"name: mine vs other"`` for each field that differs, except those in ``ignore``."""
        return [
            f"{f.name}: {getattr(self, f.name)!r} vs {getattr(other, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name not in ignore and getattr(self, f.name) != getattr(other, f.name)
        ]


CHARADES_RECIPE = Recipe()
