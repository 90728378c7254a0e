"""The world as lookup arrays for the checks: merchants, series, sites and edges by id.

Published rows name a series by ``(merchant_id, legal_country_iso, zone_tzid, channel_group)``
and a routing target by ``site_id`` / ``edge_id``. The checks resolve those names against the
*world tables* (not the engine's alias layout), so a row pointing at a site of another merchant,
another country or another zone is found out. String columns are mapped through their Parquet
dictionaries, so the per-row work is integer lookups in Numba kernels.
"""

from __future__ import annotations

import datetime as dt

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine_core.kernels.arrivals import MODE_HYBRID, MODE_PHYSICAL, MODE_VIRTUAL
from engine_core.timebase import EPOCH, US_PER_S
from engine_core.world.arrays import MODE_CODES

NULL_CODE = -1  # a null string
UNKNOWN_CODE = -2  # a string that is not in the world's dictionary


@nb.njit(cache=True, nogil=True)
def search_sorted(sorted_ids: np.ndarray, lo: int, hi: int, value: np.uint64) -> int:
    """Index of ``value`` in ``sorted_ids[lo:hi]`` or -1."""
    a = lo
    b = hi
    while a < b:
        mid = (a + b) >> 1
        if sorted_ids[mid] < value:
            a = mid + 1
        else:
            b = mid
    if a < hi and sorted_ids[a] == value:
        return a
    return -1


GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@nb.njit(cache=True, nogil=True, inline="always")
def table_get(slots, bits, key):
    """Value stored under uint64 ``key`` in a :func:`key_table`, or -1."""
    mask = (1 << bits) - 1
    j = np.int64((key * GOLDEN) >> np.uint64(64 - bits))
    while True:
        v = slots[2 * j + 1]
        if v == -1:
            return -1
        if np.uint64(slots[2 * j]) == key:
            return v
        j = (j + 1) & mask


@nb.njit(cache=True)
def _table_fill(slots, bits, keys):
    mask = (1 << bits) - 1
    for i in range(keys.shape[0]):
        j = np.int64((keys[i] * GOLDEN) >> np.uint64(64 - bits))
        while slots[2 * j + 1] != -1 and np.uint64(slots[2 * j]) != keys[i]:
            j = (j + 1) & mask
        slots[2 * j] = np.int64(keys[i])
        slots[2 * j + 1] = i


