"""One streaming pass over an arrival_events partition, feeding every S4 rule.

The partition is read a row group at a time (the next one decoded in a background thread while
the current one is scanned); memory holds two row groups plus per-cell and per-target tallies,
never the partition. The per-row work is one Numba kernel,
:func:`scan_rows`, which sets a bit per failed rule on each row and updates the tallies the
statistical rules need. Carried across batches (and files): the previous row (sort order) and
each merchant's last arrival_seq and ts_utc.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from engine_core.checks.world_index import search_sorted, table_get
from engine_core.kernels.arrivals import MODE_HYBRID, MODE_PHYSICAL, MODE_VIRTUAL
from engine_core.kernels.parallel import parallel_for
from engine_core.schemas import EVENT_COLUMNS

# row flags: one bit per failed rule
F_IN_BUCKET = 1 << 0
F_ROUTING = 1 << 1
F_TARGET = 1 << 2
F_SORTED = 1 << 3
F_SEQ = 1 << 4
F_OFF_GRID = 1 << 5  # series unknown or bucket not in the grid: no S3 cell (conservation)
F_LOCAL = 1 << 6
F_NEED_LOCAL = 1 << 7  # ts_local needs a per-row reference conversion
F_NEED_SETTLE = 1 << 8  # ts_local_settlement needs a per-row reference conversion

# stats slots
ST_ROWS = 0
ST_HYBRID = 1  # events of HYBRID merchants (S4.hybrid.v1 blocks)
ST_HYBRID_VIRTUAL = 2
ST_VIRTUAL = 3  # is_virtual (S4.edge.v1 blocks)
ST_PHYSICAL = 4  # not is_virtual (S4.site.v1 blocks)
ST_IN_BUCKET = 5  # rows whose offset entered the uniformity histogram
N_STATS = 6

UNIFORMITY_BINS = 100
# the scan reads every contract column of arrival_events
COLUMNS = [c.name for c in EVENT_COLUMNS]


@nb.njit(cache=True, nogil=True)
def _hash_slot(hkeys, hbits, key):
    mask = (1 << hbits) - 1
    h = (np.uint64(key) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - hbits)
    i = np.int64(h)
    while True:
        k = hkeys[i]
        if k == key:
            return i
        if k == -1:
            return -1
        i = (i + 1) & mask


def sample_table(cells: np.ndarray) -> tuple[np.ndarray, int]:
    """Open-addressing table of the sampled cell keys (-1 = empty) for :func:`scan_rows`."""
    bits = max(4, int(np.ceil(np.log2(max(len(cells), 1) * 2 + 1))))
    table = np.full(1 << bits, -1, dtype=np.int64)
    _fill_table(table, bits, np.ascontiguousarray(cells, dtype=np.int64))
    return table, bits


@nb.njit(cache=True)
def _fill_table(table, bits, cells):
    mask = (1 << bits) - 1
    for c in cells:
        i = np.int64((np.uint64(c) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits))
        while table[i] != -1 and table[i] != c:
            i = (i + 1) & mask
        table[i] = c


def uniformity_edges(bucket_us: int, n_bins: int = UNIFORMITY_BINS) -> np.ndarray:
    """edges[k] = ⌈k·D/K⌉: integer offsets x in [0, D) have ⌊x·K/D⌋ = k iff
    edges[k] ≤ x < edges[k+1]."""
    k = np.arange(n_bins + 1, dtype=np.int64)
    return -((-k * bucket_us) // n_bins)


@nb.njit(cache=True, nogil=True, inline="always")
def _code(table, raw, i):
    """World code of dictionary index raw[i] through a batch's translation table."""
    r = raw[i]
    if r < 0 or r >= table.shape[0]:
        return -2
    return table[r]


@nb.njit(cache=True, nogil=True, inline="always")
def _bit(bits, j):
    """Bit j of an Arrow bitmap (least significant bit first)."""
    return ((bits[j >> 3] >> (j & 7)) & 1) != 0


