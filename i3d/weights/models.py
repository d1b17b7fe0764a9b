"""One way to build a model from weights: a registry name, an entry, a file, or none."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from i3d.convert.state_file import load_state_dict_file
from i3d.errors import WeightsError
from i3d.model import InceptionI3d
from i3d.video.presets import KINETICS_FLOW, KINETICS_RGB, Preprocess
from i3d.weights.entries import REGISTRY, WeightsEntry
from i3d.weights.loading import load_weights, model_shape
from i3d.weights.store import Source, checkpoint_path, fetch_all

__all__ = ["WeightsSpec", "resolve_checkpoint", "prefetch", "inception_i3d", "load_pretrained", "default_transforms"]

WeightsSpec = str | os.PathLike[str] | WeightsEntry  # a registry name, an entry or a file


def resolve_checkpoint(
    weights: WeightsSpec, *, progress: bool = True, source: Source = "auto"
) -> tuple[Path, WeightsEntry | None]:
    """The local file for a registry name, entry or path, and its entry
    (``None`` for a plain path). Registry files are fetched and verified.

    Raises:
        WeightsError: an unknown name, a folder, or weights that cannot be fetched.
    """
    if isinstance(weights, str) and weights in REGISTRY:
        weights = REGISTRY[weights]
    if isinstance(weights, WeightsEntry):
        return checkpoint_path(weights, progress=progress, source=source), weights
    path = Path(weights)
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder, not a .pt/.safetensors file or a registry name")
    if not path.exists() and not path.suffix:
        raise WeightsError(f"unknown weights {str(weights)!r}; registered: {', '.join(REGISTRY)}")
    return path, None


def prefetch(specs: Iterable[object], *, progress: bool = True, flags: Mapping[str, str] | None = None) -> None:
    """Fetch every registry entry among ``specs`` (names, entries; paths are
    skipped) before any work, so that one error lists every missing file of
    a request (e.g. both streams of ``--stream joint``). ``flags`` maps a
    name to the flag that chose it, for the error's hint.

    Raises:
        WeightsError: as :func:`i3d.weights.store.fetch_all`.
    """
    entries = []
    for spec in specs:
        entry = spec if isinstance(spec, WeightsEntry) else REGISTRY.get(spec) if isinstance(spec, str) else None
        if entry is not None and entry not in entries:
            entries.append(entry)
    fetch_all(entries, progress=progress, flags=flags)


def default_transforms(in_channels: int) -> Preprocess:
    """Preprocessing for a checkpoint file that does not say: Kinetics', for
    its modality."""
    return KINETICS_RGB if in_channels == 3 else KINETICS_FLOW


def _pretrained(
    weights: WeightsSpec, in_channels: int | None, progress: bool, **kwargs
) -> tuple[InceptionI3d, WeightsEntry | None, Path]:
    path, entry = resolve_checkpoint(weights, progress=progress)
    source = entry.name if entry else str(path)
    state = load_state_dict_file(path)
    file_channels, file_classes = model_shape(state, source)
    if in_channels is not None and in_channels != file_channels:
        kind = {3: "RGB", 2: "flow"}.get(in_channels, f"{in_channels}-channel")
        raise WeightsError(f"{source}: not {kind} weights ({file_channels} input channels)")
    model = InceptionI3d(num_classes=file_classes, in_channels=file_channels, **kwargs)
    load_weights(model, state, source)
    return model.eval(), entry, path


def inception_i3d(
    *,
    weights: WeightsSpec | None = None,
    num_classes: int | None = None,
    in_channels: int | None = None,
    progress: bool = True,
    **kwargs,
) -> InceptionI3d:
    """Build an :class:`InceptionI3d`, optionally with pretrained weights.

    Args:
        weights: a registry name (see :data:`REGISTRY`), a
            :class:`WeightsEntry`, a path to a ``.safetensors`` / ``.pt``
            file, or ``None`` for random initialisation.
        num_classes: replace the classifier with a fresh one of this size
            after loading (for fine-tuning).
        in_channels: 3 (RGB) or 2 (flow); with weights, a check (a local
            file's classes and channels are read from its tensors).
        progress: show download progress.
        kwargs: passed to :class:`InceptionI3d` (e.g. ``dropout_keep_prob``).

    Returns: the model in eval mode.
    """
    if weights is None:
        model = InceptionI3d(num_classes=num_classes or 400, in_channels=in_channels or 3, **kwargs)
        return model.eval()
    model, _, _ = _pretrained(weights, in_channels, progress, **kwargs)
    if num_classes is not None and num_classes != model.num_classes:
        model.replace_logits(num_classes)
    return model.eval()


def load_pretrained(
    weights: WeightsSpec, *, in_channels: int | None = None, progress: bool = True
) -> tuple[InceptionI3d, Preprocess, WeightsEntry | None, Path]:
    """A pretrained model with what goes with it: ``(model, preprocessing,
    registry entry or None, checkpoint file)``.

    Raises:
        WeightsError: unknown, unreadable or mismatched weights, or weights
            whose input channels are not ``in_channels`` (3 RGB, 2 flow).
    """
    model, entry, path = _pretrained(weights, in_channels, progress)
    preprocess = entry.transforms if entry is not None else default_transforms(model.in_channels)
    return model, preprocess, entry, path
