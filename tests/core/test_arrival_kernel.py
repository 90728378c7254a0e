"""S4 arrival kernel: placement, routing, clocks and ordering, re-derived from the law.

A synthetic world (numpy only) with physical, hybrid and virtual series over three zones —
UTC, Europe/London (DST inside the horizon) and Asia/Kolkata (+05:30) — and S3-like rows
around the 2026 DST changes and through the year.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine_core.kernels.arrivals import (
    MODE_HYBRID,
    MODE_PHYSICAL,
    MODE_VIRTUAL,
    event_rows,
    generate_events,
    order_groups,
    sort_keys,
)
from engine_core.rng import philox2x64_10, uniforms
from engine_core.rng.samplers import alias_build
from engine_core.rng.streams import series_stream, stream_keys
from engine_core.tz import build_tz_tables

US = 1_000_000
BUCKET_S = 3600
BUCKET_US = BUCKET_S * US
YEAR_2026 = 490896  # first hourly bucket of 2026
LONDON_SPRING = 492985  # 2026-03-29 01:00Z: clocks go forward
LONDON_AUTUMN = 498025  # 2026-10-25 01:00Z: clocks go back
P_HYBRID = 0.35
TZIDS = ("UTC", "Europe/London", "Asia/Kolkata")
COUNTRY_OF = {"UTC": "GB", "Europe/London": "GB", "Asia/Kolkata": "IN"}
CHANNELS = ("card_present", "card_not_present", "mixed")


@dataclass
class World:
    merchant: np.ndarray  # uint64 [S]
    stream: list[str]
    mode: np.ndarray  # int8 [S]
    site_lo: np.ndarray
    site_n: np.ndarray
    edge_lo: np.ndarray
    edge_n: np.ndarray
    settle_zone: np.ndarray  # int32 [S]
    site_weight: np.ndarray
    site_prob: np.ndarray
    site_alias: np.ndarray
    site_zone: np.ndarray  # int32
    edge_weight: np.ndarray
    edge_prob: np.ndarray
    edge_alias: np.ndarray
    edge_zone: np.ndarray  # int32
    keys: dict[str, np.ndarray]


@dataclass
class Rows:
    series: np.ndarray  # int64 [R]
    bucket: np.ndarray  # int64 [R]
    offset: np.ndarray  # int64 [R+1]


def _alias_tables(weights: np.ndarray, lo: np.ndarray, n: np.ndarray):
    prob = np.ones(weights.size, np.float64)
    alias = np.zeros(weights.size, np.int64)
    for a, k in zip(lo.tolist(), n.tolist(), strict=True):
        p = np.empty(k, np.float64)
        al = np.empty(k, np.int64)
        alias_build(np.ascontiguousarray(weights[a : a + k]), p, al)
        prob[a : a + k] = p
        alias[a : a + k] = al
    return prob, alias


def make_world(n_merchants: int = 30, seed: int = 1) -> World:
    """Merchants cycle through the three modes; each has 1–3 series (channels) in one zone."""
    rng = np.random.default_rng(seed)
    merchant, stream, mode, zone_of_series = [], [], [], []
    site_lo, site_n, edge_lo, edge_n, settle = [], [], [], [], []
    site_w, site_zone, edge_w, edge_zone = [], [], [], []
    for m in range(n_merchants):
        mid = 1000 + m
        m_mode = (MODE_PHYSICAL, MODE_HYBRID, MODE_VIRTUAL)[m % 3]
        tz = m % 3
        n_edges = 0 if m_mode == MODE_PHYSICAL else int(rng.integers(1, 5))
        e_lo = len(edge_w)
        edge_w.extend(rng.uniform(0.1, 10.0, n_edges).tolist())
        edge_zone.extend(rng.integers(0, 3, n_edges).tolist())
        for c in range(1 + m % 3):
            merchant.append(mid)
            stream.append(series_stream(mid, COUNTRY_OF[TZIDS[tz]], TZIDS[tz], CHANNELS[c]))
            mode.append(m_mode)
            zone_of_series.append(tz)
            n_sites = 0 if m_mode == MODE_VIRTUAL else int(rng.integers(1, 6))
            site_lo.append(len(site_w))
            site_n.append(n_sites)
            site_w.extend(rng.uniform(0.1, 10.0, n_sites).tolist())
            site_zone.extend([tz] * n_sites)
            edge_lo.append(e_lo if n_edges else 0)
            edge_n.append(n_edges)
            # settlement clock: for every other virtual-capable merchant
            settle.append((m + 1) % 3 if (m_mode != MODE_PHYSICAL and m % 2 == 0) else -1)
    site_lo_a = np.array(site_lo, np.int64)
    site_n_a = np.array(site_n, np.int64)
    edge_lo_a = np.array(edge_lo, np.int64)
    edge_n_a = np.array(edge_n, np.int64)
    site_w_a = np.array(site_w, np.float64)
    edge_w_a = np.array(edge_w, np.float64)
    site_prob, site_alias = _alias_tables(site_w_a, site_lo_a, site_n_a)
    e_first = np.unique(edge_lo_a[edge_n_a > 0])
    e_len = np.array([edge_n_a[edge_lo_a == a][0] for a in e_first], np.int64)
    edge_prob, edge_alias = _alias_tables(edge_w_a, e_first, e_len)
    keys = {
        f: stream_keys(f, "default", 42, stream)
        for f in ("S4.time.v1", "S4.site.v1", "S4.edge.v1", "S4.hybrid.v1")
    }
    return World(
        merchant=np.array(merchant, np.uint64),
        stream=stream,
        mode=np.array(mode, np.int8),
        site_lo=site_lo_a,
        site_n=site_n_a,
        edge_lo=edge_lo_a,
        edge_n=edge_n_a,
        settle_zone=np.array(settle, np.int32),
        site_weight=site_w_a,
        site_prob=site_prob,
        site_alias=site_alias,
        site_zone=np.array(site_zone, np.int32),
        edge_weight=edge_w_a,
        edge_prob=edge_prob,
        edge_alias=edge_alias,
        edge_zone=np.array(edge_zone, np.int32),
        keys=keys,
    )


def make_rows(
    world: World, buckets_per_merchant: int = 60, seed: int = 2, max_count: int = 60
) -> Rows:
    """Rows sorted by (merchant, bucket, series), as S4 receives them from S3."""
    rng = np.random.default_rng(seed)
    special = [
        LONDON_SPRING - 1,
        LONDON_SPRING,
        LONDON_SPRING + 1,
        LONDON_AUTUMN - 1,
        LONDON_AUTUMN,
        LONDON_AUTUMN + 1,
        YEAR_2026,
        YEAR_2026 + 8759,
    ]
    series_of = {}
    for s, mid in enumerate(world.merchant.tolist()):
        series_of.setdefault(mid, []).append(s)
    rows = []
    for mid in sorted(series_of):
        buckets = set(special) | set(
            (YEAR_2026 + rng.integers(0, 8760, buckets_per_merchant)).tolist()
        )
        for b in sorted(buckets):
            for s in series_of[mid]:
                if rng.random() < 0.8:
                    rows.append((s, b, int(rng.integers(1, max_count + 1))))
    a = np.array(rows, np.int64)
    offset = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(a[:, 2], out=offset[1:])
    return Rows(series=a[:, 0].copy(), bucket=a[:, 1].copy(), offset=offset)


@pytest.fixture(scope="module")
def tz():
    return build_tz_tables(list(TZIDS), 2026, 2026)


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def rows(world):
    return make_rows(world)


def run_kernel(world: World, rows: Rows, tz) -> dict[str, np.ndarray]:
    n = int(rows.offset[-1])
    out = {
        "ts": np.empty(n, np.int64),
        "aid": np.empty(n, np.uint64),
        "target": np.empty(n, np.int64),
        "virtual": np.empty(n, np.bool_),
        "zone": np.empty(n, np.int32),
        "local": np.empty(n, np.int64),
        "settle": np.empty(n, np.int64),
    }
    k = world.keys
    generate_events(
        rows.series,
        rows.bucket,
        rows.offset,
        k["S4.time.v1"],
        k["S4.site.v1"],
        k["S4.edge.v1"],
        k["S4.hybrid.v1"],
        world.mode,
        world.site_lo,
        world.site_n,
        world.edge_lo,
        world.edge_n,
        world.settle_zone,
        world.site_prob,
        world.site_alias,
        world.site_zone,
        world.edge_prob,
        world.edge_alias,
        world.edge_zone,
        P_HYBRID,
        BUCKET_US,
        tz.zone_start,
        tz.trans_us,
        tz.offset_s,
        out["ts"],
        out["aid"],
        out["target"],
        out["virtual"],
        out["zone"],
        out["local"],
        out["settle"],
    )
    return out


def group_bounds(world: World, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
    """(event offsets of the (merchant, bucket) groups, each group's bucket start in µs)."""
    mids = world.merchant[rows.series]
    new = np.ones(rows.series.size, np.bool_)
    new[1:] = (mids[1:] != mids[:-1]) | (rows.bucket[1:] != rows.bucket[:-1])
    first = np.flatnonzero(new)
    lo = np.append(rows.offset[first], rows.offset[-1]).astype(np.int64)
    return lo, rows.bucket[first] * BUCKET_US


def run_order(world: World, rows: Rows, ts: np.ndarray) -> np.ndarray:
    lo, start = group_bounds(world, rows)
    order = np.empty(ts.size, np.int64)
    order_groups(lo, start, ts, order)
    return order


def digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def run_digest() -> str:
    """Everything the kernels produce for the fixed world, as one hash (for subprocesses)."""
    tz = build_tz_tables(list(TZIDS), 2026, 2026)
    w = make_world()
    r = make_rows(w)
    out = run_kernel(w, r, tz)
    order = run_order(w, r, out["ts"])
    return digest([*out.values(), order])


@pytest.fixture(scope="module")
def events(world, rows, tz):
    out = run_kernel(world, rows, tz)
    row_of = np.empty(out["ts"].size, np.int64)
    event_rows(rows.offset, row_of)
    out["row"] = row_of
    out["series"] = rows.series[row_of]
    out["bucket"] = rows.bucket[row_of]
    out["j"] = np.arange(out["ts"].size, dtype=np.int64) - rows.offset[row_of]
    return out


def law_block(world: World, family: str, ev) -> tuple[np.ndarray, np.ndarray]:
    """Philox block (ctr_lo = j, ctr_hi = bucket) under the event's series key of ``family``."""
    key = world.keys[family][ev["series"]]
    return philox2x64_10(ev["j"].astype(np.uint64), ev["bucket"].astype(np.uint64), key)


def alias_pick_np(prob, alias, lo, n, u):
    x = u * n
    col = np.minimum(x.astype(np.int64), n - 1)
    frac = x - col
    return np.where(frac < prob[lo + col], col, alias[lo + col])


# ----------------------------------------------------------------------------- thread invariance
def test_same_bytes_on_one_and_all_threads(world, rows, tz):
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = run_kernel(world, rows, tz)
        order_one = run_order(world, rows, one["ts"])
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = run_kernel(world, rows, tz)
        order_many = run_order(world, rows, many["ts"])
    finally:
        numba.set_num_threads(before)
    for name in one:
        assert one[name].tobytes() == many[name].tobytes(), name
    assert order_one.tobytes() == order_many.tobytes()


def test_same_bytes_with_numba_num_threads_1_and_2():
    here = Path(__file__).resolve().parent
    code = (
        f"import sys; sys.path.insert(0, {str(here)!r}); "
        "import test_arrival_kernel as t; print(t.run_digest())"
    )
    digests = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        res = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=here.parents[1],
            check=True,
        )
        digests.append(res.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]
    assert digests[0] == run_digest()


