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

from engine_core.rng.philox import philox_block, to_uniform
from engine_core.rng.samplers import alias_pick, place_us
from engine_core.tz import offset_at

US = 1_000_000
MODE_PHYSICAL = 0
MODE_HYBRID = 1
MODE_VIRTUAL = 2
# Tie-break field width inside a (merchant, bucket) group's sort key: (offset << 24) | index.
GROUP_INDEX_BITS = 24
MAX_GROUP_EVENTS = 1 << GROUP_INDEX_BITS


@nb.njit(cache=True, nogil=True, parallel=True)
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
    n_rows = row_series.shape[0]
    for r in nb.prange(n_rows):
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
            virtual = m == MODE_VIRTUAL
            if m == MODE_HYBRID:
                h0, _ = philox_block(ctr_lo, ctr_hi, key_hybrid[s])
                virtual = to_uniform(h0) < p_hybrid
            if virtual:
                x0, _ = philox_block(ctr_lo, ctr_hi, key_edge[s])
                tgt = edge_lo[s] + alias_pick(edge_prob, edge_alias, edge_lo[s], edge_n[s],
                                              to_uniform(x0))
                zone = edge_zone[tgt]
            else:
                x0, _ = philox_block(ctr_lo, ctr_hi, key_site[s])
                tgt = site_lo[s] + alias_pick(site_prob, site_alias, site_lo[s], site_n[s],
                                              to_uniform(x0))
                zone = site_zone[tgt]
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


@nb.njit(cache=True, nogil=True, parallel=True)
def order_groups(group_evt_lo, group_bucket_start, ts, order_out):
    """order_out[k] = index of the k-th event in (merchant, ts_utc, series order, j) order."""
    n_groups = group_evt_lo.shape[0] - 1
    for g in nb.prange(n_groups):
        lo = group_evt_lo[g]
        hi = group_evt_lo[g + 1]
        n = hi - lo
        keys = np.empty(n, dtype=np.int64)
        base = group_bucket_start[g]
        for i in range(n):
            keys[i] = ((ts[lo + i] - base) << GROUP_INDEX_BITS) | i
        keys.sort()
        mask = np.int64(MAX_GROUP_EVENTS - 1)
        for i in range(n):
            order_out[lo + i] = lo + (keys[i] & mask)


@nb.njit(cache=True, nogil=True, parallel=True)
def gather_int64(src, order, out):
    for i in nb.prange(order.shape[0]):
        out[i] = src[order[i]]


@nb.njit(cache=True, nogil=True, parallel=True)
def event_rows(row_offset, out):
    """out[e] = the S3 row of event e (events laid out row after row)."""
    for r in nb.prange(row_offset.shape[0] - 1):
        for e in range(row_offset[r], row_offset[r + 1]):
            out[e] = r


@nb.njit(cache=True, nogil=True, parallel=True)
def assemble_events(
    order, row_offset, row_series, row_bucket, bucket_us,
    ts, aid, target, virtual, zone, local, settle,
    merchant_id, country_idx, zone_idx, channel_idx, settle_zone, site_id, edge_id,
    o_aid, o_mid, o_country, o_zone, o_channel, o_bucket, o_ts, o_tz, o_local,
    o_settle_tz, o_settle_local, o_site, o_edge, o_virtual, o_series,
):
    """Gather every output column in sorted order in one parallel pass.

    Null site/edge/settlement entries get placeholder values; their validity masks are
    ``o_virtual`` (site null), ``~o_virtual`` (edge null) and ``o_settle_tz < 0``.
    """
    n = order.shape[0]
    for k in nb.prange(n):
        e = order[k]
        # the S3 row of event e: binary search in row_offset
        lo = 0
        hi = row_offset.shape[0] - 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if row_offset[mid] <= e:
                lo = mid
            else:
                hi = mid
        r = lo
        s = row_series[r]
        o_series[k] = s
        o_aid[k] = aid[e]
        o_mid[k] = merchant_id[s]
        o_country[k] = country_idx[s]
        o_zone[k] = zone_idx[s]
        o_channel[k] = channel_idx[s]
        o_bucket[k] = row_bucket[r] * bucket_us
        o_ts[k] = ts[e]
        o_tz[k] = zone[e]
        o_local[k] = local[e]
        v = virtual[e]
        o_virtual[k] = v
        if v:
            o_site[k] = 0
            o_edge[k] = edge_id[target[e]]
            sz = settle_zone[s]
            o_settle_tz[k] = sz
            o_settle_local[k] = settle[e] if sz >= 0 else 0
        else:
            o_site[k] = site_id[target[e]]
            o_edge[k] = 0
            o_settle_tz[k] = -1
            o_settle_local[k] = 0
