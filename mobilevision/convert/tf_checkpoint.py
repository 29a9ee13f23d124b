"""Read a TensorFlow checkpoint (tensor-bundle format, V2) without tensorflow.

A checkpoint named by its prefix `model.ckpt` is two kinds of file:

- `model.ckpt.index`: a LevelDB-style SSTable (sorted string table). Its values are protobufs: under the empty key a
  `BundleHeaderProto` (num_shards, endianness), under every variable name a `BundleEntryProto` (dtype, shape,
  shard_id, offset, size, masked crc32c of the bytes).
- `model.ckpt.data-SSSSS-of-NNNNN`: the raw tensor bytes, row-major, concatenated; an entry points at
  (shard, offset, size).

Only the protobuf fields listed here are decoded, by hand (varints and length-delimited fields); nothing executable
is read. `read_tf_checkpoint(prefix)` returns `{name: numpy.ndarray}` with TF's shapes (conv kernels HWIO,
depthwise kernels HW,C,M). Every defect raises one `WeightsError` naming the file and what was expected.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilevision.errors import WeightsError

__all__ = ["TensorEntry", "read_tf_checkpoint", "read_tf_index", "crc32c", "unmask_crc"]

_TABLE_MAGIC = 0xDB4775248B80FB57  # LevelDB table magic number, the last 8 bytes of an .index file
_FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes, then the magic
_BLOCK_TRAILER = 5  # 1 byte compression type + 4 bytes masked crc32c of (contents + type)

# tensorflow/core/framework/types.proto DataType -> numpy dtype (little-endian). DT_STRING (7) is handled apart.
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
_DT_STRING = 7
_DT_BFLOAT16 = 14


# --------------------------------------------------------------------------------------------------- crc32c


def _make_crc_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of `data`, as LevelDB and TF compute it. Pure Python: about 10 MB/s."""
    table = _CRC_TABLE
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Inverse of LevelDB's `crc32c::Mask` (rotate right by 15 bits, plus 0xa282ead8), which TF stores."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------------- protobuf


