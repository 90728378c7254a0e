"""S4 arrival kernel: µs placement, routing, local clocks, in sorted output order.

For arrival j of S3 row (series s, absolute bucket B, count N), every family uses the Philox
counter (ctr_lo = j, ctr_hi = B) under the series' key of that family (docs/rng.md):

- S4.time.v1:   ts_utc = B·D + ⌊U(out0)·D⌋ µs;  arrival_id = out1 (a 64-bit hash of the
  stream, bucket and j: partition- and insertion-invariant; uniqueness is checked in S5)
- S4.hybrid.v1: HYBRID merchants only: virtual when U(out0) < p_virtual_hybrid
- S4.site.v1:   physical arrivals: alias pick over the sites of (merchant, country, tzid)
- S4.edge.v1:   virtual arrivals: alias pick over the merchant's edges

Rows arrive sorted by (merchant, bucket, series). Within each (merchant, bucket) group the
events are ordered by (ts_utc, series order, j); since groups cover disjoint buckets, the
concatenation is sorted by (merchant_id, ts_utc) and arrival_seq follows from positions.
Every value depends only on (key, counter), so the result is identical for any thread count.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from engine_core.kernels.parallel import parallel_for
from engine_core.kernels.zone_offsets import offset_at, offset_span
from engine_core.rng.philox import philox_block, to_uniform
from engine_core.rng.samplers import alias_pick, place_us
from engine_core.timebase import US_PER_S as US

MODE_PHYSICAL = 0
MODE_HYBRID = 1
MODE_VIRTUAL = 2
# Tie-break field width inside a (merchant, bucket) group's sort key: (offset << 24) | index.
GROUP_INDEX_BITS = 24
MAX_GROUP_EVENTS = 1 << GROUP_INDEX_BITS


@nb.njit(cache=True, nogil=True, inline="always")
def route_arrival(ctr_lo, ctr_hi, s, m, key_site, key_edge, key_hybrid, site_lo, site_n,
                  edge_lo, edge_n, site_prob, site_alias, site_zone, edge_prob, edge_alias,
                  edge_zone, p_hybrid):
    """Routing of arrival (ctr_lo = j, ctr_hi = bucket) of series s: the HYBRID coin
    (S4.hybrid.v1), then a site (S4.site.v1) or edge (S4.edge.v1) by alias. Returns
    (is_virtual, target index in the site or edge layout, tz index of the target)."""
    # the coin's block is drawn for every arrival and used for HYBRID series only: no branch
    # to mispredict on the merchant's mode (measured 25 % faster S4 kernel), same law
    h0, _ = philox_block(ctr_lo, ctr_hi, key_hybrid[s])
    virtual = (m == MODE_VIRTUAL) or (m == MODE_HYBRID and to_uniform(h0) < p_hybrid)
    if virtual:
        x0, _ = philox_block(ctr_lo, ctr_hi, key_edge[s])
        tgt = edge_lo[s] + alias_pick(edge_prob, edge_alias, edge_lo[s], edge_n[s],
                                      to_uniform(x0))
        return True, tgt, edge_zone[tgt]
    x0, _ = philox_block(ctr_lo, ctr_hi, key_site[s])
    tgt = site_lo[s] + alias_pick(site_prob, site_alias, site_lo[s], site_n[s], to_uniform(x0))
    return False, tgt, site_zone[tgt]


def generate_events(
    row_series, row_bucket, row_offset,  # [R], [R], [R+1]
    key_time, key_site, key_edge, key_hybrid, mode,  # per series
    site_lo, site_n, edge_lo, edge_n, settle_zone,  # per series
    site_prob, site_alias, site_zone,  # per site (alias layout order)
    edge_prob, edge_alias, edge_zone,  # per edge (alias layout order)
    p_hybrid, bucket_us,
    zone_start, trans_us, offset_s,
    ts_out, aid_out, target_out, virtual_out, zone_out, local_out, settle_out,
):
    """The law's events of S3 rows, laid out row after row (the reference kernel: the
    validation re-derives S4 with it). Rows in parallel ranges."""
    parallel_for(
        _generate_rows, row_series.shape[0], row_series, row_bucket, row_offset, key_time,
        key_site, key_edge, key_hybrid, mode, site_lo, site_n, edge_lo, edge_n, settle_zone,
        site_prob, site_alias, site_zone, edge_prob, edge_alias, edge_zone, p_hybrid,
        bucket_us, zone_start, trans_us, offset_s, ts_out, aid_out, target_out, virtual_out,
        zone_out, local_out, settle_out)


@nb.njit(cache=True, nogil=True)
def _generate_rows(
    r_lo, r_hi,
    row_series, row_bucket, row_offset, key_time, key_site, key_edge, key_hybrid, mode,
    site_lo, site_n, edge_lo, edge_n, settle_zone, site_prob, site_alias, site_zone,
    edge_prob, edge_alias, edge_zone, p_hybrid, bucket_us, zone_start, trans_us, offset_s,
    ts_out, aid_out, target_out, virtual_out, zone_out, local_out, settle_out,
):
    for r in range(r_lo, r_hi):
        s = row_series[r]
        b = row_bucket[r]
        start_us = b * bucket_us
        ctr_hi = np.uint64(b)
        m = mode[s]
        for j in range(row_offset[r + 1] - row_offset[r]):
            e = row_offset[r] + j
            ctr_lo = np.uint64(j)
            t0, t1 = philox_block(ctr_lo, ctr_hi, key_time[s])
            ts = place_us(start_us, bucket_us, to_uniform(t0))
            virtual, tgt, zone = route_arrival(
                ctr_lo, ctr_hi, s, m, key_site, key_edge, key_hybrid, site_lo, site_n, edge_lo,
                edge_n, site_prob, site_alias, site_zone, edge_prob, edge_alias, edge_zone,
                p_hybrid)
            ts_out[e] = ts
            aid_out[e] = t1
            target_out[e] = tgt
            virtual_out[e] = virtual
            zone_out[e] = zone
            local_out[e] = ts + np.int64(offset_at(zone_start, trans_us, offset_s, zone, ts)) * US
            sz = settle_zone[s]
            if virtual and sz >= 0:
                off = offset_at(zone_start, trans_us, offset_s, sz, ts)
                settle_out[e] = ts + np.int64(off) * US
            else:
                settle_out[e] = 0


@nb.njit(cache=True, nogil=True)
def _sift_down(a, lo, root, end):
    while True:
        child = 2 * root + 1
        if child >= end:
            return
        if child + 1 < end and a[lo + child] < a[lo + child + 1]:
            child += 1
        if a[lo + root] >= a[lo + child]:
            return
        a[lo + root], a[lo + child] = a[lo + child], a[lo + root]
        root = child


@nb.njit(cache=True, nogil=True)
def _heap_sort(a, lo, hi):
    n = hi - lo
    for start in range(n // 2 - 1, -1, -1):
        _sift_down(a, lo, start, n)
    for end in range(n - 1, 0, -1):
        a[lo], a[lo + end] = a[lo + end], a[lo]
        _sift_down(a, lo, 0, end)


@nb.njit(cache=True, nogil=True)
def sort_keys(a):
    """Sort an int64 array in place: introsort (quicksort with median-of-three pivots,
    insertion sort below 16 elements, heap sort past a depth of 2·log2 n). Same result as
    ``a.sort()``; written out because Numba's generic sort costs ~1.8 s of cold compile."""
    n = a.shape[0]
    if n < 2:
        return
    limit = 2
    m = n
    while m > 1:
        m >>= 1
        limit += 2
    stack = np.empty((3 * limit + 3, 3), dtype=np.int64)
    top = 0
    stack[0, 0] = 0
    stack[0, 1] = n
    stack[0, 2] = limit
    top = 1
    while top > 0:
        top -= 1
        lo = stack[top, 0]
        hi = stack[top, 1]
        depth = stack[top, 2]
        while hi - lo > 16:
            if depth == 0:
                _heap_sort(a, lo, hi)
                lo = hi
                break
            depth -= 1
            mid = lo + (hi - lo) // 2
            # median of three to a[mid], then partition around it (Hoare)
            if a[mid] < a[lo]:
                a[mid], a[lo] = a[lo], a[mid]
            if a[hi - 1] < a[mid]:
                a[hi - 1], a[mid] = a[mid], a[hi - 1]
                if a[mid] < a[lo]:
                    a[mid], a[lo] = a[lo], a[mid]
            pivot = a[mid]
            i = lo
            j = hi - 1
            while True:
                while a[i] < pivot:
                    i += 1
                while pivot < a[j]:
                    j -= 1
                if i >= j:
                    break
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
            # [lo, j+1) <= pivot <= [j+1, hi): push the larger part, loop on the smaller
            if j + 1 - lo > hi - j - 1:
                stack[top, 0] = lo
                stack[top, 1] = j + 1
                stack[top, 2] = depth
                top += 1
                lo = j + 1
            else:
                stack[top, 0] = j + 1
                stack[top, 1] = hi
                stack[top, 2] = depth
                top += 1
                hi = j + 1
        for i in range(lo + 1, hi):
            x = a[i]
            k = i - 1
            while k >= lo and a[k] > x:
                a[k + 1] = a[k]
                k -= 1
            a[k + 1] = x