# ----------------------------------------------------------------------------- placement
def test_every_timestamp_inside_its_bucket(events):
    start = events["bucket"] * BUCKET_US
    assert np.all(events["ts"] >= start)
    assert np.all(events["ts"] < start + BUCKET_US)


def test_timestamps_and_ids_follow_the_law(world, events):
    out0, out1 = law_block(world, "S4.time.v1", events)
    u = uniforms(out0)
    # ⌊u·D⌋ with the guard: u·D may round to D for u within 2^-53 of 1
    offset = np.minimum(np.floor(u * BUCKET_US).astype(np.int64), BUCKET_US - 1)
    np.testing.assert_array_equal(events["ts"], events["bucket"] * BUCKET_US + offset)
    np.testing.assert_array_equal(events["aid"], out1)
    assert np.unique(events["aid"]).size == events["aid"].size


def test_arrival_ids_do_not_depend_on_the_batch(world, rows, tz, events):
    # The same S3 rows cut into another batch (here: only the second half of the rows)
    # give the same events: nothing depends on a row's position in the batch.
    half = rows.series.size // 2
    sub = Rows(
        series=rows.series[half:].copy(),
        bucket=rows.bucket[half:].copy(),
        offset=(rows.offset[half:] - rows.offset[half]).copy(),
    )
    out = run_kernel(world, sub, tz)
    e0 = int(rows.offset[half])
    for name in ("ts", "aid", "target", "virtual", "zone", "local", "settle"):
        assert out[name].tobytes() == events[name][e0:].tobytes(), name