def key_table(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """(slots, bits) of an open-addressing table mapping ``keys[i]`` (uint64) to i, at most
    half full: one multiply and one or two probes per lookup, no unpredictable search. A slot
    is a (key as int64, value) pair side by side, so a probe reads one cache line."""
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    bits = max(4, int(np.ceil(np.log2(2 * len(keys) + 2))))
    slots = np.zeros(2 << bits, dtype=np.int64)
    slots[1::2] = -1
    _table_fill(slots, bits, keys)
    return slots, bits


@nb.njit(cache=True, nogil=True)
def lookup_series(mid, country, zone, channel, m_ids, s_keys, s_index, n_c, n_z, n_h, m_out, s_out):
    """m_out = merchant index (-1 unknown), s_out = world series index (-1 unknown)."""
    n_m = m_ids.shape[0]
    n_s = s_keys.shape[0]
    last_mid = np.uint64(0)
    last_m = -1
    have = False
    last_key = np.int64(-1)
    last_s = -1
    for i in range(mid.shape[0]):
        if not have or mid[i] != last_mid:
            last_mid = mid[i]
            last_m = search_sorted(m_ids, 0, n_m, mid[i])
            have = True
            last_key = np.int64(-1)
        m_out[i] = last_m
        if last_m < 0 or country[i] < 0 or zone[i] < 0 or channel[i] < 0:
            s_out[i] = -1
            continue
        key = ((np.int64(last_m) * n_c + country[i]) * n_z + zone[i]) * n_h + channel[i]
        if key != last_key:
            last_key = key
            a = 0
            b = n_s
            while a < b:
                c = (a + b) >> 1
                if s_keys[c] < key:
                    a = c + 1
                else:
                    b = c
            last_s = s_index[a] if a < n_s and s_keys[a] == key else -1
        s_out[i] = last_s


def _one_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(col, pa.ChunkedArray):
        return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return col


def _buffer_values(arr: pa.Array, dtype: type) -> np.ndarray:
    """The values buffer of a fixed-width array without copying (nulls hold arbitrary values)."""
    buf = arr.buffers()[1]
    if buf is None or len(arr) == 0:
        return np.zeros(len(arr), dtype=dtype)
    return np.frombuffer(buf, dtype=dtype, count=arr.offset + len(arr))[arr.offset :]


def _bits(arr: pa.Array, buffer: int) -> np.ndarray:
    """A bit-packed Arrow buffer (validity or boolean values) as numpy bool."""
    n = len(arr)
    raw = np.frombuffer(arr.buffers()[buffer], dtype=np.uint8)
    bits = np.unpackbits(raw, count=arr.offset + n, bitorder="little")
    return bits[arr.offset :].view(np.bool_)


_ONES = np.full(1 << 18, 0xFF, dtype=np.uint8)  # an all-valid bitmap for 2M rows


def bitmap(arr: pa.Array | pa.ChunkedArray, values: bool = False) -> tuple[np.ndarray, int]:
    """(bits, offset) of a column's validity bitmap (``values``: of a boolean column's values)
    as Arrow holds it, no copy: row i is set iff bit ``offset + i`` (LSB first) is set. A column
    without nulls gets an all-set bitmap. The scan kernel tests bits itself, so no bool array
    per column and batch is built."""
    arr = _one_array(arr)
    n = len(arr)
    if not values and arr.null_count == 0:
        need = (n + 7) >> 3
        return (_ONES if need <= len(_ONES) else np.full(need, 0xFF, dtype=np.uint8)), 0
    buf = arr.buffers()[1 if values else 0]
    if buf is None or n == 0:
        return np.zeros(1, dtype=np.uint8), 0
    return np.frombuffer(buf, dtype=np.uint8), arr.offset


def unpack(bits: tuple[np.ndarray, int], n: int) -> np.ndarray:
    """The rows of a :func:`bitmap` as numpy bool."""
    raw, offset = bits
    return np.unpackbits(raw, count=offset + n, bitorder="little")[offset:].view(np.bool_)


def bits_at(bits: tuple[np.ndarray, int], rows: np.ndarray) -> np.ndarray:
    """Rows ``rows`` of a :func:`bitmap` as numpy bool."""
    raw, offset = bits
    j = np.asarray(rows, dtype=np.int64) + offset
    return ((raw[j >> 3] >> (j & 7).astype(np.uint8)) & 1).astype(np.bool_)


def validity(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Non-null mask of a column."""
    arr = _one_array(arr)
    if arr.null_count == 0:
        return np.ones(len(arr), dtype=np.bool_)
    return _bits(arr, 0)


def dictionary_parts(
    col: pa.Array | pa.ChunkedArray, index: dict[str, int], with_validity: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(dictionary indices, their table to world codes, validity or None when there is no
    null or ``with_validity`` is false) of a string column (a plain string column is
    dictionary-encoded first). World codes: -2 for a value not in ``index``."""
    col = _one_array(col)
    if not pa.types.is_dictionary(col.type):
        col = pc.dictionary_encode(col)
    values = col.dictionary.to_pylist()
    table = np.array(
        [index.get(v, UNKNOWN_CODE) if v is not None else NULL_CODE for v in values], dtype=np.int32
    )
    idx = col.indices
    raw = _buffer_values(idx, np.dtype(idx.type.to_pandas_dtype()).type)
    return raw, table, validity(idx) if with_validity and idx.null_count else None


def dictionary_codes(col: pa.Array | pa.ChunkedArray, index: dict[str, int]) -> np.ndarray:
    """World codes of a string column (dictionary or plain): -1 null, -2 not in ``index``."""
    raw, table, valid = dictionary_parts(col, index)
    table = np.append(table, np.int32(NULL_CODE))
    if valid is None:
        valid = True
    raw = np.where(valid & (raw >= 0) & (raw < len(table) - 1), raw, len(table) - 1)
    return table[raw]


def _fixed(col: pa.Array | pa.ChunkedArray, typ: pa.DataType, dtype: type) -> np.ndarray:
    """Values of ``col`` as ``typ`` (cast when it is another type) in numpy's ``dtype``,
    zero-copy where no cast is needed."""
    col = _one_array(col)
    if col.type != typ:
        col = col.cast(typ)
    return _buffer_values(col, dtype)


def u64(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Values as uint64 (zero-copy where the type allows); values under nulls are arbitrary,
    see :func:`validity`."""
    return _fixed(col, pa.uint64(), np.uint64)


def i64(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Values as int64 — timestamps as their µs — zero-copy where the type allows; values under
    nulls are arbitrary, see :func:`validity`."""
    col = _one_array(col)
    if pa.types.is_timestamp(col.type):
        if col.type.unit != "us":
            raise TypeError(f"timestamp unit {col.type.unit}, expected us")
    elif col.type != pa.int64():
        col = col.cast(pa.int64())
    return _buffer_values(col, np.int64)


def f64(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Values as float64, zero-copy where the type allows; values under nulls are arbitrary,
    see :func:`validity`."""
    return _fixed(col, pa.float64(), np.float64)


def boolean(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean column as numpy bool (null as False)."""
    col = _one_array(col)
    values = _bits(col, 1) if len(col) else np.zeros(0, dtype=np.bool_)
    return values & validity(col) if col.null_count else values


class WorldIndex:
    """Lookup arrays over the run's world (built once per check call)."""

    def __init__(self, ctx) -> None:
        m = ctx.arrays
        tables = ctx.world.tables
        self.model = m
        self.tzids = list(m.tzids)
        self.countries = list(m.countries)
        self.channels = list(m.channels)
        self.tz_index = {t: i for i, t in enumerate(self.tzids)}
        self.country_index = {c: i for i, c in enumerate(self.countries)}
        self.channel_index = {c: i for i, c in enumerate(self.channels)}

        merchants = tables["merchants"]
        mids = merchants.column("merchant_id").to_numpy().astype(np.uint64)
        order = np.argsort(mids, kind="stable")
        self.m_ids = np.ascontiguousarray(mids[order])
        modes = merchants.column("virtual_mode").to_pylist()
        settle = merchants.column("settlement_tzid").to_pylist()
        self.m_mode = np.array([MODE_CODES[modes[k]] for k in order], dtype=np.int8)
        self.m_settle = np.array(
            [
                self.tz_index.get(settle[k], UNKNOWN_CODE) if settle[k] is not None else NULL_CODE
                for k in order
            ],
            dtype=np.int32,
        )
        n_m = len(self.m_ids)

        # series: composite key (merchant index, country, zone, channel) -> series index
        s_m = np.searchsorted(self.m_ids, m.merchant_id).astype(np.int64)
        self.series_merchant = s_m
        self.n_c = max(len(self.countries), 1)
        self.n_z = max(len(self.tzids), 1)
        self.n_h = max(len(self.channels), 1)
        keys = (
            ((s_m * self.n_c + m.country_idx) * self.n_z + m.zone_idx) * self.n_h + m.channel_idx
        ).astype(np.int64)
        korder = np.argsort(keys, kind="stable")
        self.s_keys = np.ascontiguousarray(keys[korder])
        self.s_index = np.ascontiguousarray(korder.astype(np.int64))
        self.series_table = key_table(keys.astype(np.uint64))  # value = series index
        self.series_country = np.ascontiguousarray(m.country_idx, dtype=np.int32)
        self.series_zone = np.ascontiguousarray(m.zone_idx, dtype=np.int32)
        self.series_channel = np.ascontiguousarray(m.channel_idx, dtype=np.int32)
        self.series_mode = np.ascontiguousarray(m.mode, dtype=np.int8)
        # (country, zone) of a series side by side: one cache line per row of the scan
        self.series_info = np.ascontiguousarray(
            np.stack([self.series_country, self.series_zone], axis=1), dtype=np.int32
        )

        # sites and edges sorted by (merchant, id), with each merchant's range
        sites = tables["sites"]
        s_mid = sites.column("merchant_id").to_numpy().astype(np.uint64)
        s_id = sites.column("site_id").to_numpy().astype(np.uint64)
        so = np.lexsort((s_id, s_mid))
        self.site_ids = np.ascontiguousarray(s_id[so])
        self.site_merchant = np.searchsorted(self.m_ids, s_mid[so]).astype(np.int64)
        cc = sites.column("legal_country_iso").to_pylist()
        tz = sites.column("tzid").to_pylist()
        self.site_country = np.array(
            [self.country_index.get(cc[k], UNKNOWN_CODE) for k in so], dtype=np.int32
        )
        self.site_zone = np.array(
            [self.tz_index.get(tz[k], UNKNOWN_CODE) for k in so], dtype=np.int32
        )
        self.site_weight = sites.column("weight").to_numpy().astype(np.float64)[so]
        self.m_site_lo = np.searchsorted(self.site_merchant, np.arange(n_m)).astype(np.int64)
        self.m_site_hi = np.searchsorted(self.site_merchant, np.arange(n_m), side="right").astype(
            np.int64
        )
        self.site_table = key_table(self.site_ids)  # value = position in site_ids
        # (merchant index, country, zone) of a site in one 16-byte row
        self.site_info = np.zeros((len(self.site_ids), 4), dtype=np.int32)
        self.site_info[:, 0] = self.site_merchant
        self.site_info[:, 1] = self.site_country
        self.site_info[:, 2] = self.site_zone
        set_key = (self.site_merchant * self.n_c + self.site_country) * self.n_z + self.site_zone
        _, self.site_set = np.unique(set_key, return_inverse=True)

        edges = tables["edges"]
        e_mid = edges.column("merchant_id").to_numpy().astype(np.uint64)
        e_id = edges.column("edge_id").to_numpy().astype(np.uint64)
        eo = np.lexsort((e_id, e_mid))
        self.edge_ids = np.ascontiguousarray(e_id[eo])
        self.edge_merchant = np.searchsorted(self.m_ids, e_mid[eo]).astype(np.int64)
        self.edge_table = key_table(self.edge_ids)
        etz = edges.column("tzid").to_pylist()
        self.edge_zone = np.array(
            [self.tz_index.get(etz[k], UNKNOWN_CODE) for k in eo], dtype=np.int32
        )
        self.edge_weight = edges.column("weight").to_numpy().astype(np.float64)[eo]
        self.edge_info = np.ascontiguousarray(
            np.stack([self.edge_merchant, self.edge_zone], axis=1), dtype=np.int32
        )
        self.m_edge_lo = np.searchsorted(self.edge_merchant, np.arange(n_m)).astype(np.int64)
        self.m_edge_hi = np.searchsorted(self.edge_merchant, np.arange(n_m), side="right").astype(
            np.int64
        )

    def scan_args(self) -> tuple:
        """The world's arguments of the S4 scan kernel (event_scan.scan_rows), in order."""
        return (
            self.m_ids,
            *self.series_table,
            self.n_c,
            self.n_z,
            self.n_h,
            self.m_mode,
            self.m_settle,
            self.series_info,
            *self.site_table,
            self.site_info,
            *self.edge_table,
            self.edge_info,
        )

    # ------------------------------------------------------------------ resolving rows
    def series_of(
        self, mid: np.ndarray, country: np.ndarray, zone: np.ndarray, channel: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(merchant index, series index) per row; -1 where not in the world."""
        n = len(mid)
        m_out = np.empty(n, dtype=np.int64)
        s_out = np.empty(n, dtype=np.int64)
        lookup_series(
            np.ascontiguousarray(mid, dtype=np.uint64),
            np.ascontiguousarray(country, dtype=np.int32),
            np.ascontiguousarray(zone, dtype=np.int32),
            np.ascontiguousarray(channel, dtype=np.int32),
            self.m_ids,
            self.s_keys,
            self.s_index,
            self.n_c,
            self.n_z,
            self.n_h,
            m_out,
            s_out,
        )
        return m_out, s_out

    def series_rows(self, tbl: pa.Table | pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        mid = u64(tbl.column("merchant_id"))
        return self.series_of(
            mid,
            dictionary_codes(tbl.column("legal_country_iso"), self.country_index),
            dictionary_codes(tbl.column("zone_tzid"), self.tz_index),
            dictionary_codes(tbl.column("channel_group"), self.channel_index),
        )

    # ------------------------------------------------------------------ labels for examples
    def series_label(self, s: int) -> str:
        m = self.model
        return f"{int(m.merchant_id[s])}|{m.country[s]}|{m.zone_tzid[s]}|{m.channel[s]}"

    @staticmethod
    def utc_label(us: int) -> str:
        t = EPOCH + dt.timedelta(microseconds=int(us))
        return (
            t.strftime("%Y-%m-%dT%H:%M:%S")
            + (f".{t.microsecond:06d}" if t.microsecond else "")
            + "Z"
        )

    def cell_label(self, s: int, bucket_abs: int, bucket_seconds: int) -> str:
        start = self.utc_label(bucket_abs * bucket_seconds * US_PER_S)
        return f"series={self.series_label(s)} bucket={start}"


__all__ = [
    "MODE_HYBRID",
    "MODE_PHYSICAL",
    "MODE_VIRTUAL",
    "NULL_CODE",
    "UNKNOWN_CODE",
    "WorldIndex",
    "bitmap",
    "bits_at",
    "boolean",
    "dictionary_codes",
    "dictionary_parts",
    "i64",
    "u64",
    "unpack",
    "validity",
]
