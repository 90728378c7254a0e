"""World fingerprint: SHA-256 over the canonical content of the six world tables.

The byte encoding is our own and independent of Arrow/Parquet versions (docs/world.md):

    H = SHA256( UER("arrivals.world.v1")
                ‖ for each table in schemas.WORLD_TABLES order:
                    UER(table) ‖ LE64(n_rows)
                    ‖ for each column in schema order:
                        UER(column) ‖ UER(str(arrow type)) ‖ column bytes )

``UER(s)`` is the u32 big-endian byte length of ``s`` then its UTF-8 bytes. Column bytes:
``uint64`` → LE64 per row; ``float64`` → IEEE-754 LE64 per row (−0.0 written as +0.0);
``date32`` → LE32 days since 1970-01-01; ``string`` → one validity byte per row (1 present,
0 null), then LE32 byte length per row (0 for null), then the concatenated UTF-8 bytes;
``list<float64>`` → LE32 length per row, then all values as LE64 floats.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine_core.schemas import WORLD_TABLES
from engine_core.world.validate import canonical_world_tables, one_array

FINGERPRINT_DOMAIN = "arrivals.world.v1"
HASH_SLICE = 1 << 21  # float values hashed at a time (16 MB)


def uer(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack(">I", len(data)) + data


def _column_chunks(column: pa.ChunkedArray | pa.Array, typ: pa.DataType) -> Iterator[Any]:
    """The documented byte encoding of one column, as buffers fed to the hash in order."""
    arr = one_array(column) if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_uint64(typ):
        yield arr.to_numpy(zero_copy_only=False).astype("<u8", copy=False)
    elif pa.types.is_float64(typ):
        yield arr.to_numpy(zero_copy_only=False).astype("<f8", copy=False) + 0.0  # -0.0 → +0.0
    elif pa.types.is_date32(typ):
        yield arr.cast(pa.int32()).to_numpy(zero_copy_only=False).astype("<i4", copy=False)
    elif pa.types.is_string(typ):
        yield arr.is_valid().to_numpy(zero_copy_only=False).astype(np.uint8)
        filled = pc.fill_null(arr, "")
        yield pc.binary_length(filled).to_numpy(zero_copy_only=False).astype("<u4")
        if len(filled):
            offsets = np.frombuffer(filled.buffers()[1], dtype=np.int32)[
                filled.offset : filled.offset + len(filled) + 1
            ]
            data = filled.buffers()[2]
            if data is not None and offsets[-1] > offsets[0]:
                yield data.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    elif pa.types.is_list(typ) and pa.types.is_float64(typ.value_type):
        yield pc.list_value_length(arr).to_numpy(zero_copy_only=False).astype("<u4")
        values = arr.flatten().to_numpy(zero_copy_only=False).astype("<f8", copy=False)
        # fed to the hash in slices: the same bytes without a copy of every value at once
        for lo in range(0, len(values), HASH_SLICE):
            yield values[lo : lo + HASH_SLICE] + 0.0
    else:
        raise TypeError(f"no fingerprint encoding for arrow type {typ}")


def fingerprint_canonical(tables: Mapping[str, pa.Table]) -> str:
    """Fingerprint of tables that are already canonical (contract schema, canonical order)."""
    h = hashlib.sha256(uer(FINGERPRINT_DOMAIN))
    for name, schema in WORLD_TABLES.items():
        table = tables[name]
        h.update(uer(name))
        h.update(struct.pack("<Q", table.num_rows))
        for field in schema:
            h.update(uer(field.name))
            h.update(uer(str(field.type)))
            for chunk in _column_chunks(table.column(field.name), field.type):
                h.update(chunk)
    return h.hexdigest()


def world_fingerprint(tables: Mapping[str, pa.Table]) -> str:
    """Hex SHA-256 over the canonical content of ``tables`` (any row order, any castable types).

    The tables are validated and canonicalised first, so two inputs that differ only in row
    order, chunking, extra columns or integer/string encodings have the same fingerprint.
    """
    return fingerprint_canonical(canonical_world_tables(tables))