class _Corrupt(Exception):
    """Internal: a decoding failure, turned into a WeightsError naming the file by the caller."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at `pos`; return (value, next position)."""
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _Corrupt(f"varint runs past the end at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _Corrupt(f"varint longer than 10 bytes at byte {pos}")


def _fields(buf: bytes) -> list[tuple[int, int, int | bytes]]:
    """Split a protobuf message into (field number, wire type, value): ints for varint/fixed, bytes for len-delim."""
    out: list[tuple[int, int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            if pos + 8 > len(buf):
                raise _Corrupt("fixed64 field runs past the end")
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _Corrupt(f"field {number} of {length} bytes runs past the end")
            value = bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > len(buf):
                raise _Corrupt("fixed32 field runs past the end")
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise _Corrupt(f"unsupported protobuf wire type {wire} (field {number})")
        out.append((number, wire, value))
    return out


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class TensorEntry:
    """One BundleEntryProto: where a variable's bytes are and what they are."""

    name: str
    dtype: int  # TF DataType enum value
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None  # masked, as stored; None when absent
    sliced: bool  # a partitioned variable (TensorSliceProto entries): not supported


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: dim = 2 (repeated Dim{size = 1}), unknown_rank = 3."""
    dims: list[int] = []
    for number, _, value in _fields(buf):
        if number == 2:
            size = 0
            for dnum, _, dval in _fields(value):  # type: ignore[arg-type]
                if dnum == 1:
                    size = _signed64(dval)  # type: ignore[arg-type]
            dims.append(size)
        elif number == 3 and value:
            raise _Corrupt("tensor shape of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    """BundleEntryProto: dtype 1, shape 2, shard_id 3, offset 4, size 5, crc32c 6 (fixed32), slices 7."""
    dtype = shard_id = offset = size = 0
    shape: tuple[int, ...] = ()
    crc: int | None = None
    sliced = False
    for number, _, value in _fields(buf):
        if number == 1:
            dtype = value  # type: ignore[assignment]
        elif number == 2:
            shape = _parse_shape(value)  # type: ignore[arg-type]
        elif number == 3:
            shard_id = value  # type: ignore[assignment]
        elif number == 4:
            offset = _signed64(value)  # type: ignore[arg-type]
        elif number == 5:
            size = _signed64(value)  # type: ignore[arg-type]
        elif number == 6:
            crc = value  # type: ignore[assignment]
        elif number == 7:
            sliced = True
    return TensorEntry(name, dtype, shape, shard_id, offset, size, crc, sliced)


def _parse_header(buf: bytes) -> tuple[int, int]:
    """BundleHeaderProto: num_shards 1, endianness 2 (0 little, 1 big), version 3. Returns (num_shards, endianness)."""
    num_shards, endianness = 1, 0
    for number, _, value in _fields(buf):
        if number == 1:
            num_shards = value  # type: ignore[assignment]
        elif number == 2:
            endianness = value  # type: ignore[assignment]
    return num_shards, endianness


# --------------------------------------------------------------------------------------------------- SSTable


def _read_block(data: bytes, offset: int, size: int, what: str) -> bytes:
    """A block's contents, its trailer checked: compression must be none (0), the masked crc32c must match."""
    end = offset + size + _BLOCK_TRAILER
    if offset < 0 or end > len(data):
        raise _Corrupt(f"{what} block at bytes {offset}..{end} lies outside the {len(data)}-byte file")
    contents = data[offset : offset + size]
    compression = data[offset + size]
    stored = struct.unpack_from("<I", data, offset + size + 1)[0]
    if compression != 0:
        raise _Corrupt(f"{what} block uses compression type {compression}; only 0 (none) is supported")
    actual = crc32c(data[offset : offset + size + 1])
    if unmask_crc(stored) != actual:
        raise _Corrupt(f"{what} block at byte {offset}: crc32c {actual:#010x}, stored {unmask_crc(stored):#010x}")
    return contents


def _block_entries(block: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """Decode a block: prefix-compressed entries (shared, non_shared, value_length varints, key delta, value),
    then the restart offsets (uint32 each) and their count (uint32). Restart entries must have shared == 0."""
    if len(block) < 4:
        raise _Corrupt(f"{what} block of {len(block)} bytes has no restart count")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise _Corrupt(f"{what} block of {len(block)} bytes cannot hold {num_restarts} restart points")
    restarts = set(struct.unpack_from(f"<{num_restarts}I", block, limit))
    entries: list[tuple[bytes, bytes]] = []
    key = b""
    pos = 0
    while pos < limit:
        start = pos
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if start in restarts and shared:
            raise _Corrupt(f"{what} block: restart entry at byte {start} shares {shared} key bytes")
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise _Corrupt(f"{what} block: entry at byte {start} runs past the entries ({limit} bytes)")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    """A BlockHandle (offset varint, size varint); returns (offset, size, next position)."""
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _table_items(data: bytes) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of an SSTable, in key order: footer -> index block -> data blocks."""
    if len(data) < _FOOTER_SIZE:
        raise _Corrupt(f"{len(data)} bytes, shorter than the {_FOOTER_SIZE}-byte table footer")
    footer = data[-_FOOTER_SIZE:]
    magic = struct.unpack_from("<Q", footer, 40)[0]
    if magic != _TABLE_MAGIC:
        raise _Corrupt(f"table magic {magic:#018x}, expected {_TABLE_MAGIC:#018x}")
    _, _, pos = _handle(footer)  # metaindex handle: TF writes an empty metaindex
    index_offset, index_size, _ = _handle(footer, pos)
    items: list[tuple[bytes, bytes]] = []
    for _, handle in _block_entries(_read_block(data, index_offset, index_size, "index"), "index"):
        offset, size, _ = _handle(handle)
        items.extend(_block_entries(_read_block(data, offset, size, "data"), "data"))
    return items


# --------------------------------------------------------------------------------------------------- bundle


def _prefix(path: str | Path) -> Path:
    """Accept the prefix (`model.ckpt`), the `.index` file or a `.data-*` file; return the prefix."""
    path = Path(path)
    name = path.name
    if name.endswith(".index"):
        return path.with_name(name[: -len(".index")])
    if ".data-" in name:
        return path.with_name(name[: name.index(".data-")])
    return path


def read_tf_index(path: str | Path) -> tuple[int, list[TensorEntry]]:
    """Parse `<prefix>.index`: (num_shards, entries in key order). Raises WeightsError on any defect."""
    index = _prefix(path).with_name(_prefix(path).name + ".index")
    if not index.is_file():
        raise WeightsError(f"{index}: no such file; expected the .index file of a TF checkpoint (tensor bundle)")
    data = index.read_bytes()
    try:
        items = _table_items(data)
        if not items or items[0][0] != b"":
            raise _Corrupt("no BundleHeaderProto under the empty key")
        num_shards, endianness = _parse_header(items[0][1])
        if endianness != 0:
            raise _Corrupt("big-endian bundle; only little-endian checkpoints are supported")
        entries = [_parse_entry(key.decode("utf-8"), value) for key, value in items[1:]]
    except (_Corrupt, UnicodeDecodeError) as error:
        raise WeightsError(
            f"{index}: not a readable TF checkpoint index (LevelDB table of BundleEntryProto): {error}"
        ) from error
    return num_shards, entries


def _decode_string_tensor(raw: bytes, count: int) -> np.ndarray:
    """DT_STRING layout: `count` varint64 lengths, a masked crc32c of them (4 bytes), then the bytes."""
    lengths = []
    pos = 0
    for _ in range(count):
        length, pos = _varint(raw, pos)
        lengths.append(length)
    pos += 4
    values = []
    for length in lengths:
        values.append(raw[pos : pos + length])
        pos += length
    if pos != len(raw):
        raise _Corrupt(f"string tensor of {count} elements: {pos} bytes decoded, {len(raw)} stored")
    return np.array(values, dtype=object)


def _to_array(entry: TensorEntry, raw: bytes) -> np.ndarray:
    count = int(np.prod(entry.shape, dtype=np.int64))
    if entry.dtype == _DT_STRING:
        return _decode_string_tensor(raw, count).reshape(entry.shape)
    if entry.dtype == _DT_BFLOAT16:
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        array = bits.view(np.float32)
    elif entry.dtype in _DTYPES:
        dtype = _DTYPES[entry.dtype]
        if count * dtype.itemsize != len(raw):
            raise _Corrupt(
                f"{entry.name}: shape {entry.shape} of {dtype} needs {count * dtype.itemsize} bytes, "
                f"the entry has {len(raw)}"
            )
        array = np.frombuffer(raw, dtype=dtype)
    else:
        raise _Corrupt(f"{entry.name}: unsupported TF dtype enum {entry.dtype}")
    return array.reshape(entry.shape).astype(array.dtype.newbyteorder("="), copy=True)


def read_tf_checkpoint(path: str | Path, *, check_crc: bool = True) -> dict[str, np.ndarray]:
    """All variables of a TF (V2) checkpoint as `{name: array}`, names as TF spells them, shapes as TF stores them.

    `path` is the prefix (`.../model.ckpt`) or its `.index` / `.data-*` file. With `check_crc` every tensor's bytes are
    checked against their stored crc32c (pure Python, about 10 MB/s). A missing or short `.data` shard, a corrupt
    index, a partitioned variable or an unknown dtype raise one WeightsError naming the file and what was expected.
    """
    prefix = _prefix(path)
    num_shards, entries = read_tf_index(prefix)
    shards: dict[int, bytes] = {}
    out: dict[str, np.ndarray] = {}
    for entry in entries:
        shard = prefix.with_name(f"{prefix.name}.data-{entry.shard_id:05d}-of-{num_shards:05d}")
        if entry.sliced:
            raise WeightsError(
                f"{shard}: variable {entry.name!r} is partitioned (TensorSliceProto); "
                "only whole variables are supported"
            )
        if entry.shard_id not in shards:
            if entry.shard_id >= num_shards or not shard.is_file():
                raise WeightsError(
                    f"{shard}: no such file; the index names shard {entry.shard_id} of {num_shards} "
                    f"for variable {entry.name!r}"
                )
            shards[entry.shard_id] = shard.read_bytes()
        data = shards[entry.shard_id]
        if entry.offset < 0 or entry.offset + entry.size > len(data):
            raise WeightsError(
                f"{shard}: truncated: variable {entry.name!r} needs bytes {entry.offset}.."
                f"{entry.offset + entry.size}, the file has {len(data)}"
            )
        raw = data[entry.offset : entry.offset + entry.size]
        if check_crc and entry.crc32c is not None and crc32c(raw) != unmask_crc(entry.crc32c):
            raise WeightsError(
                f"{shard}: variable {entry.name!r} (bytes {entry.offset}..{entry.offset + entry.size})"
                f" fails its crc32c check: {crc32c(raw):#010x}, index says "
                f"{unmask_crc(entry.crc32c):#010x}"
            )
        try:
            out[entry.name] = _to_array(entry, raw)
        except _Corrupt as error:
            raise WeightsError(f"{shard}: {error}") from error
    return out
