"""S4 rules (engine_core/checks/rules_s4.py): the one day's events generated from the S3 rows
by the law's reference kernel ``generate_events`` (conftest.event_rows: ~5 200 events of 20
merchants), then changed. Every S4 rule comes out of the one pass of ``s4_rules``."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

from engine_core.checks.contract import schema_rule
from engine_core.checks.event_scan import UNIFORMITY_BINS, all_within, uniformity_edges
from engine_core.checks.law import weekend_sums
from engine_core.checks.rules_s4 import (
    pooled_shares,
    routing_shares_verdict,
    s4_rules,
    uniformity_verdict,
    weekend_share_verdict,
)
from tests.checks.conftest import HOUR_US, YEAR, col, only, replace_column


def rule(ctx, store, code):
    return only(s4_rules(ctx, store, YEAR), code)


def events(law) -> pa.Table:
    return law.tables["arrival_events"]


def physical_row(law) -> int:
    """A routed-to-a-site row that is not its merchant's first or last."""
    t = events(law)
    virt, mid = col(t, "is_virtual"), col(t, "merchant_id")
    inner = np.flatnonzero(~virt[1:-1] & (mid[:-2] == mid[1:-1]) & (mid[1:-1] == mid[2:])) + 1
    return int(inner[len(inner) // 2])


def test_events_schema_passes(law, store_of):
    r = schema_rule(store_of(law), "EVENTS_SCHEMA", "arrival_events", YEAR)
    assert r.passed is True, r.examples
    assert r.figures["rows"] == events(law).num_rows


def test_events_schema_fails(ctx, law, store_of):
    # µs written as ns
    t = events(law)
    i = t.schema.get_field_index("ts_utc")
    law.tables["arrival_events"] = t.set_column(
        i, "ts_utc", t.column("ts_utc").cast(pa.timestamp("ns", tz="UTC")))
    r = rule(ctx, store_of(law), "EVENTS_SCHEMA")
    assert (r.code, r.passed) == ("EVENTS_SCHEMA", False)
    assert "ts_utc: type timestamp[ns, tz=UTC] where the contract has timestamp[us" in (
        r.examples[0])


def test_events_id_unique_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "EVENTS_ID_UNIQUE")
    assert r.passed is True, r.examples
    assert r.figures["duplicates"] == 0 and r.figures["id_classes"] == 1


def test_events_id_unique_fails(ctx, law, store_of):
    t = events(law)
    aid = col(t, "arrival_id")
    aid[7] = aid[3]
    law.tables["arrival_events"] = replace_column(t, "arrival_id", aid)
    r = rule(ctx, store_of(law), "EVENTS_ID_UNIQUE")
    assert (r.code, r.passed) == ("EVENTS_ID_UNIQUE", False)
    assert r.figures["duplicates"] == 1
    assert r.examples == (f"arrival_id={aid[3]}; appears more than once",)


def test_events_conservation_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "EVENTS_CONSERVATION")
    assert r.passed is True, r.examples
    assert r.figures["rows"] == r.figures["s3_sum_count"] == events(law).num_rows


def test_events_conservation_fails(ctx, law, store_of):
    # the partition's last event lost: its cell holds one event fewer than S3 counted
    t = events(law)
    law.tables["arrival_events"] = t.slice(0, t.num_rows - 1)
    r = rule(ctx, store_of(law), "EVENTS_CONSERVATION")
    assert (r.code, r.passed) == ("EVENTS_CONSERVATION", False)
    assert r.figures["cells_mismatched"] == 1
    n = t.num_rows
    assert f"partition; S3 Σcount {n} != S4 rows {n - 1}" in r.examples
    assert any("; S3 count" in e and "S4 events" in e for e in r.examples)


def test_events_in_bucket_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "EVENTS_IN_BUCKET")
    assert r.passed is True, r.examples
    assert r.figures["offending_rows"] == 0