# ----------------------------------------------------------------------------- routing
def test_routing_targets_belong_to_the_series(world, events):
    s = events["series"]
    tgt = events["target"]
    v = events["virtual"]
    mode = world.mode[s]
    assert not np.any(v[mode == MODE_PHYSICAL])
    assert np.all(v[mode == MODE_VIRTUAL])
    phys = ~v
    assert np.all(tgt[phys] >= world.site_lo[s][phys])
    assert np.all(tgt[phys] < (world.site_lo + world.site_n)[s][phys])
    assert np.all(tgt[v] >= world.edge_lo[s][v])
    assert np.all(tgt[v] < (world.edge_lo + world.edge_n)[s][v])
    np.testing.assert_array_equal(events["zone"][phys], world.site_zone[tgt[phys]])
    np.testing.assert_array_equal(events["zone"][v], world.edge_zone[tgt[v]])


def test_routing_follows_the_law(world, events):
    s = events["series"]
    v = events["virtual"]
    site0, _ = law_block(world, "S4.site.v1", events)
    edge0, _ = law_block(world, "S4.edge.v1", events)
    hyb0, _ = law_block(world, "S4.hybrid.v1", events)
    hybrid = world.mode[s] == MODE_HYBRID
    np.testing.assert_array_equal(v[hybrid], uniforms(hyb0)[hybrid] < P_HYBRID)
    lo, n = world.site_lo[s], world.site_n[s]
    phys = ~v
    pick = alias_pick_np(
        world.site_prob, world.site_alias, lo[phys], n[phys], uniforms(site0)[phys]
    )
    np.testing.assert_array_equal(events["target"][phys], lo[phys] + pick)
    lo, n = world.edge_lo[s], world.edge_n[s]
    pick = alias_pick_np(world.edge_prob, world.edge_alias, lo[v], n[v], uniforms(edge0)[v])
    np.testing.assert_array_equal(events["target"][v], lo[v] + pick)