def order_groups(group_evt_lo, group_bucket_start, ts, order_out):
    """order_out[k] = index of the k-th event in (merchant, ts_utc, series order, j) order."""
    parallel_for(_order_groups, group_evt_lo.shape[0] - 1, group_evt_lo, group_bucket_start,
                 ts, order_out)


@nb.njit(cache=True, nogil=True)
def _order_groups(g_lo, g_hi, group_evt_lo, group_bucket_start, ts, order_out):
    for g in range(g_lo, g_hi):
        lo = group_evt_lo[g]
        hi = group_evt_lo[g + 1]
        n = hi - lo
        keys = np.empty(n, dtype=np.int64)
        base = group_bucket_start[g]
        for i in range(n):
            keys[i] = ((ts[lo + i] - base) << GROUP_INDEX_BITS) | i
        sort_keys(keys)
        mask = np.int64(MAX_GROUP_EVENTS - 1)
        for i in range(n):
            order_out[lo + i] = lo + (keys[i] & mask)


def event_rows(row_offset, out):
    """out[e] = the S3 row of event e (events laid out row after row)."""
    parallel_for(_event_rows, row_offset.shape[0] - 1, row_offset, out)


@nb.njit(cache=True, nogil=True)
def _event_rows(r_lo, r_hi, row_offset, out):
    for r in range(r_lo, r_hi):
        for e in range(row_offset[r], row_offset[r + 1]):
            out[e] = r


