"""Write the TensorFlow checkpoint fixtures of tests/fixtures/tf/ with a real TensorFlow.

Run by hand, once; the tests only read the committed output and never need
TensorFlow, which is not a dependency of i3d.  In a throwaway environment::

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu cramjam
    /tmp/tfenv/bin/python tests/convert/make_tf_fixtures.py

Checkpoints are written by TensorFlow's own ``SaveV2`` / ``MergeV2Checkpoints``
ops, and every expected value in the ``.npz`` files is what
``tf.train.load_checkpoint`` reads back.  TensorFlow writes its index tables
uncompressed in one large block, so the multi-block and Snappy-compressed
tables are TensorFlow's index re-encoded here (blocks compressed by the
``cramjam`` Snappy library) and then read back and checked value by value
with TensorFlow's reader, which verifies every block checksum.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import cramjam
import numpy as np
import tensorflow as tf

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
# Only to list TensorFlow's index entries and write them anew; TensorFlow's
# reader then checks every re-encoded table (blocks, checksums, values).
from i3d.convert.sstable import read_table  # noqa: E402
from tests.convert.tf_writer import write_table  # noqa: E402

OUT = REPO / "tests" / "fixtures" / "tf"
SEED = 20170522  # any fixed number: the fixtures must be reproducible

# Small blocks and a short restart interval, so that a ~150-entry index spans
# several data blocks, each with several restart points.
REWRITE_BLOCK_BYTES = 512
REWRITE_RESTART_INTERVAL = 4


def snappy_compress(block: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(block))


def save(prefix: Path, tensors: dict[str, object]) -> None:
    names = sorted(tensors)
    tf.raw_ops.SaveV2(
        prefix=str(prefix),
        tensor_names=names,
        shape_and_slices=[""] * len(names),
        tensors=[tf.constant(tensors[name]) for name in names],
    )


def read_back(prefix: Path, names) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {name: reader.get_tensor(name) for name in names}


def check_same(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray]) -> None:
    assert expected.keys() == actual.keys(), (sorted(expected), sorted(actual))
    for name, value in expected.items():
        other = np.asarray(actual[name])
        assert value.dtype == other.dtype and value.shape == other.shape, name
        assert value.tobytes() == other.tobytes(), name


def save_expected(path: Path, values: dict[str, np.ndarray]) -> None:
    np.savez_compressed(path, **values)
    loaded = np.load(path)
    check_same(values, {name: loaded[name] for name in loaded.files})


def rewrite_index(source: Path, destination: Path, compress) -> int:
    """Copy checkpoint ``source`` to ``destination`` with its index re-encoded; returns the block count."""
    entries = read_table((source.parent / (source.name + ".index")).read_bytes())
    table, blocks = write_table(
        entries, block_bytes=REWRITE_BLOCK_BYTES, restart_interval=REWRITE_RESTART_INTERVAL, compress=compress
    )
    (destination.parent / (destination.name + ".index")).write_bytes(table)
    for data in source.parent.glob(source.name + ".data-*"):
        shutil.copyfile(data, destination.parent / data.name.replace(source.name, destination.name, 1))
    return blocks


# --- the fixtures -------------------------------------------------------------


def dtypes_fixture(rng: np.random.Generator) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, 3.4028235e38, -1.5], dtype=np.float32)
    readable = {
        "float32/scalar": np.float32(-2.75),
        "float32/special": special,
        "float32/matrix": rng.standard_normal((3, 5)).astype(np.float32),
        "float32/conv_3d/w": rng.standard_normal((2, 3, 2, 4, 5)).astype(np.float32),
        # 32 KiB: large enough for the reader's vectorised CRC path.
        "float32/large": rng.standard_normal((64, 128)).astype(np.float32),
        "float32/empty": np.zeros((0, 3), dtype=np.float32),
        "float16/vector": np.array([0.5, -1.0, 65504.0, 6e-8, np.inf, -0.0, 3.14159], dtype=np.float16),
        "float16/matrix": rng.standard_normal((4, 3)).astype(np.float16),
        "int32/matrix": np.concatenate(
            [[[0, 1, -1, 2**31 - 1, -(2**31), 7]], rng.integers(-1000, 1000, (3, 6))]
        ).astype(np.int32),
        "int32/scalar": np.int32(-7),
        "int64/vector": np.array([0, -1, 2**40 + 3, -(2**63), 2**63 - 1], dtype=np.int64),
        "int64/global_step": np.int64(123456789012),
    }
    unreadable = {"float64/vector": np.array([1.0, 2.5, -3.0]), "string/scalar": b"not a number"}
    return {**readable, **unreadable}, readable


def many_fixture(rng: np.random.Generator) -> dict[str, np.ndarray]:
    tensors = {}
    for block in ("3b", "3c", "4b", "4c", "4d", "4e", "4f", "5b", "5c"):
        for branch in range(4):
            for leaf in ("conv_3d/w", "batch_norm/beta", "batch_norm/moving_mean", "batch_norm/moving_variance"):
                name = f"Scope/with_a_long_name/Mixed_{block}/Branch_{branch}/Conv3d_0a_1x1/{leaf}"
                tensors[name] = rng.standard_normal(3).astype(np.float32)
    return tensors


def mini_i3d_fixture(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A handful of DeepMind-named I3D variables, with small shapes."""
    scope = "RGB/inception_i3d"
    tensors = {}

    def unit(path: str, kernel: tuple[int, int, int], cin: int, cout: int, stats_shape: tuple[int, ...]) -> None:
        tensors[f"{scope}/{path}/conv_3d/w"] = rng.standard_normal((*kernel, cin, cout)).astype(np.float32)
        tensors[f"{scope}/{path}/batch_norm/beta"] = rng.standard_normal(stats_shape).astype(np.float32)
        tensors[f"{scope}/{path}/batch_norm/moving_mean"] = rng.standard_normal(stats_shape).astype(np.float32)
        tensors[f"{scope}/{path}/batch_norm/moving_variance"] = rng.uniform(0.5, 2.0, stats_shape).astype(np.float32)

    # Release-style (C,) statistics and Kinetics-600-style (1, 1, 1, 1, C) ones.
    unit("Conv3d_1a_7x7", (3, 3, 3), 3, 4, (4,))
    unit("Mixed_5b/Branch_2/Conv3d_0a_3x3", (3, 3, 3), 4, 5, (1, 1, 1, 1, 5))
    tensors[f"{scope}/Logits/Conv3d_0c_1x1/conv_3d/w"] = rng.standard_normal((1, 1, 1, 5, 6)).astype(np.float32)
    tensors[f"{scope}/Logits/Conv3d_0c_1x1/conv_3d/b"] = rng.standard_normal(6).astype(np.float32)
    tensors[f"{scope}/Conv3d_1a_7x7/conv_3d/w/Momentum"] = np.zeros((3, 3, 3, 3, 4), dtype=np.float32)
    tensors["global_step"] = np.int64(1000)
    return tensors