def test_hybrid_virtual_share(world, tz):
    # A larger sample for the share: virtual ~ Binomial(n, p), sd sqrt(p(1-p)/n).
    rows = make_rows(world, buckets_per_merchant=400, seed=5)
    out = run_kernel(world, rows, tz)
    row_of = np.empty(out["ts"].size, np.int64)
    event_rows(rows.offset, row_of)
    hybrid = world.mode[rows.series[row_of]] == MODE_HYBRID
    n = int(hybrid.sum())
    share = out["virtual"][hybrid].mean()
    assert abs(share - P_HYBRID) < 5.0 * math.sqrt(P_HYBRID * (1 - P_HYBRID) / n)


def test_site_shares_follow_weights(world, tz):
    from scipy import stats  # imported here: subprocesses load this module without scipy

    # One physical series with several sites and many arrivals: chi-square vs the weights.
    s = int(np.flatnonzero((world.mode == MODE_PHYSICAL) & (world.site_n >= 4))[0])
    buckets = YEAR_2026 + np.arange(2000, dtype=np.int64)
    counts = np.full(buckets.size, 100, np.int64)
    offset = np.zeros(buckets.size + 1, np.int64)
    np.cumsum(counts, out=offset[1:])
    rows = Rows(series=np.full(buckets.size, s, np.int64), bucket=buckets, offset=offset)
    out = run_kernel(world, rows, tz)
    lo, n = int(world.site_lo[s]), int(world.site_n[s])
    observed = np.bincount(out["target"] - lo, minlength=n)
    w = world.site_weight[lo : lo + n]
    assert stats.chisquare(observed, out["target"].size * w / w.sum()).pvalue > 1e-4
    # and time placement is uniform within the hour
    frac = (out["ts"] - rows.bucket[0] * BUCKET_US) % BUCKET_US / BUCKET_US
    assert stats.kstest(frac, "uniform").pvalue > 1e-4


