"""Reader of LevelDB-format sorted tables, the container of TF's ``.index`` files.

Layout (LevelDB ``doc/table_format.md``; TensorFlow's ``lib/io/table`` is the
same format)::

    [data block 1] ... [data block n] [metaindex block] [index block] [footer]

Every block is followed by a 5-byte trailer: a compression byte (0 none,
1 Snappy) and the masked CRC-32C of the block's stored bytes plus that byte.
A block holds entries ``varint shared, varint non_shared, varint value_len,
key[shared:], value`` whose keys share a prefix with the previous key, then
``uint32`` restart offsets (entries stored with ``shared == 0``) and their
count.  The index block maps a separator key to each data block's handle
(``varint offset, varint size``).  The footer holds the metaindex and index
handles, zero padding, and a 64-bit magic number.
"""

from __future__ import annotations

import itertools
import struct

from . import snappy
from ._wire import FormatError, read_varint
from .crc32c import crc32c, mask

TABLE_MAGIC = 0xDB4775248B80FB57
_MAGIC_SIZE = 8
# A block handle is two varint64s of up to 10 bytes each.
_MAX_HANDLE_SIZE = 2 * 10
FOOTER_SIZE = 2 * _MAX_HANDLE_SIZE + _MAGIC_SIZE
BLOCK_TRAILER_SIZE = 1 + 4
NO_COMPRESSION = 0
SNAPPY_COMPRESSION = 1
_UINT32 = struct.Struct("<I")


def _read_handle(data: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = read_varint(data, pos)
    size, pos = read_varint(data, pos)
    return (offset, size), pos


def _block(table: bytes, handle: tuple[int, int], what: str) -> bytes:
    """The uncompressed contents of the block at ``handle``, checksum verified."""
    offset, size = handle
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(table) - FOOTER_SIZE:
        raise FormatError(f"{what} at bytes [{offset}, {end}) runs past the end of the table")
    stored = table[offset : end + 1]  # contents plus the compression byte
    compression = table[end]
    (expected,) = _UINT32.unpack_from(table, end + 1)
    if mask(crc32c(stored)) != expected:
        raise FormatError(f"{what} at byte {offset}: block checksum mismatch")
    if compression == NO_COMPRESSION:
        return stored[:-1]
    if compression == SNAPPY_COMPRESSION:
        try:
            return snappy.decompress(stored[:-1])
        except FormatError as err:
            raise FormatError(f"{what} at byte {offset}: bad Snappy data: {err}") from None
    raise FormatError(f"{what} at byte {offset}: unknown compression type {compression}")


def _entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """Decode the ``(key, value)`` entries of one block, checking its restarts."""
    if len(block) < _UINT32.size:
        raise FormatError(f"{what} is {len(block)} bytes, too short for a restart count")
    (num_restarts,) = _UINT32.unpack_from(block, len(block) - _UINT32.size)
    restarts_start = len(block) - _UINT32.size * (1 + num_restarts)
    if num_restarts == 0 or restarts_start < 0:
        raise FormatError(f"{what} has an invalid restart count {num_restarts}")
    restarts = struct.unpack_from(f"<{num_restarts}I", block, restarts_start)

    entries: list[tuple[bytes, bytes]] = []
    full_key_starts = set()
    key = b""
    pos = 0
    try:
        while pos < restarts_start:
            start = pos
            shared, pos = read_varint(block, pos)
            non_shared, pos = read_varint(block, pos)
            value_length, pos = read_varint(block, pos)
            if shared > len(key):
                raise FormatError(f"entry at byte {start} shares {shared} bytes of a {len(key)}-byte key")
            value_start = pos + non_shared
            value_end = value_start + value_length
            if value_end > restarts_start:
                raise FormatError(f"entry at byte {start} runs into the restart array")
            key = key[:shared] + block[pos:value_start]
            entries.append((key, block[value_start:value_end]))
            if shared == 0:
                full_key_starts.add(start)
            pos = value_end
    except FormatError as err:
        raise FormatError(f"{what}: {err}") from None
    # LevelDB's empty block still has its single restart at offset 0.
    if not entries:
        full_key_starts.add(0)
    bad = [offset for offset in restarts if offset not in full_key_starts]
    if bad:
        raise FormatError(f"{what}: restart offset {bad[0]} is not the start of an entry with a full key")
    return entries


def read_table(table: bytes) -> list[tuple[bytes, bytes]]:
    """All ``(key, value)`` entries of a table, in key order.

    Raises:
        FormatError: bad magic, a block checksum mismatch, unknown compression,
            truncation, malformed entries, or keys out of order.
    """
    if len(table) < FOOTER_SIZE:
        raise FormatError(f"{len(table)} bytes is too short for a table footer")
    footer_start = len(table) - FOOTER_SIZE
    magic = int.from_bytes(table[-_MAGIC_SIZE:], "little")
    if magic != TABLE_MAGIC:
        raise FormatError(f"bad table magic number 0x{magic:016x}")
    try:
        # The metaindex handle comes first; TF writes no meta blocks, so skip it.
        _, pos = _read_handle(table, footer_start)
        index_handle, _ = _read_handle(table, pos)
    except FormatError as err:
        raise FormatError(f"footer: {err}") from None

    entries: list[tuple[bytes, bytes]] = []
    for number, (_, encoded_handle) in enumerate(_entries(_block(table, index_handle, "index block"), "index block")):
        what = f"data block {number}"
        try:
            handle, used = _read_handle(encoded_handle, 0)
        except FormatError as err:
            raise FormatError(f"index entry of {what}: {err}") from None
        if used != len(encoded_handle):
            raise FormatError(f"index entry of {what} has {len(encoded_handle) - used} trailing bytes")
        entries.extend(_entries(_block(table, handle, what), what))
    for (previous, _), (key, _) in itertools.pairwise(entries):
        if key <= previous:
            raise FormatError(f"keys out of order: {key!r} after {previous!r}")
    return entries
