"""i3d: an exact, fast Inflated 3D ConvNet (Carreira and Zisserman, CVPR 2017).

The public API, importable from the package root::

    from i3d import InceptionI3d, inception_i3d, get_weights, open_input, run_chunks
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from i3d.lazy import lazy_exports
from i3d.version import __version__

# Resolved on first use, so that `import i3d` (and `i3d --version`) stays
# cheap and imports neither torch nor the video stack until needed.
_EXPORTS = {
    "InceptionI3d": "i3d.model",
    "inception_i3d": "i3d.weights",
    "get_weights": "i3d.weights",
    "REGISTRY": "i3d.weights",
    "ChunkedI3d": "i3d.chunked",
    "run_chunks": "i3d.chunked",
    "open_input": "i3d.video",
    "load_input": "i3d.video",
    "Classifier": "i3d.predict",
    "Extractor": "i3d.extract",
}

__all__ = [
    "__version__",
    "InceptionI3d",
    "inception_i3d",
    "get_weights",
    "REGISTRY",
    "ChunkedI3d",
    "run_chunks",
    "open_input",
    "load_input",
    "Classifier",
    "Extractor",
]

if TYPE_CHECKING:
    from i3d.chunked import ChunkedI3d, run_chunks
    from i3d.extract import Extractor
    from i3d.model import InceptionI3d
    from i3d.predict import Classifier
    from i3d.video import load_input, open_input
    from i3d.weights import REGISTRY, get_weights, inception_i3d


__getattr__ = lazy_exports(__name__, _EXPORTS)