# ----------------------------------------------------------------------------- local clocks
def _offsets_zoneinfo(ts_us: np.ndarray, tzid: str) -> np.ndarray:
    zi = ZoneInfo(tzid)
    return np.array(
        [
            int(dt.datetime.fromtimestamp(t // US, tz=zi).utcoffset().total_seconds())
            for t in ts_us.tolist()
        ],
        np.int64,
    )


def test_local_clocks_against_zoneinfo(events):
    # Every event around the DST changes plus a sample of the rest, checked with zoneinfo.
    near = np.isin(
        events["bucket"],
        [
            LONDON_SPRING - 1,
            LONDON_SPRING,
            LONDON_SPRING + 1,
            LONDON_AUTUMN - 1,
            LONDON_AUTUMN,
            LONDON_AUTUMN + 1,
        ],
    )
    pick = np.flatnonzero(near)
    rest = np.flatnonzero(~near)
    pick = np.concatenate([pick, rest[:: max(1, rest.size // 3000)]])
    for z, tzid in enumerate(TZIDS):
        sel = pick[events["zone"][pick] == z]
        off = _offsets_zoneinfo(events["ts"][sel], tzid)
        np.testing.assert_array_equal(events["local"][sel] - events["ts"][sel], off * US)
    # London really changes offset inside the sample (the DST path is exercised)
    london = pick[events["zone"][pick] == 1]
    assert set(np.unique(events["local"][london] - events["ts"][london]).tolist()) == {0, 3600 * US}
    # Kolkata is +05:30 all year
    kol = events["zone"] == 2
    assert np.all(events["local"][kol] - events["ts"][kol] == 19_800 * US)


def test_settlement_clock(world, events):
    s = events["series"]
    sz = world.settle_zone[s]
    has = events["virtual"] & (sz >= 0)
    assert np.all(events["settle"][~has] == 0)
    assert has.sum() > 100
    idx = np.flatnonzero(has)[::7]
    for z, tzid in enumerate(TZIDS):
        sel = idx[sz[idx] == z]
        off = _offsets_zoneinfo(events["ts"][sel], tzid)
        np.testing.assert_array_equal(events["settle"][sel] - events["ts"][sel], off * US)


# ----------------------------------------------------------------------------- ordering
def test_order_groups_sorts_by_time_then_index(world, rows, events):
    order = run_order(world, rows, events["ts"])
    lo, _ = group_bounds(world, rows)
    n = events["ts"].size
    assert np.array_equal(np.sort(order), np.arange(n))
    group = np.repeat(np.arange(lo.size - 1), np.diff(lo))
    expected = np.lexsort((np.arange(n), events["ts"], group))
    np.testing.assert_array_equal(order, expected)
    # and the concatenation is sorted by (merchant_id, ts_utc)
    mid = world.merchant[events["series"]][order]
    ts = events["ts"][order]
    same = mid[1:] == mid[:-1]
    assert np.all(mid[1:] >= mid[:-1])
    assert np.all(ts[1:][same] >= ts[:-1][same])


def test_order_groups_breaks_ties_by_index():
    # Equal timestamps keep their event order; a group's order never leaves the group.
    ts = np.array([5, 5, 3, 5, 9, 9, 1, 1], np.int64) + YEAR_2026 * BUCKET_US
    lo = np.array([0, 4, 8], np.int64)
    start = np.array([YEAR_2026 * BUCKET_US] * 2, np.int64)
    order = np.empty(8, np.int64)
    order_groups(lo, start, ts, order)
    np.testing.assert_array_equal(order, [2, 0, 1, 3, 6, 7, 4, 5])


# ----------------------------------------------------------------------------- sort_keys
@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(-(2**62), 2**62), max_size=400),
    st.sampled_from(["as is", "sorted", "reversed", "few values"]),
)
def test_sort_keys_equals_numpy_sort(values, arrangement):
    a = np.array(values, dtype=np.int64)
    if arrangement == "sorted":
        a = np.sort(a)
    elif arrangement == "reversed":
        a = np.sort(a)[::-1].copy()
    elif arrangement == "few values":
        a = a % 3
    got = a.copy()
    sort_keys(got)
    np.testing.assert_array_equal(got, np.sort(a))


def test_sort_keys_large_and_adversarial():
    rng = np.random.default_rng(7)
    for a in (
        rng.integers(0, 2**55, 200_000),
        np.arange(100_000)[::-1].copy(),
        np.tile(np.arange(50), 2_000),  # many equal keys
        np.concatenate([np.arange(0, 60_000, 2), np.arange(1, 60_000, 2)]),  # organ pipe
    ):
        a = a.astype(np.int64)
        got = a.copy()
        sort_keys(got)
        np.testing.assert_array_equal(got, np.sort(a))
