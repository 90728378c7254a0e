"""S1 rules (engine_core/checks/rules_s1.py): a hand-made time grid and grouping of one day,
published into a store on tmp_path."""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from engine_core.checks.contract import schema_rule
from engine_core.checks.rules_s1 import grid_contiguous, s1_rules
from tests.checks.conftest import YEAR, col, only, replace_column


def test_grid_schema_passes(law, store_of):
    r = schema_rule(store_of(law), "GRID_SCHEMA", "time_grid", YEAR)
    assert r.passed is True, r.examples
    assert r.figures == {"files": 1, "rows": 24, "differences": 0}


def test_grid_schema_fails(ctx, law, store_of):
    # bucket starts written as text, the old system's failure
    t = law.tables["time_grid"]
    text = [v.isoformat() for v in t.column("bucket_start_utc").to_pylist()]
    i = t.schema.get_field_index("bucket_start_utc")
    law.tables["time_grid"] = t.set_column(i, "bucket_start_utc", pa.array(text))
    r = only(s1_rules(ctx, store_of(law), YEAR), "GRID_SCHEMA")
    assert (r.code, r.passed) == ("GRID_SCHEMA", False)
    assert r.figures["differences"] == 1
    assert "bucket_start_utc: type string where the contract has timestamp[us, tz=UTC]" in (
        r.examples[0])


def test_grid_contiguous_passes(ctx, law, store_of):
    r = grid_contiguous(ctx, store_of(law), YEAR)
    assert r.passed is True, r.examples
    assert r.figures["rows"] == r.figures["n_buckets"] == 24


def test_grid_contiguous_fails(ctx, law, store_of):
    # bucket 05:00 missing: the grid has a hole
    t = law.tables["time_grid"]
    law.tables["time_grid"] = pa.concat_tables([t.slice(0, 5), t.slice(6)])
    r = only(s1_rules(ctx, store_of(law), YEAR), "GRID_CONTIGUOUS")
    assert (r.code, r.passed) == ("GRID_CONTIGUOUS", False)
    assert r.figures["rows"] == 23
    assert "bucket=2026-01-02T05:00:00Z; missing from the grid" in r.examples


def test_grouping_schema_passes(law, store_of):
    r = schema_rule(store_of(law), "GROUPING_SCHEMA", "grouping", YEAR)
    assert r.passed is True, r.examples
    assert r.figures["rows"] == 51


def test_grouping_schema_fails(ctx, law, store_of):
    # κ narrowed to float32
    t = law.tables["grouping"]
    i = t.schema.get_field_index("kappa")
    law.tables["grouping"] = t.set_column(i, "kappa", t.column("kappa").cast(pa.float32()))
    r = only(s1_rules(ctx, store_of(law), YEAR), "GROUPING_SCHEMA")
    assert (r.code, r.passed) == ("GROUPING_SCHEMA", False)
    assert "kappa: type float where the contract has double" in r.examples[0]


def test_grouping_complete_passes(ctx, law, store_of):
    r = only(s1_rules(ctx, store_of(law), YEAR), "GROUPING_COMPLETE")
    assert r.passed is True, r.examples
    assert r.figures["rows"] == r.figures["series"] == 51
    assert set(r.figures["differing"].values()) == {0}


def test_grouping_complete_fails(ctx, law, store_of):
    # one series' κ is not the documented construction's, and the last series has no row
    t = law.tables["grouping"]
    kappa = col(t, "kappa")
    kappa[3] += 1.0
    law.tables["grouping"] = replace_column(t, "kappa", kappa).slice(0, 50)
    r = only(s1_rules(ctx, store_of(law), YEAR), "GROUPING_COMPLETE")
    assert (r.code, r.passed) == ("GROUPING_COMPLETE", False)
    assert r.figures["differing"]["kappa"] == 1
    assert r.figures["rows"] == 50
    assert any(e.endswith("; no row") for e in r.examples)
    assert any("kappa=" in e and "the documented construction gives" in e for e in r.examples)


def test_group_size_bounds_passes(ctx, law, store_of):
    r = only(s1_rules(ctx, store_of(law), YEAR), "GROUP_SIZE_BOUNDS")
    assert r.passed is True, r.examples
    assert r.figures["groups"] == len(ctx.grouping.group_ids)


def test_group_size_bounds_fails(ctx, law, store_of):
    # every series in one group: 51 series, with a policy that allows at most 50
    t = law.tables["grouping"]
    law.tables["grouping"] = replace_column(t, "group_id", ["baseline|one"] * t.num_rows)
    bounds = ctx.policy.validation.model_copy(update={"group_size_max": 50})
    tight = dataclasses.replace(ctx, policy=ctx.policy.model_copy(update={"validation": bounds}))
    r = only(s1_rules(tight, store_of(law), YEAR), "GROUP_SIZE_BOUNDS")
    assert (r.code, r.passed) == ("GROUP_SIZE_BOUNDS", False)
    assert r.figures["outside"] == 1 and r.figures["size_max"] == 51
    assert r.examples == ("group=baseline|one; 51 series, bounds [1, 50]",)
