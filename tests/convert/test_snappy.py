"""Raw Snappy blocks built by hand from the format description."""

import pytest

from i3d.convert._wire import FormatError
from i3d.convert.snappy import decompress

LONG = bytes(range(256)) + bytes(range(44))  # 300 bytes


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"\x00", b""),
        # literal, length - 1 = 4 in the tag
        (b"\x05\x10hello", b"hello"),
        # literal with a 1-byte length (tag 60 << 2): 100 bytes
        (b"\x64\xf0\x63" + b"x" * 100, b"x" * 100),
        # literal with a 2-byte length (tag 61 << 2): 300 bytes
        (b"\xac\x02\xf4\x2b\x01" + LONG, LONG),
        # copy with a 1-byte offset that overlaps its own output: "ab" + 6 more
        (b"\x08\x04ab\x09\x02", b"abababab"),
        # copy with a 1-byte offset whose high bits sit in the tag: offset 300
        (b"\xb1\x02\xf4\x2b\x01" + LONG + b"\x25\x2c", LONG + LONG[:5]),
        # copy with a 2-byte offset
        (b"\x08\x0cabcd\x0e\x04\x00", b"abcdabcd"),
        # copy with a 4-byte offset, overlapping: 1 byte repeated
        (b"\x06\x00z\x13\x01\x00\x00\x00", b"zzzzzz"),
    ],
)
def test_decodes_each_element_kind(block, expected):
    assert decompress(block) == expected


@pytest.mark.parametrize(
    ("block", "cause"),
    [
        (b"", "truncated varint"),
        (b"\x05\x10hel", "truncated literal"),
        (b"\x04\x09\x02", "copy offset"),  # copy before any output
        (b"\x08\x04ab\x09\x00", "copy offset 0"),
        (b"\x08\x04ab\x0e\x02", "truncated copy"),
        (b"\x06\x10hello", "decompressed to 5 bytes, header says 6"),
        (b"\x03\x10hello", "exceeds the declared 3 bytes"),
    ],
)
def test_rejects_malformed_blocks(block, cause):
    with pytest.raises(FormatError, match=cause):
        decompress(block)