# The one kernel left to Numba's parfors (the others run serial ranges through
# kernels/parallel.py, which compile in a third of the time): a parfor gufunc marks its
# array arguments noalias, and this kernel's loads and stores run 1.5-2x faster for it
# (measured per event on 4 S4 chunks of the reference world: 160 vs 250-300 ns at 2 threads).
# The group's work is written out inside the block loop rather than called as a function:
# a call per group passing ~55 arrays cost a third of the kernel (A/B on reference chunks:
# 44.7 -> 27.6 ns/event at 2 threads, 0.67x at one thread).
@nb.njit(cache=True, nogil=True, parallel=True)
def realise_groups(
    block_lo,  # [B+1]: group ranges of the work blocks (balanced by events)
    group_row_lo, group_evt_lo, group_seq0,  # [G+1], [G+1], [G]
    row_series, row_bucket, row_count,  # per S3 row of the chunk
    key_time, key_site, key_edge, key_hybrid, mode,  # per series
    site_lo, site_n, edge_lo, edge_n, settle_zone,  # per series
    merchant_id, country_idx, zone_idx, channel_idx,  # per series
    site_prob, site_alias, site_zone, site_id,  # per site (alias layout order)
    edge_prob, edge_alias, edge_zone, edge_id,  # per edge (alias layout order)
    p_hybrid, bucket_us, zone_start, trans_us, offset_s,
    o_aid, o_mid, o_country, o_zone, o_channel, o_bucket, o_seq, o_ts, o_tz, o_local,
    o_settle_tz, o_settle_local, o_site, o_edge, o_virtual,
):
    """Generate, order and write the events of each (merchant, bucket) group in one pass.

    Same law and same bytes as generate_events + order_groups + assemble_events: every
    block of a group (time, coin, site or edge) is drawn first, in row, then j order, into
    the group's scratch, and the group is sorted by (ts_utc, row, j); clocks and every
    output column are then produced in sorted order straight into the output arrays. A
    group's scratch stays in cache; nothing of chunk size is gathered.
    Null entries as in assemble_events (masks: o_virtual, ~o_virtual, o_settle_tz < 0).
    """
    mask = np.int64(MAX_GROUP_EVENTS - 1)
    n_zones = zone_start.shape[0] - 1
    for blk in nb.prange(block_lo.shape[0] - 1):
        # scratch of the block, sized for its largest group, reused group after group
        m = 1
        for g in range(block_lo[blk], block_lo[blk + 1]):
            m = max(m, group_evt_lo[g + 1] - group_evt_lo[g])
        scratch_i = np.empty((6, m + 1), dtype=np.int64)
        aid_l = np.empty(m, dtype=np.uint64)
        # per zone: the group whose bucket the cached offset covers, and that offset
        zone_group = np.full(n_zones, -1, dtype=np.int64)
        zone_off = np.zeros(n_zones, dtype=np.int64)
        for g in range(block_lo[blk], block_lo[blk + 1]):
            lo = group_evt_lo[g]
            n = group_evt_lo[g + 1] - lo
            # per event of the group, in draw order (row after row, j after j): the sort
            # key (offset in the bucket, index; packed with GROUP_INDEX_BITS, a group has
            # < 2^24 events), the series, and the routing (target, and zone·2 + virtual).
            # Routing here rather than in sorted order: a row's series, keys and mode stay
            # put while its arrivals' blocks are drawn, and the blocks of one arrival (time,
            # coin, site or edge) share their counter. ts_utc is the bucket start plus the
            # key's offset.
            keys = scratch_i[0, :n]
            s_l = scratch_i[1, :n]
            tgt_l = scratch_i[4, :n]
            zv_l = scratch_i[5, :n]
            row0 = group_row_lo[g]
            start_us = row_bucket[row0] * bucket_us
            end_us = start_us + bucket_us
            ctr_hi = np.uint64(row_bucket[row0])  # one bucket per group
            i = 0
            for r in range(group_row_lo[g], group_row_lo[g + 1]):
                s = row_series[r]
                m_s = mode[s]
                for j in range(row_count[r]):
                    ctr_lo = np.uint64(j)
                    t0, t1 = philox_block(ctr_lo, ctr_hi, key_time[s])
                    ts = place_us(start_us, bucket_us, to_uniform(t0))
                    virtual, tgt, zone = route_arrival(
                        ctr_lo, ctr_hi, s, m_s, key_site, key_edge, key_hybrid, site_lo,
                        site_n, edge_lo, edge_n, site_prob, site_alias, site_zone, edge_prob,
                        edge_alias, edge_zone, p_hybrid)
                    aid_l[i] = t1
                    s_l[i] = s
                    tgt_l[i] = tgt
                    zv_l[i] = (np.int64(zone) << 1) | np.int64(virtual)
                    keys[i] = ((ts - start_us) << GROUP_INDEX_BITS) | i
                    i += 1
            sort_group_keys(keys, scratch_i[2, : n + 1], scratch_i[3, :n], bucket_us)
            seq0 = group_seq0[g]
            for k in range(n):
                i = keys[k] & mask
                e = lo + k
                s = s_l[i]
                tgt = tgt_l[i]
                zone = zv_l[i] >> 1
                virtual = (zv_l[i] & 1) == 1
                ts = start_us + (keys[k] >> GROUP_INDEX_BITS)
                if virtual:
                    o_site[e] = 0
                    o_edge[e] = edge_id[tgt]
                    sz = settle_zone[s]
                    o_settle_tz[e] = sz
                    if sz >= 0:
                        off = _zone_offset(zone_group, zone_off, g, sz, start_us, end_us, ts,
                                           zone_start, trans_us, offset_s)
                        o_settle_local[e] = ts + off * US
                    else:
                        o_settle_local[e] = 0
                else:
                    o_site[e] = site_id[tgt]
                    o_edge[e] = 0
                    o_settle_tz[e] = -1
                    o_settle_local[e] = 0
                o_aid[e] = aid_l[i]
                o_country[e] = country_idx[s]
                o_zone[e] = zone_idx[s]
                o_channel[e] = channel_idx[s]
                o_tz[e] = zone
                off = _zone_offset(zone_group, zone_off, g, zone, start_us, end_us, ts,
                                   zone_start, trans_us, offset_s)
                o_local[e] = ts + off * US
                o_virtual[e] = virtual
            # the columns that need no routing, in loops of their own (vectorised stores)
            mid = merchant_id[row_series[row0]]  # one merchant per group
            for k in range(n):
                e = lo + k
                o_mid[e] = mid
                o_bucket[e] = start_us
                o_seq[e] = seq0 + k
                o_ts[e] = start_us + (keys[k] >> GROUP_INDEX_BITS)


