"""S3 rules (engine_core/checks/rules_s3.py): the one day's counts drawn cell by cell with
``count_draw`` around μ = λ · factor (conftest.count_rows), then changed."""

from __future__ import annotations

import pyarrow as pa

from engine_core.checks.contract import schema_rule
from engine_core.checks.rules_s3 import s3_rules
from tests.checks.conftest import HOUR_US, YEAR, col, only, replace_column


def rule(ctx, store, code):
    return only(s3_rules(ctx, store, YEAR), code)


def test_counts_schema_passes(law, store_of):
    r = schema_rule(store_of(law), "COUNTS_SCHEMA", "bucket_counts", YEAR)
    assert r.passed is True, r.examples
    assert r.figures["rows"] == law.tables["bucket_counts"].num_rows


def test_counts_schema_fails(ctx, law, store_of):
    t = law.tables["bucket_counts"]
    i = t.schema.get_field_index("count")
    law.tables["bucket_counts"] = t.set_column(i, "count", t.column("count").cast(pa.int32()))
    r = rule(ctx, store_of(law), "COUNTS_SCHEMA")
    assert (r.code, r.passed) == ("COUNTS_SCHEMA", False)
    assert "count: type int32 where the contract has int64" in r.examples[0]


def test_counts_key_unique_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "COUNTS_KEY_UNIQUE")
    assert r.passed is True, r.examples
    assert r.figures["duplicates"] == 0 and r.figures["count_not_positive"] == 0


def test_counts_key_unique_fails(ctx, law, store_of):
    # the first row written twice
    t = law.tables["bucket_counts"]
    law.tables["bucket_counts"] = pa.concat_tables([t.slice(0, 1), t])
    r = rule(ctx, store_of(law), "COUNTS_KEY_UNIQUE")
    assert (r.code, r.passed) == ("COUNTS_KEY_UNIQUE", False)
    assert r.figures["duplicates"] == 1
    assert r.examples[0].endswith("; duplicate (series, bucket)")


def test_counts_domain_align_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "COUNTS_DOMAIN_ALIGN")
    assert r.passed is True, r.examples
    assert r.figures["bucket_missing"] == 0 and r.figures["grid_buckets"] == 24


def test_counts_domain_align_fails(ctx, law, store_of):
    # one row in a bucket of the next day: not in the published grid (bucket_missing)
    t = law.tables["bucket_counts"]
    start = col(t, "bucket_start_utc")
    start[0] += 24 * HOUR_US
    law.tables["bucket_counts"] = replace_column(t, "bucket_start_utc", start)
    r = rule(ctx, store_of(law), "COUNTS_DOMAIN_ALIGN")
    assert (r.code, r.passed) == ("COUNTS_DOMAIN_ALIGN", False)
    assert r.figures["bucket_missing"] == 1
    assert "bucket=2026-01-03T" in r.examples[0] and "bucket_missing" in r.examples[0]


def test_counts_completeness_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "COUNTS_COMPLETENESS")
    assert r.passed is True, r.examples
    assert r.figures["expected_cells"] == 51 * 24


def test_counts_completeness_fails(ctx, law, store_of):
    # the totals say one series was not sampled
    law.totals["bucket_counts"]["cells_sampled"] -= 24
    law.totals["bucket_counts"]["series"] -= 1
    r = rule(ctx, store_of(law), "COUNTS_COMPLETENESS")
    assert (r.code, r.passed) == ("COUNTS_COMPLETENESS", False)
    assert "_totals.json; cells_sampled=1200, expected 1224" in r.examples


def test_counts_cap_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "COUNTS_CAP")
    assert r.passed is True, r.examples
    assert r.figures["over_max"] == 0 and r.figures["capped"] == 0


def test_counts_cap_fails(ctx, law, store_of):
    # a count above max_count_per_bucket, and a capped flag on a count below it
    t = law.tables["bucket_counts"]
    n = col(t, "count")
    n[0] = 50_001
    capped = col(t, "capped")
    capped[1] = True
    law.tables["bucket_counts"] = replace_column(replace_column(t, "count", n), "capped", capped)
    r = rule(ctx, store_of(law), "COUNTS_CAP")
    assert (r.code, r.passed) == ("COUNTS_CAP", False)
    assert r.figures["over_max"] == 1 and r.figures["capped_not_at_max"] == 1
    assert any("count=50001 > max 50000" in e for e in r.examples)


def test_counts_dispersion_passes(ctx, law, store_of):
    # counts drawn by the law: both z-scores are N(0, 1) under it, far inside ±6
    r = rule(ctx, store_of(law), "COUNTS_DISPERSION")
    assert r.passed is True, r.examples
    assert abs(r.figures["z_mean"]) < 6 and abs(r.figures["z_dispersion"]) < 6
    assert r.figures["cells"] == 51 * 24


def test_counts_dispersion_fails(ctx, law, store_of):
    # every count tripled: Σ N ≈ 3 Σ μ over ~5 000 events, a mean z in the hundreds
    t = law.tables["bucket_counts"]
    law.tables["bucket_counts"] = replace_column(t, "count", 3 * col(t, "count"))
    r = rule(ctx, store_of(law), "COUNTS_DISPERSION")
    assert (r.code, r.passed) == ("COUNTS_DISPERSION", False)
    assert r.figures["z_mean"] > 6
    assert r.examples[0].startswith("bucket_counts; mean z=")


def test_rng_rederive_s3_passes(ctx, law, store_of):
    r = rule(ctx, store_of(law), "RNG_REDERIVE_S3")
    assert r.passed is True, r.examples
    assert r.figures["mismatches"] == 0
    assert r.figures["blocks_law"] == r.figures["blocks_totals"] == 51 * 24


def test_rng_rederive_s3_fails(ctx, law, store_of):
    # one count one more than the law draws (every row is in the sample: 681 rows < 1000)
    t = law.tables["bucket_counts"]
    n = col(t, "count")
    n[5] += 1
    law.tables["bucket_counts"] = replace_column(t, "count", n)
    r = rule(ctx, store_of(law), "RNG_REDERIVE_S3")
    assert (r.code, r.passed) == ("RNG_REDERIVE_S3", False)
    assert r.figures["mismatches"] == 1
    assert f"published count={n[5]} capped=False, the law draws {n[5] - 1}" in r.examples[0]