def main() -> None:
    rng = np.random.default_rng(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.ckpt.*"):
        old.unlink()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)

        written, readable = dtypes_fixture(rng)
        save(OUT / "dtypes.ckpt", written)
        values = read_back(OUT / "dtypes.ckpt", readable)
        check_same({name: np.asarray(value) for name, value in readable.items()}, values)
        save_expected(OUT / "dtypes.npz", values)

        shards = {
            "shard0": {"first/a": np.arange(6, dtype=np.float32).reshape(2, 3)},
            "shard1": {"second/b": np.array([5, -6, 7], dtype=np.int64), "second/c": np.float16(0.25)},
        }
        for shard, tensors in shards.items():
            save(scratch / shard, tensors)
        tf.raw_ops.MergeV2Checkpoints(
            checkpoint_prefixes=[str(scratch / shard) for shard in shards], destination_prefix=str(OUT / "sharded.ckpt")
        )
        merged = {name: np.asarray(value) for tensors in shards.values() for name, value in tensors.items()}
        values = read_back(OUT / "sharded.ckpt", merged)
        check_same(merged, values)
        save_expected(OUT / "sharded.npz", values)

        many = many_fixture(rng)
        save(OUT / "many.ckpt", many)
        values = read_back(OUT / "many.ckpt", many)
        check_same(many, values)
        save_expected(OUT / "many.npz", values)
        for name, compress in (("many_blocks.ckpt", None), ("many_snappy.ckpt", snappy_compress)):
            blocks = rewrite_index(OUT / "many.ckpt", OUT / name, compress)
            assert blocks > 1, blocks
            check_same(many, read_back(OUT / name, many))
            print(f"{name}: {blocks} data blocks")

        mini = mini_i3d_fixture(rng)
        save(OUT / "mini_i3d.ckpt", mini)
        values = read_back(OUT / "mini_i3d.ckpt", mini)
        check_same({name: np.asarray(value) for name, value in mini.items()}, values)
        save_expected(OUT / "mini_i3d.npz", values)

    total = sum(path.stat().st_size for path in OUT.iterdir())
    print(f"TensorFlow {tf.__version__}: wrote {len(list(OUT.iterdir()))} files, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
