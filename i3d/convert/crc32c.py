"""CRC-32C (Castagnoli), the checksum of TensorFlow's checkpoints and tables.

Pure numpy, no compiled extension.  A byte-at-a-time table loop is serial and
far too slow in Python for the ~50 MB data file of a checkpoint, so the input
is cut into equal chunks whose CRCs are computed side by side (one numpy lane
per chunk, one Python iteration per four bytes), and the chunk CRCs are
then merged pairwise with the "append n zero bytes" operator, which is linear
over GF(2) and so can be applied through byte lookup tables.

The register update without pre/post inversion, ``u(r, data)``, is linear:
``u(r, a + b) = Z_len(b)(u(r, a)) ^ u(0, b)`` where ``Z_n`` advances a register
through ``n`` zero bytes, and ``u(0, zeros + data) = u(0, data)``.  The standard
CRC is ``u(0xFFFFFFFF, data) ^ 0xFFFFFFFF``.
"""

from __future__ import annotations

import functools

import numpy as np

# Reflected form of the Castagnoli polynomial 0x1EDC6F41.
POLYNOMIAL = 0x82F63B78
_ALL_ONES = 0xFFFFFFFF
_BITS = 32
_BYTE_VALUES = 256

# LevelDB / TensorFlow store a "masked" CRC so that a CRC of data that itself
# contains CRCs does not degenerate: rotate right by 15 bits, add a constant.
_MASK_DELTA = 0xA282EAD8
_MASK_ROTATION = 15

# Chunk length (bytes) of one numpy lane.  Longer chunks mean fewer lanes and
# more Python iterations; 256 keeps the per-iteration numpy work well above the
# interpreter overhead for inputs of a few hundred kilobytes and more.
_CHUNK = 256
# Large inputs go through the lanes a segment at a time, which bounds the
# copies made for the lanes and keeps them in cache (measured ~15% faster
# than one pass over a 50 MB buffer).
_SEGMENT = 1 << 20
# Below this many bytes the plain loop is faster: the lanes cost a fixed
# _CHUNK / 4 numpy iterations (about 0.5 ms), the loop about 90 ns a byte.
_SMALL = 8 * 1024


@functools.cache
def _byte_table() -> np.ndarray:
    """``T[b]``: the register after feeding byte ``b`` into a zero register."""
    table = np.arange(_BYTE_VALUES, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ np.uint32(POLYNOMIAL), table >> 1).astype(np.uint32)
    return table


@functools.cache
def _slice_tables() -> np.ndarray:
    """Slicing-by-4 tables: row ``k`` advances byte ``b`` through ``k`` more zero bytes."""
    tables = np.empty((4, _BYTE_VALUES), dtype=np.uint32)
    tables[0] = _byte_table()
    for k in range(1, 4):
        tables[k] = (tables[k - 1] >> 8) ^ tables[0][tables[k - 1] & 0xFF]
    return tables


@functools.cache
def _byte_list() -> tuple[int, ...]:
    return tuple(_byte_table().tolist())


def _update_bytes(register: int, data: bytes | memoryview) -> int:
    """Serial table update, for short inputs."""
    table = _byte_list()
    for byte in bytes(data):
        register = table[(register ^ byte) & 0xFF] ^ (register >> 8)
    return register


# --- the zero-byte operator Z_n as a 32x32 matrix over GF(2) ------------------
# A matrix is a tuple of 32 ints: column j is the image of the register bit 1 << j.


def _apply(matrix: tuple[int, ...], vector: int) -> int:
    result = 0
    column = 0
    while vector:
        if vector & 1:
            result ^= matrix[column]
        vector >>= 1
        column += 1
    return result