@nb.njit(cache=True, nogil=True)
def all_within(values, lo, hi):
    """Whether every value lies in [lo, hi] (stops at the first that does not)."""
    for v in values:
        if v < lo or v > hi:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def scan_rows(
    mid,
    country_raw,
    zone_raw,
    channel_raw,
    bstart,
    seq,
    ts,
    tz_raw,
    local,
    stz_raw,
    stz_vb,
    stz_vo,
    slocal,
    sl_vb,
    sl_vo,
    site,
    site_vb,
    site_vo,
    edge,
    edge_vb,
    edge_vo,
    virt_b,
    virt_o,
    virt_vb,
    virt_vo,
    country_map,
    zone_map,
    channel_map,
    tz_map,
    stz_map,
    m_ids,
    st_slots,
    st_bits,
    n_c,
    n_z,
    n_h,
    m_mode,
    m_settle,
    series_info,
    sit_slots,
    sit_bits,
    site_info,
    et_slots,
    et_bits,
    edge_info,
    first_bucket,
    n_buckets,
    bucket_us,
    ref_off,
    hkeys,
    hbits,
    bin_edges,
    cell_counts,
    site_hits,
    edge_hits,
    uniform_hist,
    stats,
    carry_mid,
    carry_ts_seq,
    carry_valid,
    last_seq,
    last_ts,
    flags,
    hit_rows,
    hit_cells,
):
    """Per-row rule checks of one batch; returns the number of rows in sampled cells.

    String columns arrive as their Parquet dictionary indices with a per-batch table to world
    codes; the series of a row, its site and its edge are found through hash tables
    (world_index.key_table). Validity (and is_virtual's values) arrive as Arrow bitmaps with
    their offsets (world_index.bitmap). Every ``flags[i]`` is written; rows of sampled cells
    are listed in ``hit_rows`` with their cell in ``hit_cells``."""
    n = mid.shape[0]
    n_m = m_ids.shape[0]
    n_bins = uniform_hist.shape[0]
    bin_scale = n_bins / bucket_us
    no_offset = np.iinfo(np.int64).min
    n_hits = 0
    n_hybrid = 0
    n_hybrid_virtual = 0
    n_virtual = 0
    n_in_bucket = 0
    have_prev = carry_valid[0]
    pm = carry_mid[0]
    pt = carry_ts_seq[0]
    ps = carry_ts_seq[1]
    have_m = False
    last_mid = np.uint64(0)
    mi = -1
    last_key = np.int64(-1)
    s = -1
    have_bs = False
    last_bs = np.int64(0)
    b = np.int64(0)
    aligned = False
    for i in range(n):
        f = 0
        t = ts[i]
        q = seq[i]
        # ---- merchant and series of the row
        if not have_m or mid[i] != last_mid:
            have_m = True
            last_mid = mid[i]
            mi = search_sorted(m_ids, 0, n_m, mid[i])
            last_key = np.int64(-1)
        c = _code(country_map, country_raw, i)
        zz = _code(zone_map, zone_raw, i)
        h = _code(channel_map, channel_raw, i)
        if mi < 0 or c < 0 or zz < 0 or h < 0:
            s = -1
            last_key = np.int64(-1)
        else:
            key = ((np.int64(mi) * n_c + c) * n_z + zz) * n_h + h
            if key != last_key:
                last_key = key
                s = table_get(st_slots, st_bits, np.uint64(key))
        # ---- sort order (merchant_id, ts_utc, arrival_seq), carried across batches
        if have_prev and (mid[i] < pm or (mid[i] == pm and (t < pt or (t == pt and q < ps)))):
            f |= F_SORTED
        have_prev = True
        pm = mid[i]
        pt = t
        ps = q
        # ---- arrival_seq 1.. per merchant without gaps, ts non-decreasing along it
        if mi >= 0:
            if q != last_seq[mi] + 1 or t < last_ts[mi]:
                f |= F_SEQ
            last_seq[mi] = q
            last_ts[mi] = t
        # ---- the row's bucket; ts_utc in [bucket_start, bucket_start + D)
        bs = bstart[i]
        if not have_bs or bs != last_bs:  # rows come in runs of one bucket: divide per run
            have_bs = True
            last_bs = bs
            b = bs // bucket_us - first_bucket
            aligned = bs == (b + first_bucket) * bucket_us
        off = t - bs
        if off < 0 or off >= bucket_us:
            f |= F_IN_BUCKET
            bt = t // bucket_us - first_bucket
        else:
            k = np.int64(off * bin_scale)
            if k >= n_bins:
                k = n_bins - 1
            while k > 0 and off < bin_edges[k]:
                k -= 1
            while k < n_bins - 1 and off >= bin_edges[k + 1]:
                k += 1
            uniform_hist[k] += 1
            n_in_bucket += 1
            bt = b if aligned else t // bucket_us - first_bucket
        # ---- the S3 cell of the row
        cell = -1
        if s >= 0 and aligned and b >= 0 and b < n_buckets:
            cell = s * n_buckets + b
            cell_counts[cell] += 1
            if _hash_slot(hkeys, hbits, cell) >= 0:
                hit_rows[n_hits] = i
                hit_cells[n_hits] = cell
                n_hits += 1
        else:
            f |= F_OFF_GRID
        # ---- exactly one target; is_virtual and the merchant's mode agree
        sv = _bit(site_vb, site_vo + i)
        ev = _bit(edge_vb, edge_vo + i)
        v = _bit(virt_b, virt_o + i) and _bit(virt_vb, virt_vo + i)
        if sv == ev or v != ev:
            f |= F_TARGET
        if v:
            n_virtual += 1
        settle_expected = False
        if mi >= 0:
            mode = m_mode[mi]
            if (mode == MODE_PHYSICAL and v) or (mode == MODE_VIRTUAL and not v):
                f |= F_TARGET
            if mode == MODE_HYBRID:
                n_hybrid += 1
                if v:
                    n_hybrid_virtual += 1
            settle_expected = v and m_settle[mi] >= 0
        has_settle = _bit(stz_vb, stz_vo + i)
        has_slocal = _bit(sl_vb, sl_vo + i)
        zs = _code(stz_map, stz_raw, i) if has_settle else -1
        if has_settle != settle_expected or has_slocal != has_settle:
            f |= F_TARGET
        # ---- routing membership
        z = _code(tz_map, tz_raw, i)
        if mi < 0 or s < 0:
            f |= F_ROUTING
        else:
            if sv:
                k = table_get(sit_slots, sit_bits, site[i])
                if (
                    k < 0
                    or site_info[k, 0] != mi
                    or site_info[k, 1] != series_info[s, 0]
                    or site_info[k, 2] != series_info[s, 1]
                    or z != site_info[k, 2]
                ):
                    f |= F_ROUTING
                elif not ev:
                    site_hits[k] += 1
            if ev:
                k = table_get(et_slots, et_bits, edge[i])
                if k < 0 or edge_info[k, 0] != mi or z != edge_info[k, 1]:
                    f |= F_ROUTING
                elif not sv:
                    edge_hits[k] += 1
            if has_settle and zs != m_settle[mi]:
                f |= F_ROUTING
        # ---- ts_local against the reference table (or a per-row conversion)
        in_window = bt >= 0 and bt < n_buckets
        if z >= 0 and in_window and ref_off[z, bt] != no_offset:
            if local[i] != t + ref_off[z, bt]:
                f |= F_LOCAL
        else:
            f |= F_NEED_LOCAL
        if has_settle and has_slocal:
            if zs >= 0 and in_window and ref_off[zs, bt] != no_offset:
                if slocal[i] != t + ref_off[zs, bt]:
                    f |= F_LOCAL
            else:
                f |= F_NEED_SETTLE
        flags[i] = f
    carry_valid[0] = have_prev
    carry_mid[0] = pm
    carry_ts_seq[0] = pt
    carry_ts_seq[1] = ps
    stats[ST_ROWS] += n
    stats[ST_HYBRID] += n_hybrid
    stats[ST_HYBRID_VIRTUAL] += n_hybrid_virtual
    stats[ST_VIRTUAL] += n_virtual
    stats[ST_PHYSICAL] += n - n_virtual
    stats[ST_IN_BUCKET] += n_in_bucket
    return n_hits


