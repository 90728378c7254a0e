"""Arrow columns from kernel arrays, without copies where Arrow can take the buffer as it is.

The arrival-event table is assembled from ``schemas.EVENT_COLUMNS`` alone: the kernel's output
arrays are allocated from it (:func:`event_arrays`) and turned into the contract table by
:func:`events_table`, so a new column is declared once (docs/architecture.md).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine_core import schemas
from engine_core.schemas import EVENT_COLUMNS, EVENT_PARQUET_OPTIONS
from engine_core.world.arrays import WorldArrays

EVENT_ROW_GROUP = 1 << 20


def ts_array(us: np.ndarray, typ: pa.DataType = schemas.TS_UTC) -> pa.Array:
    return pa.array(np.ascontiguousarray(us, dtype=np.int64), type=pa.int64()).view(typ)


def dict_array(indices: np.ndarray, dictionary: list[str], mask: np.ndarray | None = None
               ) -> pa.DictionaryArray:
    idx = pa.array(np.ascontiguousarray(indices, dtype=np.int32), type=pa.int32(), mask=mask)
    return pa.DictionaryArray.from_arrays(idx, pa.array(dictionary, type=pa.string()))


def bitmap(flags: np.ndarray) -> pa.Buffer:
    """An Arrow bitmap (least significant bit first) of a boolean array."""
    return pa.py_buffer(np.packbits(flags, bitorder="little"))


def with_validity(values: np.ndarray, typ: pa.DataType, valid: pa.Buffer | None,
                  n_null: int) -> pa.Array:
    """A fixed-width array over ``values`` (no copy) with a ready validity bitmap: one
    bitmap serves every column with the same nulls, where ``pa.array(mask=)`` would invert
    and pack the mask again for each."""
    return pa.Array.from_buffers(typ, len(values), [valid if n_null else None,
                                                    pa.py_buffer(values)], null_count=n_null)


def kernel_dict(indices: np.ndarray, dictionary: pa.Array, valid: pa.Buffer | None = None,
                n_null: int = 0) -> pa.DictionaryArray:
    """Dictionary column over int32 codes the kernel produced (in range by construction,
    so not validated again)."""
    return pa.DictionaryArray.from_arrays(
        with_validity(indices, pa.int32(), valid, n_null), dictionary, safe=False)


def event_arrays(n: int) -> dict[str, np.ndarray]:
    """Uninitialised kernel output arrays of ``n`` events, one per event column."""
    return {c.name: np.empty(n, np.dtype(c.kernel_dtype)) for c in EVENT_COLUMNS}


def _null_masks(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Where each ``null_when`` condition holds (True = null)."""
    v = out["is_virtual"]
    return {"virtual": v, "physical": ~v, "unsettled": out["tzid_settlement"] < 0}


def events_table(out: dict[str, np.ndarray], arrays: WorldArrays) -> pa.Table:
    """The contract table of one chunk's kernel outputs (built in a writer thread)."""
    n = len(out["is_virtual"])
    masks = _null_masks(out)
    validity: dict[str, tuple[pa.Buffer | None, int]] = {}
    dictionaries: dict[str, pa.Array] = {}
    columns: dict[str, pa.Array] = {}
    for c in EVENT_COLUMNS:
        valid, n_null = None, 0
        if c.null_when is not None:
            if c.null_when not in validity:
                n_null_here = int(np.count_nonzero(masks[c.null_when]))
                validity[c.null_when] = (bitmap(~masks[c.null_when]) if n_null_here else None,
                                         n_null_here)
            valid, n_null = validity[c.null_when]
        values = out[c.name]
        if c.dictionary is not None:
            if c.dictionary not in dictionaries:
                dictionaries[c.dictionary] = pa.array(getattr(arrays, c.dictionary),
                                                      type=pa.string())
            codes = np.maximum(values, 0) if c.null_when is not None else values
            columns[c.name] = kernel_dict(codes, dictionaries[c.dictionary], valid, n_null)
        elif pa.types.is_boolean(c.arrow):
            columns[c.name] = pa.Array.from_buffers(pa.bool_(), n, [valid if n_null else None,
                                                                    bitmap(values)],
                                                    null_count=n_null)
        else:
            columns[c.name] = with_validity(values, c.arrow, valid, n_null)
    return pa.table(columns, schema=schemas.ARRIVAL_EVENTS)


def write_events(table: pa.Table, path: str) -> None:
    pq.write_table(table, path, row_group_size=EVENT_ROW_GROUP, **EVENT_PARQUET_OPTIONS)
