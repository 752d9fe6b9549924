"""Read TensorFlow checkpoints (the "tensor bundle" format) without TensorFlow.

A checkpoint with prefix ``P`` is ``P.index`` — a LevelDB-style sorted table mapping each tensor's
name to a ``BundleEntryProto`` (dtype, shape, shard, offset, size) — and ``P.data-0000k-of-0000n``
files holding the raw little-endian tensor bytes. This reader decodes exactly that much of the table
format and of the two protobuf messages, which is all a converter needs.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from acousticsense.errors import BundleError

__all__ = ["TensorEntry", "read_index", "read_checkpoint"]

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_BYTES = 48
_BLOCK_TRAILER_BYTES = 5  # compression type (1 byte) + crc32c (4 bytes)
# tensorflow/core/framework/types.proto
_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64, 10: np.bool_}
_DTYPES |= {17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: ``size`` bytes at ``offset`` of data shard ``shard_id``."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int


def read_index(prefix: str | Path) -> tuple[int, dict[str, TensorEntry]]:
    """Parse ``<prefix>.index``.

    Returns:
        the number of data shards and every tensor's :class:`TensorEntry`, by name.

    Raises:
        BundleError: the file is missing or not a tensor-bundle index.
    """
    path = Path(f"{prefix}.index")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BundleError(f"cannot read TensorFlow checkpoint index {path}: {e}") from e
    if len(data) < _FOOTER_BYTES or struct.unpack("<Q", data[-8:])[0] != _TABLE_MAGIC:
        raise BundleError(f"{path} is not a TensorFlow checkpoint index (bad table magic)")
    footer = data[-_FOOTER_BYTES:]
    _, pos = _handle(footer, 0)  # metaindex block: unused
    (index_offset, index_size), _ = _handle(footer, pos)
    n_shards = 1
    entries: dict[str, TensorEntry] = {}
    for _, handle_bytes in _block_entries(_block(data, index_offset, index_size, path)):
        (offset, size), _ = _handle(handle_bytes, 0)
        for key, value in _block_entries(_block(data, offset, size, path)):
            if key == b"":  # BundleHeaderProto: field 1 is num_shards
                n_shards = _fields(value).get(1, [1])[0]
                continue
            entries[key.decode()] = _entry(key.decode(), value)
    return n_shards, entries


def read_checkpoint(prefix: str | Path, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """Every tensor (or only ``names``) of the checkpoint at ``prefix``, as numpy arrays.

    ``prefix`` is what TensorFlow's ``Saver`` was given: ``dir/model.ckpt`` for ``dir/model.ckpt.index``,
    or ``dir/`` for a checkpoint saved as ``dir/.index`` (musicnn's).

    Raises:
        BundleError: a missing file, an unknown name, or a tensor whose bytes do not fit its shape.
    """
    n_shards, entries = read_index(prefix)
    wanted = set(entries) if names is None else names
    unknown = sorted(wanted - set(entries))
    if unknown:
        raise BundleError(f"checkpoint {prefix} has no tensor(s) {unknown}")
    shards: dict[int, bytes] = {}
    tensors: dict[str, np.ndarray] = {}
    for name in sorted(wanted):
        entry = entries[name]
        if entry.shard_id not in shards:
            shard = Path(f"{prefix}.data-{entry.shard_id:05d}-of-{n_shards:05d}")
            try:
                shards[entry.shard_id] = shard.read_bytes()
            except OSError as e:
                raise BundleError(f"cannot read checkpoint data {shard}: {e}") from e
        raw = shards[entry.shard_id][entry.offset : entry.offset + entry.size]
        expected = int(np.prod(entry.shape, dtype=np.int64)) * np.dtype(entry.dtype).itemsize
        if len(raw) != expected:
            raise BundleError(f"tensor {name!r}: {len(raw)} bytes stored, {expected} expected for {entry.shape}")
        tensors[name] = np.frombuffer(raw, dtype=np.dtype(entry.dtype).newbyteorder("<")).reshape(entry.shape).copy()
    return tensors


def _block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    if data[offset + size] != 0:  # tensor bundles are written uncompressed
        raise BundleError(f"{path}: compressed table blocks are not supported")
    return data[offset : offset + size]


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Entries of one table block: keys are prefix-compressed against the previous key."""
    n_restarts = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 - 4 * n_restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _entry(name: str, message: bytes) -> TensorEntry:
    """Decode a ``BundleEntryProto``: dtype=1, shape=2, shard_id=3, offset=4, size=5 (crc32c=6, slices=7)."""
    fields = _fields(message)
    dtype_code = fields.get(1, [0])[0]
    if dtype_code not in _DTYPES:
        raise BundleError(f"tensor {name!r} has an unsupported TensorFlow dtype code {dtype_code}")
    if 7 in fields:
        raise BundleError(f"tensor {name!r} is stored in slices, which this reader does not support")
    shape: tuple[int, ...] = ()
    if 2 in fields:  # TensorShapeProto: repeated dim=2 (Dim: size=1)
        shape = tuple(_fields(dim).get(1, [0])[0] for dim in _fields(fields[2][0]).get(2, []))
    return TensorEntry(
        name=name,
        dtype=np.dtype(_DTYPES[dtype_code]),
        shape=shape,
        shard_id=fields.get(3, [0])[0],
        offset=fields.get(4, [0])[0],
        size=fields.get(5, [0])[0],
    )


def _fields(message: bytes) -> dict[int, list]:
    """A protobuf message's fields by number: varints as ints, length-delimited as bytes."""
    out: dict[int, list] = {}
    pos = 0
    while pos < len(message):
        tag, pos = _varint(message, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(message, pos)
        elif wire == 2:
            length, pos = _varint(message, pos)
            value, pos = message[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack("<I", message[pos : pos + 4])[0], pos + 4
        elif wire == 1:
            value, pos = struct.unpack("<Q", message[pos : pos + 8])[0], pos + 8
        else:
            raise BundleError(f"unsupported protobuf wire type {wire} in a checkpoint index")
        out.setdefault(number, []).append(value)
    return out


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _handle(data: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = _varint(data, pos)
    size, pos = _varint(data, pos)
    return (offset, size), pos