def test_events_in_bucket_fails(ctx, law, store_of):
    # one row names the bucket before the one its ts_utc lies in
    t = events(law)
    i = physical_row(law)
    start = col(t, "bucket_start_utc")
    start[i] -= HOUR_US
    law.tables["arrival_events"] = replace_column(t, "bucket_start_utc", start)
    r = rule(ctx, store_of(law), "EVENTS_IN_BUCKET")
    assert (r.code, r.passed) == ("EVENTS_IN_BUCKET", False)
    assert r.figures["offending_rows"] == 1
    aid = t.column("arrival_id")[i].as_py()
    assert r.examples[0].startswith(f"arrival_id={aid} ")
    assert r.examples[0].endswith("outside [start, start + 3600s)")


def test_events_local_time_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "EVENTS_LOCAL_TIME")
    assert r.passed is True, r.examples
    assert r.figures["offending_rows"] == 0 and r.figures["zones"] == 6


def test_events_local_time_fails(ctx, law, store_of):
    # one wall clock an hour off (a DST rule applied where none is)
    t = events(law)
    i = physical_row(law)
    local = col(t, "ts_local")
    local[i] += HOUR_US
    law.tables["arrival_events"] = replace_column(t, "ts_local", local)
    r = rule(ctx, store_of(law), "EVENTS_LOCAL_TIME")
    assert (r.code, r.passed) == ("EVENTS_LOCAL_TIME", False)
    assert r.figures["offending_rows"] == 1
    tz = t.column("tzid")[i].as_py()
    assert f"; tzid={tz} ts_local=" in r.examples[0] and ", reference " in r.examples[0]


def test_events_routing_membership_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "EVENTS_ROUTING_MEMBERSHIP")
    assert r.passed is True, r.examples
    assert r.figures["offending_rows"] == 0


def test_events_routing_membership_fails(ctx, law, store_of):
    # one arrival routed to another merchant's site
    t = events(law)
    i = physical_row(law)
    sites = ctx.world.tables["sites"]
    other = np.flatnonzero(col(sites, "merchant_id") != t.column("merchant_id")[i].as_py())
    foreign = int(col(sites, "site_id")[other[0]])
    site = col(t, "site_id")
    site[i] = foreign
    law.tables["arrival_events"] = replace_column(
        t, "site_id", site, mask=col(t, "is_virtual"))
    r = rule(ctx, store_of(law), "EVENTS_ROUTING_MEMBERSHIP")
    assert (r.code, r.passed) == ("EVENTS_ROUTING_MEMBERSHIP", False)
    assert r.figures["offending_rows"] == 1
    assert f"site_id={foreign} edge_id=None" in r.examples[0]


def test_events_target_exclusive_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "EVENTS_TARGET_EXCLUSIVE")
    assert r.passed is True, r.examples
    assert r.figures["virtual"] + r.figures["physical"] == events(law).num_rows


def test_events_target_exclusive_fails(ctx, law, store_of):
    # one site arrival that names an edge as well
    t = events(law)
    i = physical_row(law)
    edge = col(t, "edge_id")
    edge_set = col(t, "is_virtual").copy()
    edge[i], edge_set[i] = 777, True
    law.tables["arrival_events"] = replace_column(t, "edge_id", edge, mask=~edge_set)
    r = rule(ctx, store_of(law), "EVENTS_TARGET_EXCLUSIVE")
    assert (r.code, r.passed) == ("EVENTS_TARGET_EXCLUSIVE", False)
    assert r.figures["offending_rows"] == 1
    site = t.column("site_id")[i].as_py()
    assert f"site_id={site} edge_id=777 is_virtual=False" in r.examples[0]


def test_events_sorted_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "EVENTS_SORTED")
    assert r.passed is True, r.examples
    assert r.figures["offending_rows"] == 0


def test_events_sorted_fails(ctx, law, store_of):
    # the first merchant's rows written after the second's: each merchant's own numbering
    # stays right (EVENTS_SEQ passes), the order across merchants does not
    t = events(law)
    mid = col(t, "merchant_id")
    a = int(np.searchsorted(mid, mid[0], side="right"))
    b = int(np.searchsorted(mid, mid[a], side="right"))
    law.tables["arrival_events"] = pa.concat_tables([t.slice(a, b - a), t.slice(0, a),
                                                     t.slice(b)])
    results = s4_rules(ctx, store_of(law), YEAR)
    r = only(results, "EVENTS_SORTED")
    assert (r.code, r.passed) == ("EVENTS_SORTED", False)
    assert r.figures["offending_rows"] == 1
    assert r.examples[0].startswith(f"arrival_id={t.column('arrival_id')[0].as_py()} ")
    assert only(results, "EVENTS_SEQ").passed is True


