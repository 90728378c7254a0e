"""Input rules of the world tables, and their canonical form.

``canonical_world_tables`` checks every rule of docs/world.md and returns the tables cast to
their contract schema (extra columns dropped) with rows in canonical order. It raises
``EngineError`` on the first problem, in a fixed order independent of the input's row order:

1. every table present (``WORLD_MISSING_TABLE``);
2. every column present and of a usable type (``WORLD_MISSING_COLUMN``, ``WORLD_BAD_TYPE``);
   a column of ``schemas.WORLD_COLUMN_DEFAULTS`` that a table omits takes its default
   (``calendar.tzid`` = ``"*"``: the effect applies to the whole country);
3. per table, in ``schemas.WORLD_TABLES`` order: non-empty, null keys, id range, zero ids,
   duplicate keys, null values, then each value rule in column order — on the canonically
   sorted table, so the reported key is the smallest offending one;
4. across tables: unknown merchants, settlement zones, edges of virtual merchants, sites of
   physical series, calendar scenarios.

Every error names the table and column; ``key`` is the primary key of the offending row
(a tuple for composite keys), the duplicated key, or ``"row <i>"`` (input position) when the
row has no usable key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine_core.errors import EngineError
from engine_core.schemas import (
    CALENDAR_ALL_ZONES,
    CHANNEL_GROUPS,
    DEMAND_CLASSES,
    HOURS_PER_WEEK,
    SCENARIO_BANDS,
    VIRTUAL_MODES,
    WORLD_COLUMN_DEFAULTS,
    WORLD_TABLES,
)
from engine_core.world.presets import usable_tzids

ID_LIMIT = 2**63  # ids must also fit a signed 64-bit integer downstream
COUNTRY_PATTERN = r"^[A-Z]{2}$"
SCENARIO_PATTERN = r"^[a-z0-9_]+$"

# Primary key of each table, which is also its canonical sort order.
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "merchants": ("merchant_id",),
    "sites": ("site_id",),
    "edges": ("edge_id",),
    "series": ("merchant_id", "legal_country_iso", "tzid", "channel_group"),
    "calendar": (
        "scenario_id", "legal_country_iso", "tzid", "local_date", "demand_class", "reason"
    ),
    "scenarios": ("scenario_id",),
}
# Columns that identify or reference rows: a null there is WORLD_NULL_KEY.
KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "merchants": ("merchant_id",),
    "sites": ("site_id", "merchant_id"),
    "edges": ("edge_id", "merchant_id"),
    "series": PRIMARY_KEYS["series"],
    "calendar": PRIMARY_KEYS["calendar"],
    "scenarios": ("scenario_id",),
}
ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "merchants": ("merchant_id",),
    "sites": ("site_id", "merchant_id"),
    "edges": ("edge_id", "merchant_id"),
    "series": ("merchant_id",),
    "calendar": (),
    "scenarios": (),
}
SHAPE_BLOCK_ROWS = 16_384  # series shapes judged at a time (≈ 22 MB of values)
NON_EMPTY_TABLES = ("merchants", "series", "scenarios")
VIRTUAL_WITH_EDGES = ("VIRTUAL_ONLY", "HYBRID")


# ----------------------------------------------------------------------------- helpers
def _fail(code: str, message: str, table: str, column: str | None, key: Any = None) -> None:
    raise EngineError(code, message, table=table, column=column, key=key)


def _type_usable(actual: pa.DataType, target: pa.DataType) -> bool:
    if pa.types.is_null(actual):
        return True  # an all-null column: the null rules report it
    if pa.types.is_uint64(target):
        return pa.types.is_integer(actual)
    if pa.types.is_float64(target):
        return pa.types.is_integer(actual) or pa.types.is_floating(actual)
    if pa.types.is_string(target):
        if pa.types.is_dictionary(actual):
            actual = actual.value_type
        return (
            pa.types.is_string(actual)
            or pa.types.is_large_string(actual)
            or pa.types.is_string_view(actual)
        )
    if pa.types.is_date32(target):
        return pa.types.is_date(actual)
    if pa.types.is_list(target):
        if (
            pa.types.is_list(actual)
            or pa.types.is_large_list(actual)
            or pa.types.is_fixed_size_list(actual)
        ):
            inner = actual.value_type
            return pa.types.is_integer(inner) or pa.types.is_floating(inner)
        return False
    return actual.equals(target)


def _key_of(table: pa.Table, name: str, index: int) -> Any:
    cols = PRIMARY_KEYS[name]
    values = tuple(table.column(c)[index].as_py() for c in cols)
    return values[0] if len(values) == 1 else values


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _bool_mask(arr: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(arr, True).to_numpy(zero_copy_only=False), dtype=bool)


def _check_presence(tables: Mapping[str, pa.Table]) -> None:
    for name in WORLD_TABLES:
        if name not in tables or tables[name] is None:
            _fail(
                "WORLD_MISSING_TABLE",
                f"the world has no {name!r} table (expected {name}.parquet)",
                name,
                None,
            )


def _with_column_defaults(tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """Add the columns of ``WORLD_COLUMN_DEFAULTS`` that a table omits, with their default."""
    out = dict(tables)
    for name, defaults in WORLD_COLUMN_DEFAULTS.items():
        table = out[name]
        if not isinstance(table, pa.Table):
            continue
        for col, value in defaults.items():
            if col not in table.column_names:
                table = table.append_column(col, pa.array([value] * table.num_rows, pa.string()))
        out[name] = table
    return out


def _check_columns(tables: Mapping[str, pa.Table]) -> None:
    for name, schema in WORLD_TABLES.items():
        table = tables[name]
        if not isinstance(table, pa.Table):
            _fail("WORLD_BAD_TYPE", f"{name} is {type(table).__name__}, not a table", name, None)
        for field in schema:
            if field.name not in table.column_names:
                _fail(
                    "WORLD_MISSING_COLUMN",
                    f"{name} has no column {field.name!r} (columns: {table.column_names})",
                    name,
                    field.name,
                )
            actual = table.schema.field(field.name).type
            if not _type_usable(actual, field.type):
                _fail(
                    "WORLD_BAD_TYPE",
                    f"{name}.{field.name} has type {actual}; expected {field.type} "
                    "(or a type castable to it without loss)",
                    name,
                    field.name,
                )


def _check_null_keys(name: str, table: pa.Table) -> None:
    for col in KEY_COLUMNS[name]:
        nulls = table.column(col).is_null().to_numpy(zero_copy_only=False)
        i = _first(nulls)
        if i is not None:
            _fail(
                "WORLD_NULL_KEY",
                f"{name}.{col} is null at row {i}; key columns must be set",
                name,
                col,
                f"row {i}",
            )


def one_array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array: its only chunk as it is (``combine_chunks`` copies even one
    chunk of a list column — every shape of the world), else the chunks concatenated."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _one_chunk(table: pa.Table) -> pa.Table:
    return pa.Table.from_arrays([one_array(c) for c in table.columns], schema=table.schema)


def _cast_ids(name: str, table: pa.Table) -> dict[str, pa.Array]:
    """Range-check and cast the id columns to uint64 (values in [0, 2**63))."""
    out: dict[str, pa.Array] = {}
    for col in ID_COLUMNS[name]:
        arr = one_array(table.column(col))
        if pa.types.is_null(arr.type):
            arr = arr.cast(pa.uint64())
        if len(arr):
            if pa.types.is_signed_integer(arr.type):
                values = arr.cast(pa.int64()).to_numpy(zero_copy_only=False)
                i = _first(values < 0)
            else:
                values = arr.cast(pa.uint64()).to_numpy(zero_copy_only=False)
                i = _first(values >= np.uint64(ID_LIMIT))
            if i is not None:
                _fail(
                    "WORLD_ID_RANGE",
                    f"{name}.{col} = {int(values[i])} is outside [0, 2**63)",
                    name,
                    col,
                    int(values[i]),
                )
        out[col] = arr.cast(pa.uint64())
    return out


def _cast_table(name: str, table: pa.Table, ids: dict[str, pa.Array]) -> pa.Table:
    schema = WORLD_TABLES[name]
    arrays = []
    for field in schema:
        if field.name in ids:
            arrays.append(ids[field.name])
            continue
        arr = one_array(table.column(field.name))
        if arr.type == field.type:  # a cast to its own type would copy (a world's shapes)
            arrays.append(arr)
            continue
        try:
            arrays.append(arr.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            _fail(
                "WORLD_BAD_TYPE",
                f"{name}.{field.name} of type {arr.type} cannot be cast to {field.type}: {exc}",
                name,
                field.name,
            )
    return pa.Table.from_arrays(arrays, schema=schema)


def _sort_canonical(name: str, table: pa.Table) -> pa.Table:
    if table.num_rows == 0:
        return table
    keys = [(c, "ascending") for c in PRIMARY_KEYS[name]]
    order = pc.sort_indices(table, sort_keys=keys).to_numpy()
    if np.array_equal(order, np.arange(table.num_rows, dtype=order.dtype)):
        # already canonical (a generated world, an export read back): no copy of the table,
        # the same rows in the same order
        return _one_chunk(table)
    return _one_chunk(table.take(order))


def _check_zero_ids(name: str, table: pa.Table) -> None:
    for col in ID_COLUMNS[name]:
        values = table.column(col).to_numpy()
        i = _first(values == 0)
        if i is not None:
            _fail(
                "WORLD_ZERO_ID",
                f"{name}.{col} is 0; ids start at 1",
                name,
                col,
                _key_of(table, name, i),
            )


def _check_duplicates(name: str, table: pa.Table) -> None:
    n = table.num_rows
    if n < 2:
        return
    same = np.ones(n - 1, dtype=bool)
    for col in PRIMARY_KEYS[name]:
        arr = table.column(col)
        eq = pc.equal(arr.slice(1), arr.slice(0, n - 1))
        same &= np.asarray(eq.to_numpy(zero_copy_only=False), dtype=bool)
    i = _first(same)
    if i is not None:
        cols = PRIMARY_KEYS[name]
        _fail(
            "WORLD_DUPLICATE_KEY",
            f"{name} has two rows with key ({', '.join(cols)}) = {_key_of(table, name, i)!r}",
            name,
            cols[-1] if len(cols) == 1 else ",".join(cols),
            _key_of(table, name, i),
        )


def _check_null_values(name: str, table: pa.Table) -> None:
    for field in WORLD_TABLES[name]:
        if field.nullable or field.name in KEY_COLUMNS[name]:
            continue
        i = _first(table.column(field.name).is_null().to_numpy(zero_copy_only=False))
        if i is not None:
            _fail(
                "WORLD_NULL_VALUE",
                f"{name}.{field.name} is null; it must be set",
                name,
                field.name,
                _key_of(table, name, i),
            )


def _check_in_set(
    name: str, table: pa.Table, col: str, allowed: tuple[str, ...], code: str, what: str
) -> None:
    arr = table.column(col)
    bad = ~_bool_mask(pc.is_in(arr, value_set=pa.array(allowed, pa.string())))
    bad &= arr.is_valid().to_numpy(zero_copy_only=False)
    i = _first(bad)
    if i is not None:
        _fail(
            code,
            f"{name}.{col} = {arr[i].as_py()!r} is not {what}",
            name,
            col,
            _key_of(table, name, i),
        )


def _check_pattern(name: str, table: pa.Table, col: str, pattern: str, code: str) -> None:
    arr = table.column(col)
    ok = _bool_mask(pc.match_substring_regex(arr, pattern))
    i = _first(~ok)
    if i is not None:
        _fail(
            code,
            f"{name}.{col} = {arr[i].as_py()!r} does not match {pattern}",
            name,
            col,
            _key_of(table, name, i),
        )


def _check_tzids(name: str, table: pa.Table, col: str) -> None:
    arr = table.column(col)
    distinct = [v for v in pc.unique(arr).to_pylist() if v is not None]
    unknown = sorted(v for v in distinct if v not in usable_tzids())
    if unknown:
        _check_in_set(
            name,
            table,
            col,
            tuple(sorted(set(distinct) - set(unknown))),
            "WORLD_UNKNOWN_TZID",
            "a known IANA time zone (zoneinfo.available_timezones())",
        )


def _check_positive_finite(
    name: str, table: pa.Table, col: str, code: str, allow_zero: bool = False
) -> None:
    values = table.column(col).to_numpy()
    ok = np.isfinite(values) & ((values >= 0) if allow_zero else (values > 0))
    i = _first(~ok)
    if i is not None:
        rule = "finite and >= 0" if allow_zero else "finite and > 0"
        _fail(
            code,
            f"{name}.{col} = {values[i]!r} must be {rule}",
            name,
            col,
            _key_of(table, name, i),
        )


def _check_shapes(table: pa.Table) -> None:
    col = one_array(table.column("shape"))
    lengths = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    i = _first(lengths != HOURS_PER_WEEK)
    if i is not None:
        _fail(
            "WORLD_BAD_SHAPE",
            f"series.shape has {int(lengths[i])} entries; it must have {HOURS_PER_WEEK} "
            "(hour of week, Monday 00:00 local first)",
            "series",
            "shape",
            _key_of(table, "series", i),
        )
    values = col.flatten().to_numpy(zero_copy_only=False).reshape(-1, HOURS_PER_WEEK)
    # judged in row blocks: the temporaries of a block, not of every shape of the world
    bad_entry = np.zeros(len(values), dtype=np.bool_)
    total = np.empty(len(values), dtype=np.float64)
    for lo in range(0, len(values), SHAPE_BLOCK_ROWS):
        block = values[lo : lo + SHAPE_BLOCK_ROWS]
        bad_entry[lo : lo + len(block)] = ~(np.isfinite(block) & (block >= 0)).all(axis=1)
        total[lo : lo + len(block)] = block.sum(axis=1)
    i = _first(bad_entry)
    if i is not None:
        _fail(
            "WORLD_BAD_SHAPE",
            "series.shape has a negative, NaN or infinite entry",
            "series",
            "shape",
            _key_of(table, "series", i),
        )
    i = _first(total <= 0)
    if i is not None:
        _fail(
            "WORLD_BAD_SHAPE",
            "series.shape is all zero; the series could never have an arrival",
            "series",
            "shape",
            _key_of(table, "series", i),
        )


# ----------------------------------------------------------------------------- per table
def _value_rules(name: str, table: pa.Table) -> None:
    if name == "merchants":
        _check_in_set(
            name, table, "demand_class", DEMAND_CLASSES, "WORLD_BAD_ENUM", "a demand class"
        )
        _check_in_set(
            name, table, "virtual_mode", VIRTUAL_MODES, "WORLD_BAD_ENUM", "a virtual mode"
        )
        _check_tzids(name, table, "settlement_tzid")
    elif name == "sites":
        _check_pattern(name, table, "legal_country_iso", COUNTRY_PATTERN, "WORLD_BAD_COUNTRY")
        _check_tzids(name, table, "tzid")
        _check_positive_finite(name, table, "weight", "WORLD_BAD_WEIGHT")
    elif name == "edges":
        _check_tzids(name, table, "tzid")
        _check_positive_finite(name, table, "weight", "WORLD_BAD_WEIGHT")
    elif name == "series":
        _check_pattern(name, table, "legal_country_iso", COUNTRY_PATTERN, "WORLD_BAD_COUNTRY")
        _check_tzids(name, table, "tzid")
        _check_in_set(
            name, table, "channel_group", CHANNEL_GROUPS, "WORLD_BAD_ENUM", "a channel group"
        )
        _check_shapes(table)
        _check_positive_finite(name, table, "scale", "WORLD_BAD_SCALE")
    elif name == "calendar":
        _check_pattern(name, table, "scenario_id", SCENARIO_PATTERN, "WORLD_BAD_ENUM")
        _check_pattern(name, table, "legal_country_iso", COUNTRY_PATTERN, "WORLD_BAD_COUNTRY")
        zones = table.filter(pc.not_equal(table.column("tzid"), CALENDAR_ALL_ZONES))
        _check_tzids(name, zones, "tzid")
        _check_in_set(
            name,
            table,
            "demand_class",
            DEMAND_CLASSES + ("*",),
            "WORLD_BAD_ENUM",
            "a demand class or '*'",
        )
        _check_positive_finite(name, table, "effect", "WORLD_BAD_EFFECT", allow_zero=True)
    elif name == "scenarios":
        _check_pattern(name, table, "scenario_id", SCENARIO_PATTERN, "WORLD_BAD_ENUM")
        _check_in_set(name, table, "band", SCENARIO_BANDS, "WORLD_BAD_ENUM", "a scenario band")


def _canonical_table(name: str, raw: pa.Table) -> pa.Table:
    if name in NON_EMPTY_TABLES and raw.num_rows == 0:
        _fail("WORLD_EMPTY_TABLE", f"{name} has no rows", name, None)
    _check_null_keys(name, raw)
    ids = _cast_ids(name, raw)
    table = _sort_canonical(name, _cast_table(name, raw, ids))
    _check_zero_ids(name, table)
    _check_duplicates(name, table)
    _check_null_values(name, table)
    _value_rules(name, table)
    return table


# ----------------------------------------------------------------------------- cross table
def _check_known_merchants(t: Mapping[str, pa.Table]) -> None:
    known = t["merchants"].column("merchant_id")
    for name in ("sites", "edges", "series"):
        table = t[name]
        missing = ~_bool_mask(pc.is_in(table.column("merchant_id"), value_set=known))
        i = _first(missing)
        if i is not None:
            _fail(
                "WORLD_UNKNOWN_MERCHANT",
                f"{name} row refers to merchant_id {table.column('merchant_id')[i].as_py()}, "
                "which is not in merchants",
                name,
                "merchant_id",
                _key_of(table, name, i),
            )


def _merchant_modes(t: Mapping[str, pa.Table]) -> dict[int, str]:
    m = t["merchants"]
    return dict(
        zip(m.column("merchant_id").to_pylist(), m.column("virtual_mode").to_pylist(), strict=True)
    )


def _check_settlement(t: Mapping[str, pa.Table]) -> None:
    m = t["merchants"]
    needs = _bool_mask(pc.is_in(m.column("virtual_mode"), value_set=pa.array(VIRTUAL_WITH_EDGES)))
    missing = needs & m.column("settlement_tzid").is_null().to_numpy(zero_copy_only=False)
    i = _first(missing)
    if i is not None:
        _fail(
            "WORLD_MISSING_SETTLEMENT_TZ",
            f"merchant {_key_of(m, 'merchants', i)} is {m.column('virtual_mode')[i].as_py()} and "
            "needs a settlement_tzid (the clock of its virtual arrivals)",
            "merchants",
            "settlement_tzid",
            _key_of(m, "merchants", i),
        )


def _check_edges_present(t: Mapping[str, pa.Table]) -> None:
    m = t["merchants"]
    with_edges = pc.unique(t["edges"].column("merchant_id"))
    needs = _bool_mask(pc.is_in(m.column("virtual_mode"), value_set=pa.array(VIRTUAL_WITH_EDGES)))
    has = _bool_mask(pc.is_in(m.column("merchant_id"), value_set=with_edges))
    i = _first(needs & ~has)
    if i is not None:
        _fail(
            "WORLD_NO_EDGES",
            f"merchant {_key_of(m, 'merchants', i)} is {m.column('virtual_mode')[i].as_py()} "
            "but has no row in edges",
            "edges",
            "merchant_id",
            _key_of(m, "merchants", i),
        )


def _location_keys(table: pa.Table) -> pa.Array:
    return pc.binary_join_element_wise(
        table.column("merchant_id").cast(pa.string()),
        table.column("legal_country_iso"),
        table.column("tzid"),
        "|",
    )


def _check_series_sites(t: Mapping[str, pa.Table]) -> None:
    series = t["series"]
    modes = _merchant_modes(t)
    physical = np.array(
        [modes[mid] != "VIRTUAL_ONLY" for mid in series.column("merchant_id").to_pylist()],
        dtype=bool,
    )
    has_site = _bool_mask(
        pc.is_in(_location_keys(series), value_set=pc.unique(_location_keys(t["sites"])))
    )
    i = _first(physical & ~has_site)
    if i is not None:
        key = _key_of(series, "series", i)
        _fail(
            "WORLD_SERIES_NO_SITE",
            f"series {key!r} belongs to a {modes[key[0]]} merchant but no site has "
            f"(merchant_id, legal_country_iso, tzid) = {key[:3]!r}",
            "series",
            "tzid",
            key,
        )


def _check_calendar_scenarios(t: Mapping[str, pa.Table]) -> None:
    cal = t["calendar"]
    known = t["scenarios"].column("scenario_id")
    i = _first(~_bool_mask(pc.is_in(cal.column("scenario_id"), value_set=known)))
    if i is not None:
        _fail(
            "WORLD_UNKNOWN_SCENARIO",
            f"calendar row for scenario {cal.column('scenario_id')[i].as_py()!r}, which is not "
            "in scenarios",
            "calendar",
            "scenario_id",
            _key_of(cal, "calendar", i),
        )


CROSS_TABLE_RULES: tuple[Callable[[Mapping[str, pa.Table]], None], ...] = (
    _check_known_merchants,
    _check_settlement,
    _check_edges_present,
    _check_series_sites,
    _check_calendar_scenarios,
)


# ----------------------------------------------------------------------------- public API
def canonical_world_tables(tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """Validate ``tables`` and return them in canonical form (see module docstring)."""
    _check_presence(tables)
    tables = _with_column_defaults(tables)
    _check_columns(tables)
    canonical = {name: _canonical_table(name, tables[name]) for name in WORLD_TABLES}
    for rule in CROSS_TABLE_RULES:
        rule(canonical)
    return canonical


def validate_world(tables: Mapping[str, pa.Table]) -> None:
    """Raise ``EngineError`` on the first broken rule of docs/world.md; return None if valid."""
    canonical_world_tables(tables)
