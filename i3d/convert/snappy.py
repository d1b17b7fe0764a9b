"""Decompression of raw Snappy blocks (no framing), as used by LevelDB tables.

Format (google/snappy ``format_description.txt``): a varint with the
uncompressed length, then elements whose tag byte's two low bits give the
kind:

- ``00`` literal: length - 1 in the upper six bits, or, for 60..63, in the
  next 1..4 little-endian bytes; the literal bytes follow.
- ``01`` copy, length 4..11 in bits 2..4, an 11-bit offset: bits 5..7 of the
  tag are its high bits, the next byte its low bits.
- ``10`` copy, length - 1 in the upper six bits, a 2-byte little-endian offset.
- ``11`` copy, length - 1 in the upper six bits, a 4-byte little-endian offset.

A copy repeats ``length`` bytes starting ``offset`` bytes back in the output;
it may overlap the bytes it writes (offset < length repeats a pattern).
"""

from __future__ import annotations

from ._wire import MAX_VARINT32_BYTES, FormatError, read_varint

_LITERAL, _COPY_1, _COPY_2 = range(3)  # 3: copy with a 4-byte offset
# Literal lengths up to this (minus one) fit in the tag; above, the tag says
# how many extra length bytes follow: 60 -> 1 byte, ..., 63 -> 4 bytes.
_MAX_INLINE_LITERAL = 60
_COPY_1_MIN_LENGTH = 4


def _copy(out: bytearray, offset: int, length: int) -> None:
    if offset == 0 or offset > len(out):
        raise FormatError(f"copy offset {offset} outside the {len(out)} bytes written so far")
    start = len(out) - offset
    if length <= offset:
        out += out[start : start + length]
    else:
        # Overlapping copy: the last ``offset`` bytes repeat as a pattern.
        pattern = bytes(out[start:])
        out += (pattern * -(-length // offset))[:length]


def decompress(data: bytes | bytearray | memoryview) -> bytes:
    """Decompress one raw Snappy block.

    Raises:
        FormatError: on a truncated block, a copy reaching before the start of
            the output, or a length that differs from the header's.

    The length header is checked as the output grows, so a forged header
    cannot make a small block expand without bound.
    """
    data = bytes(data)
    expected, pos = read_varint(data, 0, MAX_VARINT32_BYTES)
    out = bytearray()
    end = len(data)
    while pos < end:
        tag = data[pos]
        pos += 1
        kind = tag & 0b11
        if kind == _LITERAL:
            length = tag >> 2
            if length >= _MAX_INLINE_LITERAL:
                extra = length - _MAX_INLINE_LITERAL + 1
                if pos + extra > end:
                    raise FormatError("truncated literal length")
                length = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            length += 1
            if pos + length > end:
                raise FormatError("truncated literal")
            out += data[pos : pos + length]
            pos += length
        else:
            if kind == _COPY_1:
                if pos + 1 > end:
                    raise FormatError("truncated copy")
                length = _COPY_1_MIN_LENGTH + ((tag >> 2) & 0b111)
                offset = ((tag >> 5) << 8) | data[pos]
                pos += 1
            else:
                width = 2 if kind == _COPY_2 else 4
                if pos + width > end:
                    raise FormatError("truncated copy")
                length = (tag >> 2) + 1
                offset = int.from_bytes(data[pos : pos + width], "little")
                pos += width
            _copy(out, offset, length)
        if len(out) > expected:
            raise FormatError(f"output exceeds the declared {expected} bytes")
    if len(out) != expected:
        raise FormatError(f"decompressed to {len(out)} bytes, header says {expected}")
    return bytes(out)
