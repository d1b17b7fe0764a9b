"""The checkpoint reader against checkpoints written by a real TensorFlow
(tests/fixtures/tf, made by make_tf_fixtures.py) and DeepMind's real index files."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from i3d.convert._wire import FormatError
from i3d.convert.sstable import (
    FOOTER_SIZE,
    NO_COMPRESSION,
    SNAPPY_COMPRESSION,
    _block,
    _entries,
    _read_handle,
    read_table,
)
from i3d.convert.tf_checkpoint import CheckpointReader
from i3d.errors import CheckpointError

from .tf_writer import write_checkpoint, write_table

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tf"
# checkpoint fixture -> the .npz of the values TensorFlow reads back from it
EXPECTED = {
    "dtypes": "dtypes",
    "sharded": "sharded",
    "many": "many",
    "many_blocks": "many",
    "many_snappy": "many",
    "mini_i3d": "mini_i3d",
}
RELEASES = {
    "rgb_imagenet": ("RGB/inception_i3d/", 230, 3),
    "rgb_scratch": ("RGB/inception_i3d/", 230, 3),
    "flow_imagenet": ("Flow/inception_i3d/", 230, 2),
    "flow_scratch": ("Flow/inception_i3d/", 230, 2),
    # Kinetics-600: no scope, and a Momentum slot beside each of the 230 weights
    "rgb_scratch_kin600": ("", 230 + 116, 3),
}


def expected_values(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{EXPECTED[name]}.npz") as values:
        return {key: values[key] for key in values.files}


def assert_identical(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.dtype == expected.dtype
    assert actual.shape == expected.shape
    assert actual.tobytes() == expected.tobytes()  # bit for bit, NaN and -0.0 included


def copy_fixture(name: str, destination: Path) -> Path:
    for path in FIXTURES.glob(f"{name}.ckpt.*"):
        shutil.copy(path, destination / path.name)
    return destination / f"{name}.ckpt"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reads_exactly_what_tensorflow_wrote(name):
    reader = CheckpointReader(FIXTURES / f"{name}.ckpt")
    expected = expected_values(name)
    values = reader.read_all(expected)
    for key, value in expected.items():
        assert_identical(values[key], value)
        assert_identical(reader.read(key), value)
    assert values["int64/global_step" if name == "dtypes" else next(iter(expected))].flags.writeable


def test_lists_dtypes_and_shapes_from_the_index_alone(tmp_path):
    prefix = copy_fixture("dtypes", tmp_path)
    prefix.with_name(prefix.name + ".data-00000-of-00001").unlink()
    variables = CheckpointReader(prefix).variables()
    assert variables["float32/conv_3d/w"] == ("float32", (2, 3, 2, 4, 5))
    assert variables["float32/scalar"] == ("float32", ())
    assert variables["float32/empty"] == ("float32", (0, 3))
    assert variables["float16/vector"] == ("float16", (7,))
    assert variables["int32/matrix"] == ("int32", (4, 6))
    dtype, shape = variables["int64/vector"]
    assert (dtype, shape) == ("int64", (5,))
    assert variables["float64/vector"] == ("float64", (3,))
    assert variables["string/scalar"] == ("string", ())
    assert list(variables) == sorted(variables)


def test_accepts_the_index_path_as_well_as_the_prefix():
    by_index = CheckpointReader(FIXTURES / "sharded.ckpt.index")
    assert by_index.prefix == FIXTURES / "sharded.ckpt"
    assert by_index.variables() == CheckpointReader(FIXTURES / "sharded.ckpt").variables()


def test_sharded_checkpoint_reads_from_both_data_files():
    reader = CheckpointReader(FIXTURES / "sharded.ckpt")
    assert reader.header.num_shards == 2
    assert reader.entries["first/a"].shard_id == 0 and reader.entries["second/b"].shard_id == 1
    assert reader.data_path(1).name == "sharded.ckpt.data-00001-of-00002"


@pytest.mark.parametrize("name", ["float64/vector", "string/scalar"])
def test_other_dtypes_are_listed_but_refused(name):
    reader = CheckpointReader(FIXTURES / "dtypes.ckpt")
    with pytest.raises(CheckpointError, match=f"variable '{name}': dtype .* is not supported"):
        reader.read(name)


def test_unknown_variable_is_a_key_error():
    with pytest.raises(KeyError, match="no/such"):
        CheckpointReader(FIXTURES / "dtypes.ckpt").read("no/such")


def data_blocks(name: str) -> list[tuple[int, int]]:
    """``(compression byte, restart count)`` of each data block of a fixture's index."""
    table = (FIXTURES / f"{name}.ckpt.index").read_bytes()
    _, pos = _read_handle(table, len(table) - FOOTER_SIZE)
    index_handle, _ = _read_handle(table, pos)
    result = []
    for _, encoded in _entries(_block(table, index_handle, "index"), "index"):
        (offset, size), _ = _read_handle(encoded, 0)
        block = _block(table, (offset, size), "data")
        (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
        result.append((table[offset + size], restarts))
    return result


def test_fixture_tables_cover_restarts_blocks_and_snappy():
    """The fixtures exercise what they are meant to (guards their regeneration)."""
    [(compression, restarts)] = data_blocks("many")
    assert compression == NO_COMPRESSION and restarts > 1
    assert len(data_blocks("many_blocks")) > 1
    assert {compression for compression, _ in data_blocks("many_blocks")} == {NO_COMPRESSION}
    assert data_blocks("many_blocks")[0][1] > 1
    assert len(data_blocks("many_snappy")) > 1
    assert {compression for compression, _ in data_blocks("many_snappy")} == {SNAPPY_COMPRESSION}


@pytest.mark.parametrize("name", ["many", "mini_i3d"])
def test_test_writer_reproduces_tensorflow_byte_for_byte(tmp_path, name):
    write_checkpoint(tmp_path / "x.ckpt", expected_values(name))
    for suffix in (".index", ".data-00000-of-00001"):
        assert (tmp_path / f"x.ckpt{suffix}").read_bytes() == (FIXTURES / f"{name}.ckpt{suffix}").read_bytes()


# --- damaged checkpoints --------------------------------------------------------


def test_corrupted_byte_in_data_is_caught_by_the_crc(tmp_path):
    prefix = copy_fixture("dtypes", tmp_path)
    reader = CheckpointReader(prefix)
    entry = reader.entries["float32/large"]
    data = reader.data_path(0)
    raw = bytearray(data.read_bytes())
    raw[entry.offset + entry.size // 3] ^= 0x01
    data.write_bytes(raw)
    with pytest.raises(CheckpointError, match=r"variable 'float32/large': crc32c mismatch") as caught:
        reader.read("float32/large")
    assert str(data) in str(caught.value)
    with pytest.raises(CheckpointError, match="float32/large"):
        reader.read_all(expected_values("dtypes"))
    # The other variables are untouched and still read.
    assert_identical(reader.read("float32/matrix"), expected_values("dtypes")["float32/matrix"])


def test_truncated_data_file_is_rejected(tmp_path):
    prefix = copy_fixture("dtypes", tmp_path)
    reader = CheckpointReader(prefix)
    readable = [name for name, (dtype, _) in reader.variables().items() if dtype not in ("float64", "string")]
    last = max(readable, key=lambda name: reader.entries[name].offset + reader.entries[name].size)
    data = reader.data_path(0)
    end = reader.entries[last].offset + reader.entries[last].size
    data.write_bytes(data.read_bytes()[: end - 3])
    with pytest.raises(CheckpointError, match=rf"{data}: variable '{last}': truncated"):
        reader.read(last)


def test_missing_data_file_is_named(tmp_path):
    prefix = copy_fixture("sharded", tmp_path)
    missing = tmp_path / "sharded.ckpt.data-00001-of-00002"
    missing.unlink()
    reader = CheckpointReader(prefix)
    assert_identical(reader.read("first/a"), expected_values("sharded")["first/a"])
    with pytest.raises(CheckpointError, match=rf"{missing}: cannot read data for variable 'second/b'"):
        reader.read("second/b")


@pytest.mark.parametrize(
    ("damage", "cause"),
    [
        (lambda table: table[:-1], "bad table magic"),
        (lambda table: table[:20], "too short for a table footer"),
        (lambda table: b"", "too short for a table footer"),
        # a byte inside the (single) data block, well before the footer
        (lambda table: table[:40] + bytes([table[40] ^ 0xFF]) + table[41:], "block checksum mismatch"),
    ],
)
def test_damaged_index_is_rejected(tmp_path, damage, cause):
    prefix = copy_fixture("many", tmp_path)
    index = tmp_path / "many.ckpt.index"
    index.write_bytes(damage(index.read_bytes()))
    with pytest.raises(CheckpointError, match=cause) as caught:
        CheckpointReader(prefix)
    assert str(caught.value).startswith(f"{index}: ")


def test_missing_index_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'nothing.ckpt.index'}: cannot read the index"):
        CheckpointReader(tmp_path / "nothing.ckpt")


def test_table_with_keys_out_of_order_is_rejected():
    table, _ = write_table([(b"b", b"1"), (b"a", b"2")])
    with pytest.raises(FormatError, match="keys out of order"):
        read_table(table)


# --- DeepMind's real index files --------------------------------------------------


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_real_index_files_list_their_variables(upstream, release):
    scope, count, in_channels = RELEASES[release]
    prefix = upstream / "kinetics-i3d" / "checkpoints" / release / "model.ckpt"
    reader = CheckpointReader(prefix)
    variables = reader.variables()
    assert len(variables) == count
    assert {dtype for dtype, _ in variables.values()} == {"float32"}
    assert all(name.startswith(scope) for name in variables)
    assert variables[scope + "Conv3d_1a_7x7/conv_3d/w"].shape == (7, 7, 7, in_channels, 64)
    assert reader.header.num_shards == 1
    # The data files are not in shared/: reading says which file is missing.
    with pytest.raises(CheckpointError, match=r"model\.ckpt\.data-00000-of-00001: cannot read data"):
        reader.read(scope + "Conv3d_1a_7x7/conv_3d/w")


def test_field_of_unexpected_wire_type_is_a_checkpoint_error(tmp_path):
    from tests.convert.tf_writer import write_table

    # Header field 3 (the version message) given as a varint instead of bytes.
    table, _ = write_table([(b"", b"\x08\x01\x18\x01"), (b"w", b"\x08\x01")])
    (tmp_path / "bad.index").write_bytes(table)
    with pytest.raises(CheckpointError, match=r"bad\.index: bundle header: malformed"):
        CheckpointReader(tmp_path / "bad")