def test_events_seq_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "EVENTS_SEQ")
    assert r.passed is True, r.examples
    assert r.figures["merchants"] == 20


def test_events_seq_fails(ctx, law, store_of):
    # the first merchant's last arrival numbered one too high: a gap in 1, 2, …
    t = events(law)
    mid = col(t, "merchant_id")
    last = int(np.searchsorted(mid, mid[0], side="right")) - 1
    seq = col(t, "arrival_seq")
    seq[last] += 1
    law.tables["arrival_events"] = replace_column(t, "arrival_seq", seq)
    r = rule(ctx, store_of(law), "EVENTS_SEQ")
    assert (r.code, r.passed) == ("EVENTS_SEQ", False)
    assert r.figures["offending_rows"] == 1
    assert f"arrival_seq={seq[last]} breaks the merchant's" in r.examples[0]


def test_rng_rederive_s4_passes(ctx, law, store_of):
    # all 681 S3 rows are sampled (2000 asked): every event re-derived bit for bit
    r = rule(ctx, store_of(law), "RNG_REDERIVE_S4")
    assert r.passed is True, r.examples
    assert r.figures["sampled_events"] == events(law).num_rows
    assert r.figures["blocks_law"] == r.figures["blocks_totals"]


def test_rng_rederive_s4_fails(ctx, law, store_of):
    # one arrival placed one microsecond later than the law places it
    t = events(law)
    i = physical_row(law)
    ts = col(t, "ts_utc")
    ts[i] += 1
    law.tables["arrival_events"] = replace_column(t, "ts_utc", ts)
    law.totals["arrival_events"]["blocks"]["S4.edge.v1"] += 1
    r = rule(ctx, store_of(law), "RNG_REDERIVE_S4")
    assert (r.code, r.passed) == ("RNG_REDERIVE_S4", False)
    assert r.figures["cells_mismatched"] == 1
    aid = t.column("arrival_id")[i].as_py()
    assert any(f"arrival_id={aid}: ts published {ts[i]!r}" in e for e in r.examples)
    assert any("blocks[S4.edge.v1]=" in e for e in r.examples)


def test_events_uniformity_passes(ctx, law, store_of):
    # ~5 200 law offsets in 100 bins: X² on 99 df, z = (X² − 99)/√Var well inside ±6
    r = rule(ctx, store_of(law), "EVENTS_UNIFORMITY")
    assert r.passed is True, r.examples
    assert r.figures["n"] == events(law).num_rows and abs(r.figures["z"]) < 6


def test_events_uniformity_fails(ctx, law, store_of):
    # every arrival squeezed into the first tenth of its bucket
    t = events(law)
    start, ts = col(t, "bucket_start_utc"), col(t, "ts_utc")
    law.tables["arrival_events"] = replace_column(t, "ts_utc", start + (ts - start) // 10)
    r = rule(ctx, store_of(law), "EVENTS_UNIFORMITY")
    assert (r.code, r.passed) == ("EVENTS_UNIFORMITY", False)
    assert r.figures["z"] > 6
    assert "within-bucket offsets" in r.examples[0]


def test_events_routing_shares_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "EVENTS_ROUTING_SHARES")
    assert r.passed is True, r.examples
    assert max(abs(r.figures[z]) for z in ("z_sites", "z_edges", "z_hybrid")) < 6


def test_events_routing_shares_fails(ctx, law, store_of):
    # every site arrival routed to the lowest site id of its (merchant, country, zone) set:
    # membership holds, the shares ignore the weights
    t = events(law)
    sites = ctx.world.tables["sites"].to_pydict()
    first: dict[tuple, int] = {}
    for m, c, z, s in zip(sites["merchant_id"], sites["legal_country_iso"], sites["tzid"],
                          sites["site_id"], strict=True):
        first[(m, c, z)] = min(s, first.get((m, c, z), s))
    rows = t.select(["merchant_id", "legal_country_iso", "zone_tzid"]).to_pylist()
    virt = col(t, "is_virtual")
    site = np.array([0 if v else first[tuple(r.values())] for r, v in zip(rows, virt,
                                                                           strict=True)])
    law.tables["arrival_events"] = replace_column(t, "site_id", site, mask=virt)
    results = s4_rules(ctx, store_of(law), YEAR)
    r = only(results, "EVENTS_ROUTING_SHARES")
    assert (r.code, r.passed) == ("EVENTS_ROUTING_SHARES", False)
    assert r.figures["z_sites"] > 6 and abs(r.figures["z_hybrid"]) < 6
    assert r.examples[0].startswith("site set merchant=")
    assert only(results, "EVENTS_ROUTING_MEMBERSHIP").passed is True