# ids are scattered into 2**DUP_BITS buckets by their top bits: 1024 write streams for the
# scatter and, for a class of 8 M ids, a table of 128 KB per bucket (4096 buckets cost the
# scatter twice as much for tables a quarter the size: 0.087 against 0.067 CPU-s a class)
DUP_BITS = 10


def duplicate_ids(ids, examples, n_chunks, scratch=None, bits=DUP_BITS):
    """(number of arrival_ids equal to an earlier one, m): ``examples[:m]`` holds m distinct
    duplicated values (one a bucket, m at most len(examples)).
    ``scratch`` (uint64, at least ``len(ids)``), when given, holds the scattered ids instead of
    a fresh array: a class after class loop then faults and zeroes its pages once.

    The ids are scattered by their top ``bits`` bits (they are hash outputs, so the buckets are
    even; a skewed input only costs time) in parallel chunks, then each bucket goes through a
    small open-addressing set of its own, in parallel: linear work, cache-sized tables. The
    scatter keeps each bucket's ids in input order whatever the chunking, so the result does
    not depend on ``n_chunks`` or the threads (the examples chosen depend on ``bits``)."""
    n_b = 1 << bits
    shift = 64 - bits
    n = ids.shape[0]
    n_chunks = max(1, min(int(n_chunks), max(n, 1)))
    step = (n + n_chunks - 1) // n_chunks
    hist = np.zeros((n_chunks, n_b), dtype=np.int64)
    parallel_for(_dup_hist, n_chunks, ids, step, hist, shift, tasks=n_chunks)
    start = np.zeros(n_b + 1, dtype=np.int64)
    np.cumsum(hist.sum(axis=0), out=start[1:])
    # chunk c's ids of bucket k go after those of chunks < c
    pos = start[:-1][None, :] + np.cumsum(hist, axis=0) - hist
    out = scratch[:n] if scratch is not None and scratch.size >= n else np.empty(n, np.uint64)
    parallel_for(_dup_scatter, n_chunks, ids, step, pos, out, shift, tasks=n_chunks)
    dups = np.zeros(n_b, dtype=np.int64)
    first = np.zeros(n_b, dtype=np.uint64)
    parallel_for(_dup_buckets, n_b, start, out, dups, first)
    hit = np.flatnonzero(dups)
    m = min(len(hit), examples.shape[0])
    examples[:m] = first[hit[:m]]
    return int(dups.sum()), m


