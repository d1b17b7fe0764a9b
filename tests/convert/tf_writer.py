"""A minimal writer of TensorFlow tensor-bundle checkpoints, for tests only.

It writes what TensorFlow's ``SaveV2`` writes for a single shard (one
uncompressed index block, LevelDB's restart interval of 16 and short
separator keys), byte for byte; ``test_tf_checkpoint.py`` checks that against
the committed TensorFlow fixtures.  Tests use it to make checkpoints too large
to commit, such as a full-size DeepMind-named I3D.  ``make_tf_fixtures.py``
uses :func:`write_table` to re-encode TensorFlow's indexes in small or
Snappy-compressed blocks.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from i3d.convert.crc32c import crc32c, mask
from i3d.convert.sstable import NO_COMPRESSION, SNAPPY_COMPRESSION, TABLE_MAGIC

LEVELDB_RESTART_INTERVAL = 16
FOOTER_HANDLES_SIZE = 40  # two varint64 block handles, zero padded
# TensorFlow's table block size: a checkpoint's index fits in one block.
TF_BLOCK_BYTES = 256 * 1024
DTYPE_ENUMS = {np.dtype("<f4"): 1, np.dtype("<i4"): 3, np.dtype("<i8"): 9, np.dtype("<f2"): 19}
BUNDLE_PRODUCER = 1


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes | int) -> bytes:
    """A proto3 field; zero numbers are omitted as protobuf does."""
    if isinstance(payload, bytes):
        return varint(number << 3 | 2) + varint(len(payload)) + payload
    return varint(number << 3) + varint(payload) if payload else b""


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """LevelDB's ``FindShortestSeparator``: a short key in ``[start, limit)``."""
    common = 0
    while common < min(len(start), len(limit)) and start[common] == limit[common]:
        common += 1
    if common < min(len(start), len(limit)) and start[common] < 0xFF and start[common] + 1 < limit[common]:
        return start[:common] + bytes([start[common] + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    """LevelDB's ``FindShortSuccessor``: a short key ``>= key``."""
    for index, byte in enumerate(key):
        if byte != 0xFF:
            return key[:index] + bytes([byte + 1])
    return key


def encode_block(entries: list[tuple[bytes, bytes]], restart_interval: int = LEVELDB_RESTART_INTERVAL) -> bytes:
    out = bytearray()
    restarts = []
    previous = b""
    for number, (key, value) in enumerate(entries):
        shared = 0
        if number % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    restarts = restarts or [0]
    return bytes(out + struct.pack(f"<{len(restarts)}I", *restarts) + struct.pack("<I", len(restarts)))


def write_table(
    entries: list[tuple[bytes, bytes]],
    *,
    block_bytes: int = TF_BLOCK_BYTES,
    restart_interval: int = LEVELDB_RESTART_INTERVAL,
    compress: Callable[[bytes], bytes] | None = None,
) -> tuple[bytes, int]:
    """A LevelDB table of sorted ``entries``; returns it and its data-block count.

    ``compress`` (raw Snappy) compresses every block, the index included.
    """
    table = bytearray()
    compression = NO_COMPRESSION if compress is None else SNAPPY_COMPRESSION

    def append_block(block: bytes) -> bytes:
        stored = block if compress is None else compress(block)
        handle = varint(len(table)) + varint(len(stored))
        stored += bytes([compression])
        table.extend(stored + struct.pack("<I", mask(crc32c(stored))))
        return handle

    blocks: list[list[tuple[bytes, bytes]]] = [[]]
    for entry in entries:
        blocks[-1].append(entry)
        if len(encode_block(blocks[-1], restart_interval)) >= block_bytes:
            blocks.append([])
    blocks = [block for block in blocks if block]
    index = []
    for number, block in enumerate(blocks):
        last = block[-1][0]
        separator = (
            _shortest_separator(last, blocks[number + 1][0][0]) if number + 1 < len(blocks) else _short_successor(last)
        )
        index.append((separator, append_block(encode_block(block, restart_interval))))
    handles = append_block(encode_block([])) + append_block(encode_block(index, 1))
    table.extend(handles + bytes(FOOTER_HANDLES_SIZE - len(handles)) + struct.pack("<Q", TABLE_MAGIC))
    return bytes(table), len(blocks)


def write_checkpoint(prefix: str | os.PathLike[str], tensors: Mapping[str, np.ndarray]) -> None:
    """Write a one-shard checkpoint ``<prefix>.index`` + ``<prefix>.data-00000-of-00001``."""
    prefix = Path(prefix)
    data = bytearray()
    entries = [(b"", _field(1, 1) + _field(3, _field(1, BUNDLE_PRODUCER)))]
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        shape = b"".join(_field(2, _field(1, size)) for size in array.shape)
        entry = _field(1, DTYPE_ENUMS[array.dtype.newbyteorder("<")]) + _field(2, shape)
        entry += _field(4, len(data)) + _field(5, len(raw)) + varint(6 << 3 | 5) + struct.pack("<I", mask(crc32c(raw)))
        entries.append((name.encode(), entry))
        data += raw
    table, _ = write_table(entries)
    prefix.with_name(prefix.name + ".index").write_bytes(table)
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(data)
