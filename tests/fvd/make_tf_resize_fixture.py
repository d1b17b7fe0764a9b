"""Write tests/fixtures/fvd/tf_resize.npz with a real TensorFlow: what the FVD reference's resize gives.

Run once, in a throwaway virtual environment with ``tensorflow-cpu``
(2.21.0 wrote the committed file); the tests read the file without
TensorFlow::

    python -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/python tests/fvd/make_tf_resize_fixture.py

For each case ``K``: ``inK`` uint8 ``(N, T, H, W, 3)``, ``sizeK`` the
output ``(H, W)``, and ``outK`` the
float32 result of the reference's ``preprocess`` steps before scaling:
``tf.compat.v1.image.resize_bilinear`` (the TF1 op, ``align_corners=False``,
``half_pixel_centers=False``) on all frames. For the 224x224 cases only
the first ``ROWS`` output rows are kept, to keep the file small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "fvd" / "tf_resize.npz"
ROWS = 8
# (input H, W), (output H, W): odd and even, up and down, and FVD's 224 from
# a small frame and from one larger than 224.
CASES = [((7, 9), (13, 10)), ((17, 12), (4, 11)), ((5, 6), (11, 3)), ((24, 30), (224, 224)), ((231, 229), (224, 224))]


def frames(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random where small; a gradient wrapping around 255 where large (it compresses)."""
    if shape[2] * shape[3] < 1000:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    ys, xs = np.mgrid[0 : shape[2], 0 : shape[3]]
    base = (3 * ys + 5 * xs)[None, None, :, :, None] + np.arange(3) * 40
    return np.broadcast_to(base % 256, shape).astype(np.uint8)


def main() -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for k, (in_size, out_size) in enumerate(CASES):
        videos = frames((1, 1, *in_size, 3) if out_size == (224, 224) else (2, 2, *in_size, 3), rng)
        flat = videos.reshape(-1, *in_size, 3)
        out = tf.compat.v1.image.resize_bilinear(flat, out_size, align_corners=False, half_pixel_centers=False)
        out = out.numpy().reshape(*videos.shape[:2], *out_size, 3)
        arrays[f"in{k}"] = videos
        arrays[f"size{k}"] = np.array(out_size)
        arrays[f"out{k}"] = out[:, :, :ROWS] if out_size == (224, 224) else out
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, tensorflow=np.array(tf.__version__), **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes) with TensorFlow {tf.__version__}")


if __name__ == "__main__":
    main()
