"""TensorFlow tensor-bundle checkpoints (``X.index`` + ``X.data-NNNNN-of-NNNNN``), read without TensorFlow.

The ``.index`` file is a sorted table (:mod:`i3d.convert.sstable`) whose
values are serialized protos (``tensorflow/core/protobuf/tensor_bundle.proto``):

- under the empty key, ``BundleHeaderProto``: ``num_shards = 1``,
  ``endianness = 2`` (0 little, 1 big), ``version = 3`` (a ``VersionDef``:
  ``producer = 1``, ``min_consumer = 2``, ``bad_consumers = 3``);
- under each variable name, ``BundleEntryProto``: ``dtype = 1`` (a
  ``DataType`` enum), ``shape = 2`` (``TensorShapeProto``: repeated
  ``dim = 2`` of ``{size = 1, name = 2}``), ``shard_id = 3``, ``offset = 4``,
  ``size = 5``, ``crc32c = 6`` (fixed32, masked CRC-32C of the tensor's bytes),
  ``slices = 7`` (only for partitioned variables).

A tensor is ``size`` raw bytes at ``offset`` in data file ``shard_id``, in C
order, with the header's byte order.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from ..errors import CheckpointError
from ._wire import WIRE_BYTES, FormatError, as_int64, iter_fields
from .crc32c import crc32c, unmask
from .sstable import read_table

INDEX_SUFFIX = ".index"
# TensorFlow's kTensorBundleVersion: a header whose min_consumer is above it
# was written in a layout this reader does not know.
BUNDLE_VERSION = 1
_LITTLE_ENDIAN = 0

# DataType enum values (tensorflow/core/framework/types.proto) -> numpy dtype.
SUPPORTED_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),
    3: np.dtype("<i4"),
    9: np.dtype("<i8"),
    19: np.dtype("<f2"),
}
# Names for the listing of variables this reader lists but cannot read.
_OTHER_DTYPE_NAMES = {
    2: "float64",
    4: "uint8",
    5: "int16",
    6: "int8",
    7: "string",
    8: "complex64",
    10: "bool",
    14: "bfloat16",
    17: "uint16",
    18: "complex128",
    20: "resource",
    21: "variant",
    22: "uint32",
    23: "uint64",
}


def dtype_name(enum_value: int) -> str:
    """The numpy-style name of a TF ``DataType`` enum value."""
    if enum_value in SUPPORTED_DTYPES:
        return SUPPORTED_DTYPES[enum_value].name
    return _OTHER_DTYPE_NAMES.get(enum_value, f"DataType {enum_value}")


class VariableInfo(NamedTuple):
    """A variable as the index lists it: ``dtype, shape = info`` works."""

    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class BundleEntry:
    """Where and how one variable is stored (a decoded ``BundleEntryProto``)."""

    dtype_enum: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    masked_crc32c: int
    partitioned: bool

    @property
    def dtype(self) -> str:
        return dtype_name(self.dtype_enum)


@dataclass(frozen=True)
class BundleHeader:
    """The decoded ``BundleHeaderProto``."""

    num_shards: int
    little_endian: bool
    producer: int
    min_consumer: int


def _parse_shape(message: bytes) -> tuple[int, ...]:
    dims = []
    for number, wire_type, value in iter_fields(message):
        if number == 2 and wire_type == WIRE_BYTES:
            size = 0
            for dim_number, _, dim_value in iter_fields(value):
                if dim_number == 1:
                    size = as_int64(dim_value)
            if size < 0:
                raise FormatError(f"unknown dimension size {size}")
            dims.append(size)
        elif number == 3 and value:
            raise FormatError("shape of unknown rank")
    return tuple(dims)


def _parse_entry(message: bytes) -> BundleEntry:
    fields: dict[str, int] = {"dtype_enum": 0, "shard_id": 0, "offset": 0, "size": 0, "masked_crc32c": 0}
    names = {1: "dtype_enum", 3: "shard_id", 4: "offset", 5: "size", 6: "masked_crc32c"}
    shape: tuple[int, ...] = ()
    partitioned = False
    for number, _, value in iter_fields(message):
        if number == 2:
            shape = _parse_shape(value)
        elif number == 7:
            partitioned = True
        elif number in names:
            if not isinstance(value, int):
                raise FormatError(f"field {names[number]} is not a number")
            fields[names[number]] = as_int64(value)
    if min(fields["shard_id"], fields["offset"], fields["size"]) < 0:
        raise FormatError("negative or malformed shard, offset or size")
    return BundleEntry(shape=shape, partitioned=partitioned, **fields)


def _parse_header(message: bytes) -> BundleHeader:
    num_shards, endianness, producer, min_consumer = 0, _LITTLE_ENDIAN, 0, 0
    for number, _, value in iter_fields(message):
        if number == 1:
            num_shards = value
        elif number == 2:
            endianness = value
        elif number == 3:
            for version_number, _, version_value in iter_fields(value):
                if version_number == 1:
                    producer = version_value
                elif version_number == 2:
                    min_consumer = version_value
    return BundleHeader(num_shards, endianness == _LITTLE_ENDIAN, producer, min_consumer)


def checkpoint_prefix(path: str | os.PathLike[str]) -> Path:
    """The bundle prefix for ``path``, which may name the prefix or the ``.index`` file."""
    path = Path(path)
    return path.with_name(path.name[: -len(INDEX_SUFFIX)]) if path.name.endswith(INDEX_SUFFIX) else path


class CheckpointReader:
    """Reads a TensorFlow V2 checkpoint (tensor bundle) with numpy only.

    Example::

        reader = CheckpointReader("checkpoints/rgb_imagenet/model.ckpt")
        for name, (dtype, shape) in reader.variables().items(): ...
        w = reader.read("RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w")  # (7, 7, 7, 3, 64)

    The index is parsed at construction; data files are opened only to read.
    Tensors of dtype float32, float16, int32 and int64 can be read; others are
    listed but raise :class:`~i3d.errors.CheckpointError` when read.

    Args:
        path: the checkpoint prefix (``.../model.ckpt``) or its ``.index`` file.

    Raises:
        CheckpointError: the index is missing or malformed; the message names
            the file and the cause.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.prefix = checkpoint_prefix(path)
        self.index_path = self.prefix.with_name(self.prefix.name + INDEX_SUFFIX)
        try:
            table = self.index_path.read_bytes()
        except OSError as err:
            raise CheckpointError(self.index_path, f"cannot read the index: {err.strerror or err}") from None
        header: BundleHeader | None = None
        entries: dict[str, BundleEntry] = {}
        try:
            for key, value in read_table(table):
                # Names are UTF-8 in practice; a stray byte must not hide the rest.
                name = key.decode("utf-8", errors="backslashreplace")
                try:
                    if key == b"":
                        header = _parse_header(value)
                    else:
                        entries[name] = _parse_entry(value)
                except (FormatError, TypeError, ValueError) as err:
                    # A field of an unexpected wire type surfaces as a TypeError.
                    what = f"variable {name!r}" if key else "bundle header"
                    raise FormatError(f"{what}: malformed ({err})") from None
        except FormatError as err:
            raise CheckpointError(self.index_path, str(err)) from None
        if header is None:
            raise CheckpointError(self.index_path, "no bundle header (not a TensorFlow V2 checkpoint index)")
        if header.min_consumer > BUNDLE_VERSION:
            raise CheckpointError(
                self.index_path,
                f"bundle version {header.min_consumer} is newer than the {BUNDLE_VERSION} this reader knows",
            )
        if not header.little_endian:
            raise CheckpointError(self.index_path, "big-endian checkpoints are not supported")
        if header.num_shards < 1:
            raise CheckpointError(self.index_path, f"invalid shard count {header.num_shards}")
        for name, entry in entries.items():
            if entry.shard_id >= header.num_shards:
                raise CheckpointError(
                    self.index_path, f"variable {name!r}: shard {entry.shard_id} of only {header.num_shards}"
                )
        self.header = header
        self.entries = entries

    def __repr__(self) -> str:
        return f"CheckpointReader({str(self.prefix)!r}, {len(self.entries)} variables)"

    def data_path(self, shard_id: int) -> Path:
        """The data file of shard ``shard_id``: ``<prefix>.data-00000-of-00001``."""
        return self.prefix.with_name(f"{self.prefix.name}.data-{shard_id:05d}-of-{self.header.num_shards:05d}")

    def variables(self) -> dict[str, VariableInfo]:
        """Every variable's dtype name and shape, in key order; needs only the index."""
        return {name: VariableInfo(entry.dtype, entry.shape) for name, entry in self.entries.items()}

    def _check_readable(self, name: str) -> tuple[BundleEntry, np.dtype]:
        entry = self.entries.get(name)
        if entry is None:
            raise KeyError(f"{name!r} is not a variable of {self.index_path}")
        if entry.partitioned:
            raise CheckpointError(self.index_path, f"variable {name!r}: partitioned variables are not supported")
        dtype = SUPPORTED_DTYPES.get(entry.dtype_enum)
        if dtype is None:
            supported = ", ".join(d.name for d in SUPPORTED_DTYPES.values())
            raise CheckpointError(
                self.index_path, f"variable {name!r}: dtype {entry.dtype} is not supported (only {supported})"
            )
        expected_size = int(np.prod(entry.shape, dtype=np.int64)) * dtype.itemsize
        if entry.size != expected_size:
            raise CheckpointError(
                self.index_path,
                f"variable {name!r}: {entry.size} bytes stored, "
                f"but {entry.dtype} {list(entry.shape)} needs {expected_size}",
            )
        return entry, dtype

    def _read_entry(
        self, name: str, entry: BundleEntry, dtype: np.dtype, file: BinaryIO, data_path: Path
    ) -> np.ndarray:
        buffer = bytearray(entry.size)
        file.seek(entry.offset)
        got = file.readinto(buffer)
        if got != entry.size:
            raise CheckpointError(
                data_path,
                f"variable {name!r}: truncated: needs bytes [{entry.offset}, {entry.offset + entry.size}), "
                f"got {got} of {entry.size}",
            )
        actual = crc32c(buffer)
        if actual != unmask(entry.masked_crc32c):
            raise CheckpointError(
                data_path,
                f"variable {name!r}: crc32c mismatch (index says 0x{unmask(entry.masked_crc32c):08x}, "
                f"data gives 0x{actual:08x})",
            )
        return np.frombuffer(buffer, dtype=dtype).reshape(entry.shape).astype(dtype.newbyteorder("="), copy=False)

    def _open(self, shard_id: int, name: str) -> tuple[BinaryIO, Path]:
        data_path = self.data_path(shard_id)
        try:
            return open(data_path, "rb"), data_path
        except OSError as err:
            raise CheckpointError(data_path, f"cannot read data for variable {name!r}: {err.strerror or err}") from None

    def read(self, name: str) -> np.ndarray:
        """One variable's value, with its stored shape, after verifying its CRC-32C.

        Raises:
            KeyError: no variable of that name.
            CheckpointError: unsupported dtype, missing or truncated data file,
                or checksum mismatch; the message names the file and variable.
        """
        entry, dtype = self._check_readable(name)
        file, data_path = self._open(entry.shard_id, name)
        with file:
            return self._read_entry(name, entry, dtype, file, data_path)

    def read_all(self, names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Several variables (default: all), each data file opened once and read in order.

        Raises:
            KeyError, CheckpointError: as :meth:`read`, for the first bad variable.
        """
        wanted = list(self.entries) if names is None else list(names)
        checked = {name: self._check_readable(name) for name in wanted}
        # Read in file order: one pass over each data file.
        order = sorted(checked, key=lambda name: (checked[name][0].shard_id, checked[name][0].offset))
        values: dict[str, np.ndarray] = {}
        for shard_id, group in itertools.groupby(order, key=lambda name: checked[name][0].shard_id):
            shard_names = list(group)
            file, data_path = self._open(shard_id, shard_names[0])
            with file:
                for name in shard_names:
                    values[name] = self._read_entry(name, *checked[name], file, data_path)
        return {name: values[name] for name in wanted}