def test_events_weekend_share_passes(ctx, law, store_of):
    # 93 of 5 239 events fall on a Saturday in their zone; Σμ puts 93.0 there
    r = rule(ctx, store_of(law), "EVENTS_WEEKEND_SHARE")
    assert r.passed is True, r.examples
    assert 0 < r.figures["expected"] < 0.1
    assert abs(r.figures["difference"]) <= r.figures["tolerance"]


def test_events_weekend_share_fails(ctx, law, store_of):
    # only the arrivals of Saturday buckets (in the series' zone) kept: a share of 1
    t = events(law)
    zone = t.column("zone_tzid").to_pylist()
    start = col(t, "bucket_start_utc")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    weekday = {
        (z, s): (epoch + dt.timedelta(microseconds=int(s))).astimezone(ZoneInfo(z)).weekday()
        for z, s in set(zip(zone, start.tolist(), strict=True))
    }
    keep = np.array([weekday[(z, s)] >= 5 for z, s in zip(zone, start.tolist(), strict=True)])
    assert 0 < keep.sum() < len(keep) // 10
    law.tables["arrival_events"] = t.filter(pa.array(keep))
    r = rule(ctx, store_of(law), "EVENTS_WEEKEND_SHARE")
    assert (r.code, r.passed) == ("EVENTS_WEEKEND_SHARE", False)
    assert r.figures["realised"] == 1.0 and r.figures["expected"] < 0.1
    assert r.examples[0].startswith("arrival_events; weekend share 1.0000, expected 0.0")


# ----------------------------------------------------------------------------- the cores alone
D_US = 3600 * 1_000_000


def offsets_hist(x: np.ndarray) -> np.ndarray:
    """Integer offsets in [0, D) binned as the scan bins them."""
    edges = uniformity_edges(D_US, UNIFORMITY_BINS)
    return np.bincount(np.searchsorted(edges, x, side="right") - 1, minlength=UNIFORMITY_BINS)


def test_uniformity_core_on_uniform_offsets():
    # 100 000 uniform µs offsets: X² on 99 df has z ≈ N(0, 1); offsets √U·D (a density rising
    # linearly over the bucket) put z in the thousands
    rng = np.random.default_rng(3)
    x = rng.integers(0, D_US, size=100_000)
    r = uniformity_verdict(offsets_hist(x), D_US, 6.0)
    assert r.passed is True and r.figures["n"] == 100_000 and abs(r.figures["z"]) < 6
    skew = (np.sqrt(rng.random(100_000)) * D_US).astype(np.int64)
    bad = uniformity_verdict(offsets_hist(skew), D_US, 6.0)
    assert (bad.code, bad.passed) == ("EVENTS_UNIFORMITY", False)
    assert bad.figures["z"] > 6
    assert bad.examples[0].startswith("arrival_events; within-bucket offsets X²=")


