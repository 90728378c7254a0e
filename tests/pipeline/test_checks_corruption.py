"""Every validation rule can fail: each test corrupts one published partition of a clean tiny
run (rewriting its Parquet file in place, or its totals) and asserts the rule's code fails.
The S4 rules are also evaluated in 3 and 7 merchant shards: the same rules fail.

The corruptions reproduce the previous system's failures where there is one: a grid bucket
missing (``bucket_missing`` / ``DOMAIN_ALIGN_FAILED``), timestamps written as strings, local
times off by an hour, duplicate ids, a validator blind to per-bucket losses.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from engine_core.checks import evaluate, world_rules
from engine_core.checks.catalogue import RULES
from engine_core.checks.rules_s4 import s4_rules
from engine_core.pipeline import Run, RunConfig
from engine_core.tz import build_tz_tables
from tests.pipeline.conftest import run_states

UTC = dt.UTC
START = dt.datetime(2026, 1, 1, tzinfo=UTC)
END = dt.datetime(2026, 2, 1, tzinfo=UTC)
YEAR = 2026
HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US
TESTED: set[str] = set()


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("clean") / "data")
    eng = run_states(root, START, END)
    for state in ("s1", "s2", "s3", "s4"):
        failed = [r.code for r in evaluate(eng.ctx, eng.store, state, YEAR) if not r.passed]
        assert failed == [], f"the clean run fails {failed}"
    return root


@pytest.fixture
def eng(clean_root, tmp_path) -> Run:
    """An engine over a private copy of the clean run."""
    root = str(tmp_path / "data")
    shutil.copytree(clean_root, root)
    return Run.open(
        RunConfig(world="tiny", scenario="baseline", start=START, end=END, storage_root=root)
    )


# ----------------------------------------------------------------------------- helpers
def with_context(eng: Run, world=None, policy=None, tz=None) -> Run:
    """The run with another world or policy, or with other tz tables than it would build."""
    ctx = dataclasses.replace(eng.ctx, world=world or eng.ctx.world,
                              policy=policy or eng.ctx.policy)
    if tz is not None:
        ctx.__dict__["tz"] = tz  # what the context's cached property would hold
    return dataclasses.replace(eng, ctx=ctx)


def read(eng: Run, dataset: str) -> pa.Table:
    (f,) = eng.store.dataset_files(dataset, YEAR)
    return pq.read_table(f)


def write(eng: Run, dataset: str, table: pa.Table) -> None:
    (f,) = eng.store.dataset_files(dataset, YEAR)
    pq.write_table(table, f, compression="zstd")


def put(table: pa.Table, name: str, values, mask=None, type_=None) -> pa.Table:
    i = table.schema.get_field_index(name)
    field = table.schema.field(i)
    typ = type_ or field.type
    if pa.types.is_dictionary(typ):
        arr = pa.array(values, type=pa.string(), mask=mask).dictionary_encode()
        arr = arr.cast(typ) if arr.type != typ else arr
    elif pa.types.is_timestamp(typ):
        arr = pa.array(np.asarray(values, dtype=np.int64), pa.int64(), mask=mask).view(typ)
    else:
        arr = pa.array(values, type=typ, mask=mask)
    return table.set_column(i, field.with_type(typ), arr)


def ints(table: pa.Table, name: str) -> np.ndarray:
    col = table.column(name).combine_chunks()
    if pa.types.is_timestamp(col.type):
        col = col.view(pa.int64())
    return pc.fill_null(col, 0).to_numpy(zero_copy_only=False).copy()


def edit_totals(eng: Run, dataset: str, fn) -> None:
    path = f"{eng.store.dataset_path(dataset, YEAR)}/_totals.json"
    with open(path) as fh:
        totals = json.load(fh)
    fn(totals)
    with open(path, "w") as fh:
        json.dump(totals, fh)


def failed(eng: Run, state: str) -> dict[str, object]:
    results = (world_rules(eng.ctx, eng.store) if state == "world"
               else evaluate(eng.ctx, eng.store, state, YEAR))
    assert [r.code for r in results] == [r.code for r in RULES if r.state == state]
    bad = {r.code: r for r in results if not r.passed}
    if state == "s4":  # the S4 rules in merchant shards fail the same rules, as often
        for k in (3, 7):
            sharded = {r.code: r for r in s4_rules(eng.ctx, eng.store, YEAR, shards=k)
                       if not r.passed}
            assert sorted(sharded) == sorted(bad), f"{k} shards"
            for code, r in bad.items():
                assert r.examples and sharded[code].examples, code
                n = r.figures.get("offending_rows")
                assert sharded[code].figures.get("offending_rows") == n, (code, k)
    return bad


def assert_fails(eng: Run, state: str, code: str) -> None:
    bad = failed(eng, state)
    assert code in bad, f"{code} passed; failing: {sorted(bad)}"
    r = bad[code]
    assert r.examples, f"{code} failed without an example"
    TESTED.add(code)


def drop_row(table: pa.Table, k: int) -> pa.Table:
    return pa.concat_tables([table.slice(0, k), table.slice(k + 1)])


# ----------------------------------------------------------------------------- world
def test_world_valid_fails_on_tables_that_do_not_match_the_fingerprint(eng):
    sites = eng.ctx.world.tables["sites"]
    w = pc.multiply(sites.column("weight"), 2.0)
    tables = dict(
        eng.ctx.world.tables,
        sites=sites.set_column(sites.schema.get_field_index("weight"), "weight", w),
    )
    eng = with_context(eng, world=dataclasses.replace(eng.ctx.world, tables=tables))
    assert_fails(eng, "world", "WORLD_VALID")


def test_world_valid_fails_on_a_broken_input_rule(eng):
    sites = eng.ctx.world.tables["sites"]
    w = ints(sites, "site_id").astype(np.float64) * 0 - 1.0  # negative weights
    tables = dict(
        eng.ctx.world.tables,
        sites=sites.set_column(sites.schema.get_field_index("weight"), "weight", pa.array(w)),
    )
    eng = with_context(eng, world=dataclasses.replace(eng.ctx.world, tables=tables))
    assert_fails(eng, "world", "WORLD_VALID")


def test_rng_keys_unique_fails_on_a_key_collision(eng, monkeypatch):
    import engine_core.checks.rules_world as rw

    real = rw.stream_keys

    def colliding(family, ns, seed, names):
        keys = real(family, ns, seed, names)
        if family == "S4.site.v1" and len(keys) > 1:
            keys[1] = keys[0]
        return keys

    monkeypatch.setattr(rw, "stream_keys", colliding)
    assert_fails(eng, "world", "RNG_KEYS_UNIQUE")


def test_tz_coverage_fails_when_tables_end_a_year_early(eng):
    # the previous system's tz table ended a year early: 2.6 % of local times off by an hour
    eng = with_context(eng, tz=build_tz_tables(eng.ctx.arrays.tzids, YEAR, YEAR))
    assert_fails(eng, "world", "TZ_COVERAGE")


def test_tz_coverage_fails_when_a_zone_has_no_rules(eng):
    eng = with_context(eng, tz=build_tz_tables(eng.ctx.arrays.tzids[1:], YEAR - 1, YEAR + 1))
    assert_fails(eng, "world", "TZ_COVERAGE")


# ----------------------------------------------------------------------------- s1
def test_grid_schema_fails_on_string_timestamps(eng):
    t = read(eng, "time_grid")
    t = t.set_column(2, "bucket_start_utc", pc.cast(t.column(2), pa.string()))
    write(eng, "time_grid", t)
    assert_fails(eng, "s1", "GRID_SCHEMA")


def test_grid_contiguous_fails_on_a_removed_bucket(eng):
    write(eng, "time_grid", drop_row(read(eng, "time_grid"), 100))
    assert_fails(eng, "s1", "GRID_CONTIGUOUS")


def test_grid_contiguous_fails_on_overlapping_intervals(eng):
    t = read(eng, "time_grid")
    end = ints(t, "bucket_end_utc")
    end[10] += 1
    write(eng, "time_grid", put(t, "bucket_end_utc", end))
    assert_fails(eng, "s1", "GRID_CONTIGUOUS")


def test_grouping_schema_fails_on_a_narrowed_type(eng):
    t = read(eng, "grouping")
    i = t.schema.get_field_index("kappa")
    t = t.set_column(i, "kappa", pc.cast(t.column(i), pa.float32()))
    write(eng, "grouping", t)
    assert_fails(eng, "s1", "GROUPING_SCHEMA")


def test_grouping_complete_fails_on_a_wrong_group(eng):
    t = read(eng, "grouping")
    gid = t.column("group_id").to_pylist()
    gid[3] = gid[3].replace("|h", "|h9")
    write(eng, "grouping", put(t, "group_id", gid))
    assert_fails(eng, "s1", "GROUPING_COMPLETE")


def test_grouping_complete_fails_on_a_missing_series(eng):
    write(eng, "grouping", drop_row(read(eng, "grouping"), 0))
    assert_fails(eng, "s1", "GROUPING_COMPLETE")


def test_group_size_bounds_fails_outside_the_policy_bounds(eng):
    v = eng.ctx.policy.validation.model_copy(update={"group_size_min": 2})
    eng = with_context(eng, policy=eng.ctx.policy.model_copy(update={"validation": v}))
    assert_fails(eng, "s1", "GROUP_SIZE_BOUNDS")


# ----------------------------------------------------------------------------- s2
def test_latent_schema_fails_on_float32_factors(eng):
    t = read(eng, "latent_intensity")
    i = t.schema.get_field_index("factor")
    write(eng, "latent_intensity", t.set_column(i, "factor", pc.cast(t.column(i), pa.float32())))
    assert_fails(eng, "s2", "LATENT_SCHEMA")


def test_latent_domain_fails_on_a_missing_cell(eng):
    write(eng, "latent_intensity", drop_row(read(eng, "latent_intensity"), 500))
    assert_fails(eng, "s2", "LATENT_DOMAIN")


def test_latent_domain_fails_on_an_unclipped_factor(eng):
    t = read(eng, "latent_intensity")
    f = t.column("factor").to_numpy().copy()
    f[7] = 7.5
    write(eng, "latent_intensity", put(t, "factor", f))
    assert_fails(eng, "s2", "LATENT_DOMAIN")


def test_latent_mean_factor_fails_on_a_biased_field(eng):
    t = read(eng, "latent_intensity")
    f = np.minimum(t.column("factor").to_numpy() * 1.25, 5.0)
    write(eng, "latent_intensity", put(t, "factor", f))
    assert_fails(eng, "s2", "LATENT_MEAN_FACTOR")


def test_rng_rederive_s2_fails_on_a_changed_factor(eng):
    t = read(eng, "latent_intensity")
    f = np.nextafter(t.column("factor").to_numpy(), 10.0)  # one ulp: only bit-exactness sees it
    write(eng, "latent_intensity", put(t, "factor", f))
    bad = failed(eng, "s2")
    assert set(bad) == {"RNG_REDERIVE_S2"}
    TESTED.add("RNG_REDERIVE_S2")


# ----------------------------------------------------------------------------- s3
def test_counts_schema_fails_on_string_timestamps(eng):
    t = read(eng, "bucket_counts")
    i = t.schema.get_field_index("bucket_start_utc")
    t = t.set_column(i, "bucket_start_utc", pc.cast(t.column(i), pa.string()))
    write(eng, "bucket_counts", t)
    assert_fails(eng, "s3", "COUNTS_SCHEMA")


def test_counts_key_unique_fails_on_a_duplicated_row(eng):
    t = read(eng, "bucket_counts")
    write(eng, "bucket_counts", pa.concat_tables([t, t.slice(5, 1)]))
    assert_fails(eng, "s3", "COUNTS_KEY_UNIQUE")


def test_counts_domain_align_fails_when_the_grid_lacks_a_bucket(eng):
    # the previous system's bucket_missing: an S3 row whose bucket the grid does not hold
    counts = read(eng, "bucket_counts")
    first = ints(counts, "bucket_start_utc")[0]
    grid = read(eng, "time_grid")
    k = int(np.flatnonzero(ints(grid, "bucket_start_utc") == first)[0])
    write(eng, "time_grid", drop_row(grid, k))
    bad = failed(eng, "s3")
    assert "COUNTS_DOMAIN_ALIGN" in bad
    assert any("bucket_missing" in e for e in bad["COUNTS_DOMAIN_ALIGN"].examples)
    TESTED.add("COUNTS_DOMAIN_ALIGN")


def test_counts_domain_align_fails_on_an_unaligned_bucket(eng):
    t = read(eng, "bucket_counts")
    b = ints(t, "bucket_start_utc")
    b[3] += HOUR_US // 2
    write(eng, "bucket_counts", put(t, "bucket_start_utc", b))
    assert_fails(eng, "s3", "COUNTS_DOMAIN_ALIGN")


def test_counts_domain_align_fails_on_an_unroutable_series(eng):
    sites = eng.ctx.world.tables["sites"]
    assert eng.ctx.arrays.n_series  # the engine's model is built from the full world first
    first = sites.slice(0, 1).to_pylist()[0]
    keep = pc.invert(
        pc.and_(
            pc.equal(sites.column("merchant_id"), first["merchant_id"]),
            pc.equal(sites.column("tzid"), first["tzid"]),
        )
    )
    tables = dict(eng.ctx.world.tables, sites=sites.filter(keep))
    eng = with_context(eng, world=dataclasses.replace(eng.ctx.world, tables=tables))
    assert_fails(eng, "s3", "COUNTS_DOMAIN_ALIGN")


def test_counts_completeness_fails_when_a_series_was_not_sampled(eng):
    edit_totals(
        eng, "bucket_counts", lambda t: t.update(cells_sampled=t["cells_sampled"] - t["buckets"])
    )
    assert_fails(eng, "s3", "COUNTS_COMPLETENESS")


def test_counts_cap_fails_on_a_wrong_capped_flag(eng):
    t = read(eng, "bucket_counts")
    c = t.column("capped").to_numpy(zero_copy_only=False).copy()
    c[0] = True
    write(eng, "bucket_counts", put(t, "capped", c))
    assert_fails(eng, "s3", "COUNTS_CAP")


def test_counts_cap_fails_above_the_maximum(eng):
    t = read(eng, "bucket_counts")
    n = ints(t, "count")
    n[0] = eng.ctx.policy.counts.max_count_per_bucket + 1
    write(eng, "bucket_counts", put(t, "count", n))
    assert_fails(eng, "s3", "COUNTS_CAP")


def test_counts_dispersion_fails_on_inflated_counts(eng):
    t = read(eng, "bucket_counts")
    write(eng, "bucket_counts", put(t, "count", ints(t, "count") * 2))
    assert_fails(eng, "s3", "COUNTS_DISPERSION")


def test_rng_rederive_s3_fails_on_one_wrong_mu(eng):
    t = read(eng, "bucket_counts")
    mu = t.column("mu").to_numpy().copy()
    mu[len(mu) // 2] = np.nextafter(mu[len(mu) // 2], 0.0)
    write(eng, "bucket_counts", put(t, "mu", mu))
    assert_fails(eng, "s3", "RNG_REDERIVE_S3")


def test_rng_rederive_s3_fails_on_changed_counts(eng):
    t = read(eng, "bucket_counts")
    write(eng, "bucket_counts", put(t, "count", ints(t, "count") + 1))
    assert_fails(eng, "s3", "RNG_REDERIVE_S3")


def test_rng_rederive_s3_fails_on_wrong_block_accounting(eng):
    edit_totals(eng, "bucket_counts", lambda t: t.update(blocks=t["blocks"] + 1))
    assert_fails(eng, "s3", "RNG_REDERIVE_S3")


# ----------------------------------------------------------------------------- s4
def test_events_schema_fails_on_string_timestamps(eng):
    t = read(eng, "arrival_events")
    i = t.schema.get_field_index("ts_utc")
    write(eng, "arrival_events", t.set_column(i, "ts_utc", pc.cast(t.column(i), pa.string())))
    assert_fails(eng, "s4", "EVENTS_SCHEMA")


def test_events_schema_fails_on_nanosecond_timestamps(eng):
    t = read(eng, "arrival_events")
    i = t.schema.get_field_index("ts_local")
    write(
        eng, "arrival_events", t.set_column(i, "ts_local", pc.cast(t.column(i), pa.timestamp("ns")))
    )
    assert_fails(eng, "s4", "EVENTS_SCHEMA")


def test_events_id_unique_fails_on_a_duplicated_id(eng):
    t = read(eng, "arrival_events")
    aid = ints(t, "arrival_id").astype(np.uint64)
    aid[1] = aid[0]
    write(eng, "arrival_events", put(t, "arrival_id", aid))
    assert_fails(eng, "s4", "EVENTS_ID_UNIQUE")


def test_events_conservation_fails_on_a_dropped_event(eng):
    write(eng, "arrival_events", drop_row(read(eng, "arrival_events"), 1000))
    bad = failed(eng, "s4")
    assert "EVENTS_CONSERVATION" in bad
    assert any("S3 count" in e for e in bad["EVENTS_CONSERVATION"].examples)
    TESTED.add("EVENTS_CONSERVATION")


def test_events_conservation_fails_on_a_changed_s3_count(eng):
    t = read(eng, "bucket_counts")
    n = ints(t, "count")
    n[10] += 1
    write(eng, "bucket_counts", put(t, "count", n))
    assert_fails(eng, "s4", "EVENTS_CONSERVATION")


def test_events_in_bucket_fails_on_an_event_moved_out_of_its_bucket(eng):
    t = read(eng, "arrival_events")
    ts = ints(t, "ts_utc")
    ts[20] += HOUR_US
    write(eng, "arrival_events", put(t, "ts_utc", ts))
    assert_fails(eng, "s4", "EVENTS_IN_BUCKET")


def test_events_local_time_fails_on_a_local_time_shifted_an_hour(eng):
    t = read(eng, "arrival_events")
    loc = ints(t, "ts_local")
    loc[30] += HOUR_US
    write(eng, "arrival_events", put(t, "ts_local", loc))
    bad = failed(eng, "s4")
    assert set(bad) == {"EVENTS_LOCAL_TIME"}
    assert bad["EVENTS_LOCAL_TIME"].figures["offending_rows"] == 1
    TESTED.add("EVENTS_LOCAL_TIME")


def test_events_local_time_fails_on_a_wrong_settlement_clock(eng):
    t = read(eng, "arrival_events")
    valid = t.column("ts_local_settlement").is_valid().to_numpy(zero_copy_only=False)
    if not valid.any():
        pytest.skip("the tiny world has no settlement clock in January")
    loc = ints(t, "ts_local_settlement")
    loc[np.flatnonzero(valid)[0]] -= HOUR_US
    write(eng, "arrival_events", put(t, "ts_local_settlement", loc, mask=~valid))
    assert_fails(eng, "s4", "EVENTS_LOCAL_TIME")


def test_events_routing_membership_fails_on_a_site_of_another_merchant(eng):
    t = read(eng, "arrival_events")
    sites = eng.ctx.world.tables["sites"]
    virt = t.column("is_virtual").to_numpy(zero_copy_only=False)
    k = int(np.flatnonzero(~virt)[0])
    mid = t.column("merchant_id")[k].as_py()
    other = sites.filter(pc.not_equal(sites.column("merchant_id"), mid)).column("site_id")[0]
    site = ints(t, "site_id").astype(np.uint64)
    site[k] = other.as_py()
    write(eng, "arrival_events", put(t, "site_id", site, mask=virt))
    bad = failed(eng, "s4")
    assert set(bad) == {"EVENTS_ROUTING_MEMBERSHIP"}
    TESTED.add("EVENTS_ROUTING_MEMBERSHIP")


def test_events_target_exclusive_fails_on_both_targets_set(eng):
    t = read(eng, "arrival_events")
    virt = t.column("is_virtual").to_numpy(zero_copy_only=False)
    mask = virt.copy()
    mask[int(np.flatnonzero(~virt)[0])] = False  # a physical event also gets an edge
    edge = ints(t, "edge_id").astype(np.uint64)
    edge[~virt] = 12345
    write(eng, "arrival_events", put(t, "edge_id", edge, mask=~(virt | ~mask & ~virt)))
    assert_fails(eng, "s4", "EVENTS_TARGET_EXCLUSIVE")


def test_events_target_exclusive_fails_on_a_wrong_virtual_flag(eng):
    t = read(eng, "arrival_events")
    v = t.column("is_virtual").to_numpy(zero_copy_only=False).copy()
    v[int(np.flatnonzero(~v)[0])] = True
    write(eng, "arrival_events", put(t, "is_virtual", v))
    assert_fails(eng, "s4", "EVENTS_TARGET_EXCLUSIVE")


def test_events_sorted_fails_on_an_unsorted_file(eng):
    t = read(eng, "arrival_events")
    n = t.num_rows
    write(eng, "arrival_events", t.take(np.concatenate([[n - 1], np.arange(n - 1)])))
    assert_fails(eng, "s4", "EVENTS_SORTED")


def test_events_seq_fails_on_a_gap(eng):
    t = read(eng, "arrival_events")
    mid = ints(t, "merchant_id")
    seq = ints(t, "arrival_seq")
    k = 50
    rest = (np.arange(len(mid)) >= k) & (mid == mid[k])
    write(eng, "arrival_events", put(t, "arrival_seq", seq + rest))
    bad = failed(eng, "s4")
    assert set(bad) == {"EVENTS_SEQ"}
    assert bad["EVENTS_SEQ"].figures["offending_rows"] == 1
    TESTED.add("EVENTS_SEQ")


def test_rng_rederive_s4_fails_on_changed_ids(eng):
    t = read(eng, "arrival_events")
    aid = ints(t, "arrival_id").astype(np.uint64) ^ np.uint64(1)
    write(eng, "arrival_events", put(t, "arrival_id", aid))
    bad = failed(eng, "s4")
    assert set(bad) == {"RNG_REDERIVE_S4"}
    TESTED.add("RNG_REDERIVE_S4")


def test_rng_rederive_s4_fails_on_wrong_block_accounting(eng):
    edit_totals(
        eng,
        "arrival_events",
        lambda t: t["blocks"].update({"S4.hybrid.v1": t["blocks"]["S4.hybrid.v1"] + 1}),
    )
    assert_fails(eng, "s4", "RNG_REDERIVE_S4")


def test_events_uniformity_fails_when_every_event_is_at_its_bucket_start(eng):
    t = read(eng, "arrival_events")
    start = ints(t, "bucket_start_utc")
    ts = ints(t, "ts_utc")
    t = put(t, "ts_utc", start)
    t = put(t, "ts_local", ints(t, "ts_local") - (ts - start))
    write(eng, "arrival_events", t)
    assert_fails(eng, "s4", "EVENTS_UNIFORMITY")


def test_events_routing_shares_fails_when_every_event_goes_to_one_site(eng):
    t = read(eng, "arrival_events")
    sites = eng.ctx.world.tables["sites"].to_pylist()
    first: dict[tuple, int] = {}
    for s in sorted(sites, key=lambda s: s["site_id"]):
        first.setdefault((s["merchant_id"], s["legal_country_iso"], s["tzid"]), s["site_id"])
    virt = t.column("is_virtual").to_numpy(zero_copy_only=False)
    keys = zip(
        t.column("merchant_id").to_pylist(),
        t.column("legal_country_iso").to_pylist(),
        t.column("zone_tzid").to_pylist(),
        strict=True,
    )
    site = np.array([first.get(k, 0) for k in keys], dtype=np.uint64)
    write(eng, "arrival_events", put(t, "site_id", site, mask=virt))
    assert_fails(eng, "s4", "EVENTS_ROUTING_SHARES")


def test_events_weekend_share_fails_when_weekend_traffic_moves_to_weekdays(eng):
    t = read(eng, "arrival_events")
    start = ints(t, "bucket_start_utc")
    weekday = (start // DAY_US + 3) % 7
    shift = np.where(weekday >= 5, 2 * DAY_US, 0)
    for col in ("bucket_start_utc", "ts_utc", "ts_local"):
        t = put(t, col, ints(t, col) - shift)
    write(eng, "arrival_events", t)
    assert_fails(eng, "s4", "EVENTS_WEEKEND_SHARE")


def test_every_rule_has_a_failing_test():
    """Static guard, independent of test order or distribution: every catalogue code is named
    in this module, where each named code is the subject of an ``assert_fails``."""
    from pathlib import Path

    src = Path(__file__).read_text()
    missing = sorted(r.code for r in RULES if f'"{r.code}"' not in src)
    assert not missing, f"rules without a corruption test: {missing}"


def test_events_with_merchant_id_all_null_fail_without_an_error(eng):
    """A part file whose merchant_id is null throughout: the rules evaluate it, in shards too,
    and fail with examples."""
    t = read(eng, "arrival_events")
    mid = ints(t, "merchant_id").astype(np.uint64)
    t = put(t, "merchant_id", mid, mask=np.ones(t.num_rows, dtype=bool))
    write(eng, "arrival_events", t.cast(t.schema.set(
        t.schema.get_field_index("merchant_id"), pa.field("merchant_id", pa.uint64()))))
    bad = failed(eng, "s4")
    assert {"EVENTS_SCHEMA", "EVENTS_CONSERVATION", "EVENTS_ROUTING_MEMBERSHIP"} <= set(bad)
