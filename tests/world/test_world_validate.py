"""One test per input rule of the world: code, table, column and offending key."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine_core.errors import EngineError
from engine_core.schemas import WORLD_TABLES
from engine_core.world import (
    canonical_world_tables,
    generate_world,
    validate_world,
    world_fingerprint,
)
from engine_core.world.validate import PRIMARY_KEYS


@pytest.fixture(scope="module")
def tiny():
    return generate_world("tiny")


@pytest.fixture
def tables(tiny) -> dict[str, pa.Table]:
    return dict(tiny.tables)


def set_value(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    i = table.schema.get_field_index(column)
    return table.set_column(i, column, pa.array(values, type=table.schema.field(column).type))


def replace_column(table: pa.Table, column: str, array: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(column), column, array)


def key_at(table: pa.Table, name: str, row: int):
    values = tuple(table.column(c)[row].as_py() for c in PRIMARY_KEYS[name])
    return values[0] if len(values) == 1 else values


def expect(tables, code, table, column, key):
    with pytest.raises(EngineError) as info:
        validate_world(tables)
    err = info.value
    assert (err.code, err.table, err.column, err.key) == (code, table, column, key), str(err)
    assert err.message
    return err


def row_where(table: pa.Table, column: str, value: object) -> int:
    return int(
        np.flatnonzero(np.asarray(table.column(column).to_pylist(), dtype=object) == value)[0]
    )


# ----------------------------------------------------------------------------- valid input
def test_generated_world_is_valid_and_canonical(tiny):
    validate_world(tiny.tables)
    canonical = canonical_world_tables(tiny.tables)
    for name, schema in WORLD_TABLES.items():
        assert canonical[name].schema.equals(schema)
        assert canonical[name].equals(tiny.tables[name])


def test_accepts_castable_types_extra_columns_and_any_row_order(tiny):
    t = dict(tiny.tables)
    rng = np.random.default_rng(0)
    for name in WORLD_TABLES:
        t[name] = t[name].take(rng.permutation(t[name].num_rows))
    m = t["merchants"]
    m = replace_column(m, "merchant_id", m.column("merchant_id").cast(pa.int32()))
    m = replace_column(m, "demand_class", pc.dictionary_encode(m.column("demand_class")))
    m = m.append_column("notes", pa.array(["x"] * m.num_rows))
    s = t["sites"]
    s = replace_column(s, "site_id", s.column("site_id").cast(pa.int64()))
    s = replace_column(s, "tzid", s.column("tzid").cast(pa.large_string()))
    c = t["calendar"]
    c = replace_column(c, "local_date", c.column("local_date").cast(pa.date64()))
    sr = t["series"]
    shape = sr.column("shape").combine_chunks()
    fixed = pa.FixedSizeListArray.from_arrays(shape.flatten(), 168)
    sr = replace_column(sr, "shape", fixed)
    t.update(merchants=m, sites=s, calendar=c, series=sr)
    assert world_fingerprint(t) == tiny.fingerprint


def test_calendar_and_edges_may_be_empty(tiny):
    t = dict(tiny.tables)
    t["calendar"] = t["calendar"].slice(0, 0)
    validate_world(t)


# ----------------------------------------------------------------------------- structure
def test_missing_table(tables):
    del tables["edges"]
    expect(tables, "WORLD_MISSING_TABLE", "edges", None, None)


def test_missing_column(tables):
    tables["sites"] = tables["sites"].drop_columns(["weight"])
    expect(tables, "WORLD_MISSING_COLUMN", "sites", "weight", None)


@pytest.mark.parametrize(
    ("table", "column", "new_type"),
    [
        ("merchants", "merchant_id", pa.string()),
        ("sites", "site_id", pa.float64()),
        ("sites", "weight", pa.string()),
        ("calendar", "local_date", pa.string()),
        ("scenarios", "band", pa.int64()),
    ],
)
def test_bad_type(tables, table, column, new_type):
    t = tables[table]
    if column == "band":
        arr = pa.array(range(t.num_rows), pa.int64())
    else:
        arr = t.column(column).cast(new_type)
    tables[table] = replace_column(t, column, arr)
    expect(tables, "WORLD_BAD_TYPE", table, column, None)


def test_bad_type_shape_of_strings(tables):
    sr = tables["series"]
    bad = pa.array([["x"] * 168] * sr.num_rows, type=pa.list_(pa.string()))
    tables["series"] = replace_column(sr, "shape", bad)
    expect(tables, "WORLD_BAD_TYPE", "series", "shape", None)


@pytest.mark.parametrize("bad", [-5, 2**63, 2**64 - 1])
def test_id_out_of_range(tables, bad):
    s = tables["sites"]
    ids = s.column("site_id").to_pylist()
    ids[3] = bad
    typ = pa.int64() if bad < 0 else pa.uint64()
    tables["sites"] = replace_column(s, "site_id", pa.array(ids, type=typ))
    expect(tables, "WORLD_ID_RANGE", "sites", "site_id", bad)


def test_null_key(tables):
    tables["edges"] = set_value(tables["edges"], "merchant_id", 3, None)
    expect(tables, "WORLD_NULL_KEY", "edges", "merchant_id", "row 3")


def test_null_key_in_composite_key(tables):
    tables["calendar"] = set_value(tables["calendar"], "reason", 7, None)
    expect(tables, "WORLD_NULL_KEY", "calendar", "reason", "row 7")


def test_null_value(tables):
    s = tables["sites"]
    tables["sites"] = set_value(s, "weight", 4, None)
    expect(tables, "WORLD_NULL_VALUE", "sites", "weight", key_at(s, "sites", 4))


def test_duplicate_single_key(tables):
    s = tables["sites"]
    dup = set_value(s.slice(5, 1), "weight", 0, 9.0)
    tables["sites"] = pa.concat_tables([s, dup.cast(s.schema)])
    expect(tables, "WORLD_DUPLICATE_KEY", "sites", "site_id", key_at(s, "sites", 5))


def test_duplicate_composite_key(tables):
    sr = tables["series"]
    tables["series"] = pa.concat_tables([sr.slice(2, 1), sr])
    expect(
        tables,
        "WORLD_DUPLICATE_KEY",
        "series",
        "merchant_id,legal_country_iso,tzid,channel_group",
        key_at(sr, "series", 2),
    )


def test_zero_id(tables):
    tables["merchants"] = set_value(tables["merchants"], "merchant_id", 0, 0)
    expect(tables, "WORLD_ZERO_ID", "merchants", "merchant_id", 0)


def test_zero_foreign_id(tables):
    s = tables["sites"]
    tables["sites"] = set_value(s, "merchant_id", 6, 0)
    expect(tables, "WORLD_ZERO_ID", "sites", "merchant_id", key_at(s, "sites", 6))


# ----------------------------------------------------------------------------- values
@pytest.mark.parametrize("bad_tz", ["Mars/Olympus_Mons", "localtime", "Factory", "EST5EDT "])
def test_unknown_tzid(tables, bad_tz):
    s = tables["sites"]
    tables["sites"] = set_value(s, "tzid", 2, bad_tz)
    expect(tables, "WORLD_UNKNOWN_TZID", "sites", "tzid", key_at(s, "sites", 2))


def test_unknown_settlement_tzid(tables):
    m = tables["merchants"]
    row = row_where(m, "virtual_mode", "VIRTUAL_ONLY")
    tables["merchants"] = set_value(m, "settlement_tzid", row, "Europe/Atlantis")
    expect(
        tables, "WORLD_UNKNOWN_TZID", "merchants", "settlement_tzid", key_at(m, "merchants", row)
    )


@pytest.mark.parametrize("bad", [0.0, -1.0, math.nan, math.inf])
def test_bad_site_weight(tables, bad):
    s = tables["sites"]
    tables["sites"] = set_value(s, "weight", 7, bad)
    expect(tables, "WORLD_BAD_WEIGHT", "sites", "weight", key_at(s, "sites", 7))


@pytest.mark.parametrize("bad", [0.0, -2.0, math.nan, -math.inf])
def test_bad_edge_weight(tables, bad):
    e = tables["edges"]
    tables["edges"] = set_value(e, "weight", 1, bad)
    expect(tables, "WORLD_BAD_WEIGHT", "edges", "weight", key_at(e, "edges", 1))


@pytest.mark.parametrize("bad", [0.0, -3.0, math.nan, math.inf])
def test_bad_scale(tables, bad):
    sr = tables["series"]
    tables["series"] = set_value(sr, "scale", 4, bad)
    expect(tables, "WORLD_BAD_SCALE", "series", "scale", key_at(sr, "series", 4))


def _shape_variant(kind: str) -> list[float]:
    base = [1.0] * 168
    if kind == "short":
        return base[:167]
    if kind == "long":
        return base + [1.0]
    if kind == "negative":
        return base[:10] + [-0.5] + base[11:]
    if kind == "nan":
        return base[:10] + [math.nan] + base[11:]
    if kind == "inf":
        return base[:10] + [math.inf] + base[11:]
    return [0.0] * 168


@pytest.mark.parametrize("kind", ["short", "long", "negative", "nan", "inf", "all_zero"])
def test_bad_shape(tables, kind):
    sr = tables["series"]
    tables["series"] = set_value(sr, "shape", 3, _shape_variant(kind))
    expect(tables, "WORLD_BAD_SHAPE", "series", "shape", key_at(sr, "series", 3))


@pytest.mark.parametrize(
    ("table", "column", "row", "value"),
    [
        ("merchants", "demand_class", 1, "grocery"),
        ("merchants", "virtual_mode", 2, "ONLINE"),
        ("series", "channel_group", 0, "atm"),
        ("calendar", "demand_class", 5, "grocery"),
        ("calendar", "scenario_id", 0, "Baseline"),
        ("scenarios", "band", 1, "panic"),
    ],
)
def test_bad_enum(tables, table, column, row, value):
    t = set_value(tables[table], column, row, value)
    tables[table] = t
    canonical_row = t.sort_by([(c, "ascending") for c in PRIMARY_KEYS[table]])
    keys = [key_at(canonical_row, table, i) for i in range(canonical_row.num_rows)]
    bad_key = key_at(t, table, row)
    assert bad_key in keys
    expect(tables, "WORLD_BAD_ENUM", table, column, bad_key)


def test_bad_scenario_id_pattern(tables):
    tables["scenarios"] = set_value(tables["scenarios"], "scenario_id", 0, "base-line")
    expect(tables, "WORLD_BAD_ENUM", "scenarios", "scenario_id", "base-line")


@pytest.mark.parametrize("bad", ["usa", "U", "12", ""])
def test_bad_country(tables, bad):
    s = tables["sites"]
    tables["sites"] = set_value(s, "legal_country_iso", 9, bad)
    expect(tables, "WORLD_BAD_COUNTRY", "sites", "legal_country_iso", key_at(s, "sites", 9))


@pytest.mark.parametrize("bad", [-0.5, math.nan, math.inf])
def test_bad_effect(tables, bad):
    c = tables["calendar"]
    tables["calendar"] = set_value(c, "effect", 11, bad)
    expect(tables, "WORLD_BAD_EFFECT", "calendar", "effect", key_at(c, "calendar", 11))


def test_zero_effect_is_allowed(tables):
    tables["calendar"] = set_value(tables["calendar"], "effect", 11, 0.0)
    validate_world(tables)


@pytest.mark.parametrize("table", ["merchants", "series", "scenarios"])
def test_empty_table(tables, table):
    tables[table] = tables[table].slice(0, 0)
    expect(tables, "WORLD_EMPTY_TABLE", table, None, None)


# ----------------------------------------------------------------------------- cross table
@pytest.mark.parametrize("table", ["sites", "edges", "series"])
def test_unknown_merchant(tables, table):
    t = tables[table]
    tables[table] = set_value(t, "merchant_id", 0, 999)
    changed = tables[table]
    expected = key_at(changed, table, 0)
    expect(tables, "WORLD_UNKNOWN_MERCHANT", table, "merchant_id", expected)


@pytest.mark.parametrize("mode", ["VIRTUAL_ONLY", "HYBRID"])
def test_virtual_merchant_needs_settlement_tzid(tables, mode):
    m = tables["merchants"]
    row = row_where(m, "virtual_mode", mode)
    tables["merchants"] = set_value(m, "settlement_tzid", row, None)
    expect(
        tables,
        "WORLD_MISSING_SETTLEMENT_TZ",
        "merchants",
        "settlement_tzid",
        key_at(m, "merchants", row),
    )


@pytest.mark.parametrize("mode", ["VIRTUAL_ONLY", "HYBRID"])
def test_virtual_merchant_needs_edges(tables, mode):
    m = tables["merchants"]
    mid = m.column("merchant_id")[row_where(m, "virtual_mode", mode)].as_py()
    e = tables["edges"]
    tables["edges"] = e.filter(pc.not_equal(e.column("merchant_id"), mid))
    expect(tables, "WORLD_NO_EDGES", "edges", "merchant_id", mid)


@pytest.mark.parametrize("mode", ["NON_VIRTUAL", "HYBRID"])
def test_physical_series_needs_a_site(tables, mode):
    m = tables["merchants"]
    mid = m.column("merchant_id")[row_where(m, "virtual_mode", mode)].as_py()
    sr = tables["series"]
    row = row_where(sr, "merchant_id", mid)
    _, country, tz, _ = key_at(sr, "series", row)
    s = tables["sites"]
    here = pc.and_(
        pc.and_(
            pc.equal(s.column("merchant_id"), mid), pc.equal(s.column("legal_country_iso"), country)
        ),
        pc.equal(s.column("tzid"), tz),
    )
    tables["sites"] = s.filter(pc.invert(here))
    orphans = sorted(
        key_at(sr, "series", i)
        for i in range(sr.num_rows)
        if key_at(sr, "series", i)[:3] == (mid, country, tz)
    )
    expect(tables, "WORLD_SERIES_NO_SITE", "series", "tzid", orphans[0])


def test_virtual_only_series_need_no_site(tiny):
    m = tiny.merchants
    vo = set(
        pc.filter(
            m.column("merchant_id"), pc.equal(m.column("virtual_mode"), "VIRTUAL_ONLY")
        ).to_pylist()
    )
    assert vo
    assert not vo & set(tiny.sites.column("merchant_id").to_pylist())
    assert vo <= set(tiny.series.column("merchant_id").to_pylist())


def test_calendar_scenario_must_exist(tables):
    c = set_value(tables["calendar"], "scenario_id", 3, "holiday_rush")
    tables["calendar"] = c
    expect(tables, "WORLD_UNKNOWN_SCENARIO", "calendar", "scenario_id", key_at(c, "calendar", 3))


# ----------------------------------------------------------------------------- determinism
def test_first_error_does_not_depend_on_row_order(tables):
    s = tables["sites"]
    s = set_value(s, "weight", 10, -1.0)
    s = set_value(s, "weight", 20, -1.0)
    expected = key_at(s, "sites", 10)  # smaller site_id: rows are in canonical order
    for seed in range(3):
        shuffled = dict(tables)
        shuffled["sites"] = s.take(np.random.default_rng(seed).permutation(s.num_rows))
        expect(shuffled, "WORLD_BAD_WEIGHT", "sites", "weight", expected)


def test_structural_errors_come_before_value_errors(tables):
    tables["sites"] = set_value(tables["sites"], "weight", 0, -1.0)
    tables["scenarios"] = tables["scenarios"].drop_columns(["labels"])
    expect(tables, "WORLD_MISSING_COLUMN", "scenarios", "labels", None)