def _compose(outer: tuple[int, ...], inner: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(_apply(outer, column) for column in inner)


@functools.cache
def _zeros_operator(log2_length: int) -> tuple[int, ...]:
    """``Z_n`` for ``n = 2**log2_length`` zero bytes."""
    if log2_length == 0:
        return tuple(_update_bytes(1 << bit, b"\x00") for bit in range(_BITS))
    half = _zeros_operator(log2_length - 1)
    return _compose(half, half)


def _advance(register: int, length: int) -> int:
    """``Z_length(register)``: feed ``length`` zero bytes, in O(log length)."""
    bit = 0
    while length:
        if length & 1:
            register = _apply(_zeros_operator(bit), register)
        length >>= 1
        bit += 1
    return register


@functools.cache
def _operator_tables(log2_length: int) -> np.ndarray:
    """``Z_n`` for ``n = 2**log2_length`` as four byte tables, to apply it to many registers at once."""
    matrix = _zeros_operator(log2_length)
    tables = np.empty((4, _BYTE_VALUES), dtype=np.uint32)
    for k in range(4):
        tables[k] = [_apply(matrix, value << (8 * k)) for value in range(_BYTE_VALUES)]
    return tables


def _apply_tables(tables: np.ndarray, registers: np.ndarray) -> np.ndarray:
    return (
        tables[0][registers & 0xFF]
        ^ tables[1][(registers >> 8) & 0xFF]
        ^ tables[2][(registers >> 16) & 0xFF]
        ^ tables[3][registers >> 24]
    )


def _update_zero_lanes(data: np.ndarray) -> int:
    """``u(0, data)`` for a uint8 array, computed in parallel lanes."""
    lanes = -(-data.size // _CHUNK)
    padded = np.zeros(lanes * _CHUNK, dtype=np.uint8)
    # Leading zeros leave a zero register unchanged, so pad at the front.
    padded[padded.size - data.size :] = data
    # (words, lanes): each lane walks its chunk four bytes at a time.
    words = np.ascontiguousarray(padded.view("<u4").reshape(lanes, _CHUNK // 4).T)
    t0, t1, t2, t3 = _slice_tables()
    registers = np.zeros(lanes, dtype=np.uint32)
    for word in words:
        registers ^= word
        registers = (
            t3[registers & 0xFF] ^ t2[(registers >> 8) & 0xFF] ^ t1[(registers >> 16) & 0xFF] ^ t0[registers >> 24]
        )
    # Merge neighbouring lanes: left is advanced over the right's length.
    log2_span = _CHUNK.bit_length() - 1
    while registers.size > 1:
        if registers.size % 2:
            # A zero chunk in front changes nothing and evens the count.
            registers = np.concatenate([np.zeros(1, dtype=np.uint32), registers])
        registers = _apply_tables(_operator_tables(log2_span), registers[0::2]) ^ registers[1::2]
        log2_span += 1
    return int(registers[0])


def crc32c(data: bytes | bytearray | memoryview | np.ndarray) -> int:
    """The CRC-32C of ``data`` (any contiguous buffer), as an unsigned 32-bit int."""
    view = memoryview(data).cast("B")
    if view.nbytes < _SMALL:
        return _update_bytes(_ALL_ONES, view) ^ _ALL_ONES
    array = np.frombuffer(view, dtype=np.uint8)
    register = _ALL_ONES
    for start in range(0, array.size, _SEGMENT):
        segment = array[start : start + _SEGMENT]
        register = _advance(register, segment.size) ^ _update_zero_lanes(segment)
    return register ^ _ALL_ONES


def mask(crc: int) -> int:
    """LevelDB's masked form of a CRC, as stored in tables and checkpoints."""
    rotated = ((crc >> _MASK_ROTATION) | (crc << (_BITS - _MASK_ROTATION))) & _ALL_ONES
    return (rotated + _MASK_DELTA) & _ALL_ONES


def unmask(masked: int) -> int:
    """Inverse of :func:`mask`."""
    rotated = (masked - _MASK_DELTA) & _ALL_ONES
    return ((rotated >> (_BITS - _MASK_ROTATION)) | (rotated << _MASK_ROTATION)) & _ALL_ONES
