"""Speed of the TensorFlow checkpoint reader (read + CRC-32C of every tensor).

    python benchmarks/convert_reader.py [path/to/model.ckpt]

Without an argument it times a full-size RGB I3D checkpoint of random weights
(about 50 MB, DeepMind's variable names) written to a temporary folder.
Baseline, timed in the same run: reading the same data file with numpy and
no checks.  Prints MB/s for each and the reader's time relative to it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPEATS = 3


def best_time(function) -> float:
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def synthetic_checkpoint(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from i3d.model import InceptionI3d
    from tests.convert.test_deepmind import deepmind_variables
    from tests.convert.tf_writer import write_checkpoint

    prefix = folder / "model.ckpt"
    write_checkpoint(prefix, deepmind_variables(InceptionI3d(), "RGB/inception_i3d"))
    return prefix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="?", help="a checkpoint prefix; default: a synthetic full-size I3D")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        prefix = Path(args.checkpoint) if args.checkpoint else synthetic_checkpoint(Path(folder))

        from i3d.convert.crc32c import crc32c
        from i3d.convert.tf_checkpoint import CheckpointReader

        reader = CheckpointReader(prefix)
        data_files = [reader.data_path(shard) for shard in range(reader.header.num_shards)]
        megabytes = sum(path.stat().st_size for path in data_files) / 1e6
        blob = data_files[0].read_bytes()

        baseline = best_time(lambda: [np.fromfile(path, dtype=np.uint8) for path in data_files])
        index = best_time(lambda: CheckpointReader(prefix))
        read_all = best_time(reader.read_all)
        crc_only = best_time(lambda: crc32c(blob))
    print(f"{len(reader.entries)} variables, {megabytes:.1f} MB of data")
    print(f"baseline np.fromfile:       {megabytes / baseline:8.0f} MB/s")
    ratio = read_all / baseline
    print(f"CheckpointReader.read_all:  {megabytes / read_all:8.0f} MB/s  ({ratio:.1f}x the baseline's time)")
    print(f"crc32c of one {len(blob) / 1e6:.0f} MB buffer: {len(blob) / 1e6 / crc_only:8.0f} MB/s")
    print(f"index parse:                {index * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
