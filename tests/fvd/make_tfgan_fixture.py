"""Write tests/fixtures/fvd/tfgan.npz: tfgan's own Fréchet and kernel distances on small activation sets.

Run once, in a throwaway virtual environment with ``tensorflow-cpu`` and
``tensorflow-gan`` (2.21.0 and 2.1.0 wrote the committed file; tfgan's
package ``__init__`` wants more than its metrics need, so its
``classifier_metrics`` module is imported on its own)::

    /tmp/tf/bin/pip install tensorflow-cpu tensorflow-gan tensorflow-probability tf-keras
    /tmp/tf/bin/python tests/fvd/make_tfgan_fixture.py

For each case ``K``: activations ``aK``, ``bK`` (float32, as the FVD
reference's embedding is), ``blockK`` (``max_block_size``), and tfgan's
``frechet_classifier_distance_from_activations`` (``fidK``, computed from
the activations cast to float64) and
``kernel_classifier_distance_and_std_from_activations`` (``kidK``,
``kid_stdK``, with ``dtype=float64``).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from importlib.metadata import version
from pathlib import Path

import numpy as np
import tensorflow as tf

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "fvd" / "tfgan.npz"
# (rows of a, rows of b, dimensions, max_block_size): more videos than
# dimensions, fewer (singular covariances), several KID blocks.
CASES = [(60, 50, 16, 1024), (10, 12, 16, 1024), (13, 11, 6, 5), (41, 37, 8, 10)]


def classifier_metrics() -> types.ModuleType:
    """tfgan's ``classifier_metrics`` alone: the package's ``__init__`` wants more than the metrics need."""
    root = Path(importlib.util.find_spec("tensorflow_gan").submodule_search_locations[0])
    for name in ("tensorflow_gan", "tensorflow_gan.python", "tensorflow_gan.python.eval"):
        module = types.ModuleType(name)
        module.__path__ = [str(root.joinpath(*name.split(".")[1:]))]
        sys.modules[name] = module
    from tensorflow_gan.python.eval import classifier_metrics as metrics

    return metrics


def main() -> None:
    metrics = classifier_metrics()
    rng = np.random.default_rng(0)
    arrays = {}
    for k, (n1, n2, dim, block) in enumerate(CASES):
        mix = rng.normal(size=(dim, dim)) / np.sqrt(dim)
        a = (rng.normal(size=(n1, dim)) @ mix * 3 + 1).astype(np.float32)
        b = (rng.normal(size=(n2, dim)) @ mix * 2 + rng.normal(size=dim)).astype(np.float32)
        a64, b64 = tf.constant(a, tf.float64), tf.constant(b, tf.float64)
        fid = metrics.frechet_classifier_distance_from_activations(a64, b64)
        kid, kid_std = metrics.kernel_classifier_distance_and_std_from_activations(
            tf.constant(a), tf.constant(b), max_block_size=block, dtype=tf.float64
        )
        arrays.update({f"a{k}": a, f"b{k}": b, f"block{k}": np.array(block)})
        arrays.update({f"fid{k}": fid.numpy(), f"kid{k}": kid.numpy(), f"kid_std{k}": kid_std.numpy()})
    versions = f"tensorflow {tf.__version__}, tensorflow-gan {version('tensorflow-gan')}"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, versions=np.array(versions), **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) with {versions}")


if __name__ == "__main__":
    main()
