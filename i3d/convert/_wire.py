"""Varints and protocol-buffer wire format: just enough to read TF's protos."""

from __future__ import annotations

from collections.abc import Iterator

# Protocol-buffer wire types (field key = field_number << 3 | wire_type).
WIRE_VARINT = 0
WIRE_FIXED64 = 1
WIRE_BYTES = 2
WIRE_FIXED32 = 5
_WIRE_TYPE_BITS = 3
_FIXED_WIDTH = {WIRE_FIXED64: 8, WIRE_FIXED32: 4}

# A varint carries 7 bits per byte, so 64 bits need at most ceil(64 / 7) bytes.
MAX_VARINT64_BYTES = 10
MAX_VARINT32_BYTES = 5
_INT64_RANGE = 1 << 64
_INT64_SIGN = 1 << 63


class FormatError(ValueError):
    """Bytes that do not follow the format being read; the message says why."""


def read_varint(data: bytes, pos: int, max_bytes: int = MAX_VARINT64_BYTES) -> tuple[int, int]:
    """Decode the little-endian base-128 varint at ``data[pos]``.

    Returns:
        ``(value, position after the varint)``.
    """
    value = 0
    for index in range(max_bytes):
        if pos + index >= len(data):
            raise FormatError(f"truncated varint at byte {pos}")
        byte = data[pos + index]
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value, pos + index + 1
    raise FormatError(f"varint at byte {pos} is longer than {max_bytes} bytes")


def as_int64(value: int) -> int:
    """Reinterpret a decoded varint as a two's-complement ``int64``."""
    return value - _INT64_RANGE if value >= _INT64_SIGN else value


def iter_fields(message: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield ``(field_number, wire_type, value)`` for each field of a message.

    Varint and fixed-width values come as unsigned ints, length-delimited ones
    as bytes.  Unknown fields are yielded too; callers skip what they ignore.
    """
    pos = 0
    end = len(message)
    while pos < end:
        key, pos = read_varint(message, pos)
        number, wire_type = key >> _WIRE_TYPE_BITS, key & ((1 << _WIRE_TYPE_BITS) - 1)
        if wire_type == WIRE_VARINT:
            value, pos = read_varint(message, pos)
            yield number, wire_type, value
        elif wire_type == WIRE_BYTES:
            length, pos = read_varint(message, pos)
            if pos + length > end:
                raise FormatError(f"field {number} runs past the end of its message")
            yield number, wire_type, message[pos : pos + length]
            pos += length
        elif wire_type in _FIXED_WIDTH:
            width = _FIXED_WIDTH[wire_type]
            if pos + width > end:
                raise FormatError(f"field {number} runs past the end of its message")
            yield number, wire_type, int.from_bytes(message[pos : pos + width], "little")
            pos += width
        else:
            raise FormatError(f"field {number} has unsupported wire type {wire_type}")