@nb.njit(cache=True, nogil=True)
def _dup_hist(c_lo, c_hi, ids, step, hist, bucket_shift):
    shift = np.uint64(bucket_shift)
    n = ids.shape[0]
    for c in range(c_lo, c_hi):
        for i in range(c * step, min(n, (c + 1) * step)):
            hist[c, np.int64(ids[i] >> shift)] += 1


@nb.njit(cache=True, nogil=True)
def _dup_scatter(c_lo, c_hi, ids, step, pos, out, bucket_shift):
    shift = np.uint64(bucket_shift)
    n = ids.shape[0]
    for c in range(c_lo, c_hi):
        for i in range(c * step, min(n, (c + 1) * step)):
            k = np.int64(ids[i] >> shift)
            out[pos[c, k]] = ids[i]
            pos[c, k] += 1


@nb.njit(cache=True, nogil=True)
def _dup_buckets(k_lo, k_hi, start, out, dups, first):
    for k in range(k_lo, k_hi):
        lo = start[k]
        hi = start[k + 1]
        size = 16
        while size < 2 * (hi - lo) + 2:
            size <<= 1
        mask = size - 1
        table = np.zeros(size, dtype=np.uint64)
        zero_seen = False
        for i in range(lo, hi):
            x = out[i]
            if x == 0:  # 0 marks an empty slot; count it on the side
                if zero_seen:
                    if dups[k] == 0:
                        first[k] = x
                    dups[k] += 1
                zero_seen = True
                continue
            j = np.int64((x * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)) & mask
            while True:
                y = table[j]
                if y == 0:
                    table[j] = x
                    break
                if y == x:
                    if dups[k] == 0:
                        first[k] = x
                    dups[k] += 1
                    break
                j = (j + 1) & mask


@nb.njit(cache=True, nogil=True)
def split_by_class(ids, mask, out, bounds):
    """Counting sort of ``ids`` by their low bits (``id & mask``) into ``out``; class p's ids
    end up in out[bounds[p]:bounds[p+1]], in their original order."""
    n_cls = bounds.shape[0] - 1
    counts = np.zeros(n_cls, dtype=np.int64)
    for i in range(ids.shape[0]):
        counts[np.int64(ids[i] & mask)] += 1
    bounds[0] = 0
    for p in range(n_cls):
        bounds[p + 1] = bounds[p] + counts[p]
    pos = bounds[:-1].copy()
    for i in range(ids.shape[0]):
        p = np.int64(ids[i] & mask)
        out[pos[p]] = ids[i]
        pos[p] += 1


@nb.njit(cache=True, nogil=True)
def subtract_counts(cell_counts, cells, counts):
    """cell_counts[cells[i]] -= counts[i]: events minus S3 counts, per cell."""
    for i in range(cells.shape[0]):
        cell_counts[cells[i]] -= counts[i]