def balanced_blocks(group_evt_lo: np.ndarray, n_blocks: int) -> np.ndarray:
    """Cut groups into ``n_blocks`` contiguous ranges of about equal event counts, so that
    parallel threads share the work evenly whatever the merchants' sizes (the output does
    not depend on the cut)."""
    n_groups = group_evt_lo.shape[0] - 1
    total = group_evt_lo[-1] - group_evt_lo[0]
    targets = group_evt_lo[0] + (total * np.arange(1, n_blocks)) // max(n_blocks, 1)
    cuts = np.searchsorted(group_evt_lo[:-1], targets, side="left")
    return np.unique(np.concatenate(([0], cuts, [n_groups]))).astype(np.int64)


NO_SPAN = np.iinfo(np.int64).min  # zone_off: a transition falls inside the bucket


@nb.njit(cache=True, nogil=True, inline="always")
def _zone_offset(zone_group, zone_off, g, z, start_us, end_us, ts, zone_start, trans_us,
                 offset_s):
    """UTC offset (s) of zone z at ts, inside group g's bucket [start_us, end_us). The
    bucket's offset is cached per zone for the group (one search per zone and group); only
    when a transition falls inside the bucket (NO_SPAN) is it searched per event."""
    if zone_group[z] != g:
        off, nxt = offset_span(zone_start, trans_us, offset_s, z, start_us)
        zone_group[z] = g
        zone_off[z] = off if nxt >= end_us else NO_SPAN
    off = zone_off[z]
    if off == NO_SPAN:
        off = offset_at(zone_start, trans_us, offset_s, z, ts)
    return off


