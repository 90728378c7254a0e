"""The fused S4 kernel against the reference kernel, event by event, across DST transitions
that fall inside a bucket (St John's and Kathmandu-style offsets, Lord Howe's 30-minute
shift) — the per-bucket offset cache must fall back to a per-event lookup there — and across
group sizes that take both branches of the group sort."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine_core.kernels.arrivals import (
    GROUP_INDEX_BITS,
    MODE_HYBRID,
    MODE_PHYSICAL,
    MODE_VIRTUAL,
    balanced_blocks,
    generate_events,
    realise_groups,
    sort_group_keys,
)
from engine_core.rng.samplers import alias_build
from engine_core.rng.streams import series_stream, stream_keys
from engine_core.tz import build_tz_tables

US = 1_000_000
HOUR_US = 3600 * US
ZONES = ("America/St_Johns", "Australia/Lord_Howe", "Europe/London", "Asia/Kathmandu", "UTC")
FAMILIES = ("S4.time.v1", "S4.site.v1", "S4.edge.v1", "S4.hybrid.v1")


def _alias(weights):
    p = np.empty(len(weights))
    a = np.empty(len(weights), np.int64)
    alias_build(np.ascontiguousarray(weights), p, a)
    return p, a


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(11)
    tz = build_tz_tables(list(ZONES), 2026, 2026)
    n_m = 15
    mids = np.arange(500, 500 + n_m, dtype=np.uint64)
    mode = np.array(
        [(MODE_PHYSICAL, MODE_HYBRID, MODE_VIRTUAL)[m % 3] for m in range(n_m)], np.int8
    )
    zone = np.arange(n_m, dtype=np.int32) % len(ZONES)
    site_lo, site_n, site_prob, site_alias, site_zone = [], [], [], [], []
    edge_lo, edge_n, edge_prob, edge_alias, edge_zone = [], [], [], [], []
    for m in range(n_m):
        k = 0 if mode[m] == MODE_VIRTUAL else int(rng.integers(1, 5))
        site_lo.append(len(site_prob))
        site_n.append(k)
        if k:
            p, a = _alias(rng.uniform(0.2, 5.0, k))
            site_prob += p.tolist()
            site_alias += a.tolist()
            site_zone += [int(zone[m])] * k
        k = 0 if mode[m] == MODE_PHYSICAL else int(rng.integers(1, 4))
        edge_lo.append(len(edge_prob))
        edge_n.append(k)
        if k:
            p, a = _alias(rng.uniform(0.2, 5.0, k))
            edge_prob += p.tolist()
            edge_alias += a.tolist()
            edge_zone += rng.integers(0, len(ZONES), k).tolist()
    settle = np.array(
        [(m + 2) % len(ZONES) if mode[m] != MODE_PHYSICAL else -1 for m in range(n_m)], np.int32
    )
    streams = [series_stream(int(mids[m]), "GB", ZONES[zone[m]], "mixed") for m in range(n_m)]
    keys = {f: stream_keys(f, "default", 42, streams) for f in FAMILIES}
    # buckets around every 2026 transition of every zone (some fall inside an hour), plus
    # random hours; one merchant gets a group of thousands of events
    trans = tz.trans_us[(tz.trans_us > 1_767_225_600 * US) & (tz.trans_us < 1_798_761_600 * US)]
    around = np.unique(np.concatenate([trans // HOUR_US + d for d in (-1, 0, 1)]))
    inside = int(np.count_nonzero(trans % HOUR_US))
    rows = []
    for m in range(n_m):
        hours = np.unique(
            np.concatenate([around, 1_767_225_600 // 3600 + rng.integers(0, 8760, 40)])
        )
        for b in hours.tolist():
            n = 4000 if (m == 3 and b == hours[5]) else int(rng.integers(1, 90))
            rows.append((m, b, n))
    a = np.array(rows, np.int64)
    world = dict(
        mode=mode,
        site_lo=np.array(site_lo, np.int64),
        site_n=np.array(site_n, np.int64),
        edge_lo=np.array(edge_lo, np.int64),
        edge_n=np.array(edge_n, np.int64),
        settle=settle,
        site_prob=np.array(site_prob),
        site_alias=np.array(site_alias, np.int64),
        site_zone=np.array(site_zone, np.int32),
        edge_prob=np.array(edge_prob),
        edge_alias=np.array(edge_alias, np.int64),
        edge_zone=np.array(edge_zone, np.int32),
        mids=mids,
        zone=zone,
    )
    return tz, keys, world, a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy(), inside


def row_offsets(count):
    """Events laid out row after row: row r owns [offset[r], offset[r + 1])."""
    offset = np.zeros(len(count) + 1, np.int64)
    np.cumsum(count, out=offset[1:])
    return offset


def fused(case):
    tz, keys, w, series, bucket, count = case[:6]
    offset = row_offsets(count)
    n = int(offset[-1])
    # one (merchant, bucket) group per row here: one series per merchant
    group_row_lo = np.arange(len(count) + 1, dtype=np.int64)
    group_evt_lo = offset.copy()
    mstart = np.r_[True, series[1:] != series[:-1]]
    first_evt = np.maximum.accumulate(np.where(mstart, offset[:-1], 0))
    seq0 = offset[:-1] - first_evt + 1
    out = [
        np.empty(n, t)
        for t in (
            np.uint64,
            np.uint64,
            np.int32,
            np.int32,
            np.int32,
            np.int64,
            np.int64,
            np.int64,
            np.int32,
            np.int64,
            np.int32,
            np.int64,
            np.uint64,
            np.uint64,
            np.bool_,
        )
    ]
    S = len(w["mode"])
    site_id = np.arange(len(w["site_prob"]), dtype=np.uint64) + 7000
    edge_id = np.arange(len(w["edge_prob"]), dtype=np.uint64) + 9000
    realise_groups(
        balanced_blocks(group_evt_lo, 8),
        group_row_lo,
        group_evt_lo,
        seq0,
        series,
        bucket,
        count,
        keys["S4.time.v1"],
        keys["S4.site.v1"],
        keys["S4.edge.v1"],
        keys["S4.hybrid.v1"],
        w["mode"],
        w["site_lo"],
        w["site_n"],
        w["edge_lo"],
        w["edge_n"],
        w["settle"],
        w["mids"],
        np.zeros(S, np.int32),
        w["zone"],
        np.zeros(S, np.int32),
        w["site_prob"],
        w["site_alias"],
        w["site_zone"],
        site_id,
        w["edge_prob"],
        w["edge_alias"],
        w["edge_zone"],
        edge_id,
        0.4,
        HOUR_US,
        tz.zone_start,
        tz.trans_us,
        tz.offset_s,
        *out,
    )
    names = (
        "aid",
        "mid",
        "country",
        "zone",
        "channel",
        "bucket",
        "seq",
        "ts",
        "tz",
        "local",
        "settle_tz",
        "settle_local",
        "site",
        "edge",
        "virtual",
    )
    return dict(zip(names, out, strict=True)), site_id, edge_id


def reference(case):
    tz, keys, w, series, bucket, count = case[:6]
    offset = row_offsets(count)
    n = int(offset[-1])
    ts, aid, target = np.empty(n, np.int64), np.empty(n, np.uint64), np.empty(n, np.int64)
    virt, zone = np.empty(n, np.bool_), np.empty(n, np.int32)
    local, settle = np.empty(n, np.int64), np.empty(n, np.int64)
    generate_events(
        series,
        bucket,
        offset,
        keys["S4.time.v1"],
        keys["S4.site.v1"],
        keys["S4.edge.v1"],
        keys["S4.hybrid.v1"],
        w["mode"],
        w["site_lo"],
        w["site_n"],
        w["edge_lo"],
        w["edge_n"],
        w["settle"],
        w["site_prob"],
        w["site_alias"],
        w["site_zone"],
        w["edge_prob"],
        w["edge_alias"],
        w["edge_zone"],
        0.4,
        HOUR_US,
        tz.zone_start,
        tz.trans_us,
        tz.offset_s,
        ts,
        aid,
        target,
        virt,
        zone,
        local,
        settle,
    )
    return dict(
        ts=ts,
        aid=aid,
        target=target,
        virt=virt,
        zone=zone,
        local=local,
        settle=settle,
        row=np.repeat(np.arange(len(count)), count),
    )


def test_transitions_inside_buckets_are_exercised(case):
    assert case[6] > 0  # 2026 has transitions off the hour among these zones
    assert case[5].max() == 4000 and np.median(case[5]) > 32


def test_fused_equals_reference_event_by_event(case):
    got, site_id, edge_id = fused(case)
    ref = reference(case)
    # same events: match by arrival_id (distinct here)
    assert len(np.unique(ref["aid"])) == len(ref["aid"])
    g = np.argsort(got["aid"])
    r = np.argsort(ref["aid"])
    np.testing.assert_array_equal(got["aid"][g], ref["aid"][r])
    np.testing.assert_array_equal(got["ts"][g], ref["ts"][r])
    np.testing.assert_array_equal(got["local"][g], ref["local"][r])
    np.testing.assert_array_equal(got["virtual"][g], ref["virt"][r])
    np.testing.assert_array_equal(got["tz"][g], ref["zone"][r])
    v = ref["virt"][r]
    has_settle = v & (case[2]["settle"][case[3][ref["row"][r]]] >= 0)
    np.testing.assert_array_equal(got["settle_local"][g][has_settle], ref["settle"][r][has_settle])
    np.testing.assert_array_equal(got["site"][g][~v], site_id[ref["target"][r][~v]])
    np.testing.assert_array_equal(got["edge"][g][v], edge_id[ref["target"][r][v]])
    # each group in time order (ties broken by the event's index in the group)
    same_group = got["bucket"][1:] == got["bucket"][:-1]
    assert np.all(got["ts"][1:][same_group] >= got["ts"][:-1][same_group])


def test_fused_kernel_same_bytes_on_one_and_two_threads(case):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one, _, _ = fused(case)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two, _, _ = fused(case)
    finally:
        numba.set_num_threads(before)
    for k in one:
        np.testing.assert_array_equal(one[k], two[k])


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=400),
    bucket_s=st.sampled_from([60, 900, 3600, 86400]),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_group_sort_equals_a_full_sort(n, bucket_s, seed):
    """The group sort (bins by multiply-shift above 32 keys, insertion sort below and after)
    gives exactly np.sort for any group size and bucket length, a day's included."""
    bucket_us = bucket_s * US
    rng = np.random.default_rng(seed)
    offsets = rng.choice(bucket_us, size=min(n, bucket_us), replace=False).astype(np.int64)
    keys = (offsets << GROUP_INDEX_BITS) | np.arange(len(offsets), dtype=np.int64)
    expected = np.sort(keys)
    got = keys.copy()
    sort_group_keys(got, np.empty(len(got) + 1, np.int64), np.empty(len(got), np.int64),
                    bucket_us)
    assert np.array_equal(got, expected)