def test_routing_shares_core_on_multinomial_hits():
    # three site sets (weights 1:2:7, 1:1, 5:3:1:1) and one edge set, hits drawn by the
    # weights; then the same hits with the first set's shares reversed
    rng = np.random.default_rng(5)
    weight = np.array([1, 2, 7, 1, 1, 5, 3, 1, 1], dtype=np.float64)
    set_id = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    hits = np.concatenate([rng.multinomial(n, weight[set_id == k] / weight[set_id == k].sum())
                           for k, n in enumerate((3000, 1000, 2000))])
    e_weight, e_set = np.array([1.0, 3.0]), np.array([0, 0])
    e_hits = rng.multinomial(800, [0.25, 0.75])
    v_h = int(rng.binomial(1000, 0.35))

    def judge(site_hits, virtual):
        return routing_shares_verdict(
            pooled_shares(site_hits, weight, set_id), pooled_shares(e_hits, e_weight, e_set),
            1000, virtual, 0.35, 6.0, lambda k: f"set{k}", lambda k: f"merchant{k}")

    r = judge(hits, v_h)
    assert r.passed is True, r.examples
    assert r.figures["sites"]["sets_tested"] == 3 and r.figures["sites"]["events"] == 6000
    swapped = hits.copy()
    swapped[[0, 2]] = swapped[[2, 0]]
    bad = judge(swapped, v_h)
    assert (bad.code, bad.passed) == ("EVENTS_ROUTING_SHARES", False)
    assert bad.figures["z_sites"] > 6 and bad.examples[0].startswith("site set set0; pooled")
    # every HYBRID event virtual: z = 0.65·1000 / √(1000·0.35·0.65) ≈ 43
    coin = judge(hits, 1000)
    assert coin.passed is False and coin.figures["z_hybrid"] > 40
    assert coin.examples == ("HYBRID merchants; 1000 of 1000 events virtual, expected share "
                             f"0.35, z={coin.figures['z_hybrid']:.2f}",)


def test_weekend_share_core():
    ok = weekend_share_verdict(93, 5239, 93.0, 5233.7, 0.10)
    assert ok.passed is True and abs(ok.figures["difference"]) < 1e-3
    bad = weekend_share_verdict(900, 5239, 93.0, 5233.7, 0.10)
    assert (bad.code, bad.passed) == ("EVENTS_WEEKEND_SHARE", False)
    assert bad.examples == ("arrival_events; weekend share 0.1718, expected 0.0178 ± 0.1",)


def test_weekend_sums_equal_the_law_arrays():
    # the fused pass against the arrays law_mu would build: μ = min(λ·f, λ_max), NaN cells
    # (no group, a NaN factor, ∞·0) left out; only the summation order differs, so the two
    # agree to a few ulps of the total
    rng = np.random.default_rng(7)
    n, n_b, n_g, n_z = 40, 500, 5, 3
    lam = rng.gamma(0.5, 3.0, size=(n, n_b))
    lam[3, 7] = np.inf
    factor = rng.lognormal(0.0, 0.8, size=(n_g, n_b))
    factor[2, 100:130] = np.nan
    factor[0, 7] = 0.0
    group = rng.integers(-1, n_g, size=n)
    group[3] = 0
    zone = rng.integers(0, n_z, size=n)
    weekend = rng.random((n_z, n_b)) < 2 / 7
    lam_max = 12.0
    f = factor[np.where(group >= 0, group, 0)]
    f[group < 0] = np.nan
    with np.errstate(invalid="ignore"):  # ∞ × 0 cells are NaN on purpose
        mu = np.minimum(lam * f, lam_max)
    want = (np.nansum(mu * weekend[zone]), np.nansum(mu))
    got = np.zeros(2)
    weekend_sums(lam, group, factor, lam_max, weekend, zone, got)
    assert np.isnan(mu).sum() > 30 and (mu == lam_max).sum() > 0
    assert got[1] == pytest.approx(want[1], rel=1e-12) and got[0] == pytest.approx(want[0],
                                                                                   rel=1e-12)
    assert 0 < got[0] < got[1]
    # summed in two chunks of series, the same
    two = np.zeros(2)
    for lo, hi in ((0, 17), (17, n)):
        weekend_sums(lam[lo:hi], group[lo:hi], factor, lam_max, weekend, zone[lo:hi], two)
    assert two == pytest.approx(got, rel=1e-12)


def test_all_within_checks_both_bounds_inclusive():
    top = np.uint64(2**64 - 1)
    ids = np.array([5, 9, 7], dtype=np.uint64)
    assert all_within(ids, np.uint64(5), np.uint64(9))
    assert not all_within(ids, np.uint64(6), np.uint64(9))
    assert not all_within(ids, np.uint64(5), np.uint64(8))
    assert all_within(np.array([top, 0], dtype=np.uint64), np.uint64(0), top)
    assert all_within(np.empty(0, dtype=np.uint64), np.uint64(1), np.uint64(0))