@nb.njit(cache=True, nogil=True)
def sort_group_keys(keys, bins, tmp, bucket_us):
    """Sort a group's keys ((offset << GROUP_INDEX_BITS) | i, offsets uniform in
    [0, bucket_us), all distinct) in place, in linear expected time: a counting pass by
    offset into len(keys) equal bins, then insertion sort of the nearly sorted result. Same
    result as any sort. ``bins`` holds len(keys) + 1 counters, ``tmp`` len(keys) keys.

    The bin of an offset is ⌊offset · ⌊n·2³²/D⌋ / 2³²⌋ (< n, monotone in the offset): one
    division per group instead of a 64-bit division per key and pass, which cost more than
    the rest of the sort. The product stays below n·2³² < 2⁵⁶ for any bucket length."""
    n = keys.shape[0]
    if n > 32:
        mul = (np.int64(n) << 32) // bucket_us
        for k in range(n + 1):
            bins[k] = 0
        for i in range(n):
            bins[(((keys[i] >> GROUP_INDEX_BITS) * mul) >> 32) + 1] += 1
        for k in range(n):
            bins[k + 1] += bins[k]
        for i in range(n):
            b = ((keys[i] >> GROUP_INDEX_BITS) * mul) >> 32
            tmp[bins[b]] = keys[i]
            bins[b] += 1
        for i in range(n):
            keys[i] = tmp[i]
    for i in range(1, n):
        x = keys[i]
        k = i - 1
        while k >= 0 and keys[k] > x:
            keys[k + 1] = keys[k]
            k -= 1
        keys[k + 1] = x
