import numpy as np
import pytest

from i3d.convert import crc32c as crc_module
from i3d.convert.crc32c import crc32c, mask, unmask

# RFC 3720 (iSCSI), appendix B.4, and the usual "123456789" check value.
KNOWN = [
    (b"", 0x00000000),
    (b"123456789", 0xE3069283),
    (bytes(32), 0x8A9136AA),
    (b"\xff" * 32, 0x62A8AB43),
    (bytes(range(32)), 0x46DD794E),
    (bytes(range(31, -1, -1)), 0x113FDB5C),
]


@pytest.mark.parametrize(("data", "expected"), KNOWN)
def test_known_values(data, expected):
    assert crc32c(data) == expected


SMALL = crc_module._SMALL


@pytest.mark.parametrize("size", [SMALL - 1, SMALL, SMALL + 1, 2 * SMALL + 3, crc_module._SEGMENT * 2 + SMALL // 2])
def test_vectorised_path_matches_the_serial_loop(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    serial = crc_module._update_bytes(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    assert crc32c(data) == serial
    # Any buffer type: bytes, bytearray, memoryview, numpy array.
    assert crc32c(bytearray(data)) == crc32c(memoryview(data)) == crc32c(np.frombuffer(data, np.uint8)) == serial


def test_a_single_flipped_bit_changes_the_crc():
    data = bytearray(np.random.default_rng(0).integers(0, 256, 10_000, dtype=np.uint8).tobytes())
    before = crc32c(data)
    data[5_000] ^= 0x10
    assert crc32c(data) != before


def test_mask_round_trips_and_matches_leveldb():
    assert mask(0) == 0xA282EAD8  # LevelDB's kMaskDelta: the mask of a zero CRC
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask(mask(value)) == value
        assert mask(value) != value
