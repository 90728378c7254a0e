"""The bad-input catalogue: every malformed input the engine must refuse, and how.

Each case builds one malformed input (a world directory, a policy file, command-line arguments
or a storage root) and states what the CLI must answer: the stable error code, the table /
column / key it names and any text the message must contain (the offending file). The cases
are the rows of the catalogue table in docs/reliability.md (a test keeps the two in step);
``test_bad_input.py`` runs each one end to end through ``arrival-engine``.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from engine_core.config import DEFAULT_POLICY_PATH
from engine_core.world.validate import PRIMARY_KEYS

HORIZON = ("2026-01-01", "2026-02-01")

# where the input is refused (the "caught by" column of the catalogue)
ARGPARSE = "argument parsing (`cli.build_parser`)"
PARSE_TS = "date parsing (`cli._parse_ts`)"
CLI_CHECK = "CLI argument check (`cli._cmd_run`)"
ENGINE_ARGS = "`open_context`: scenario id / seed"
POLICY = "`open_context` → `load_policy`"
HORIZON_CHECK = "`cut_horizon`"
WORLD_READ = "`load_world` → `read_world_dir`"
WORLD_SCHEMA = "`load_world` → column and type rules"
WORLD_TABLE = "`load_world` → per-table rules"
WORLD_CROSS = "`load_world` → cross-table rules"
SCENARIO_LOOKUP = "`open_context`: scenario lookup in the world"
STORAGE_OPEN = "`Storage.open`"
STORAGE_PROBE = "`Storage.ensure_writable` (before S1)"


@dataclass
class Bad:
    """A malformed input, ready to run, and the answer it must get."""

    argv: list[str]
    table: str | None = None
    column: str | None = None
    key: Any = None
    names: tuple[str, ...] = ()  # text the message must contain (the offending file)
    must_not_exist: tuple[Path, ...] = ()  # paths the run must not create
    after: Callable[[], None] | None = None  # an extra check once the run is refused


@dataclass(frozen=True)
class Case:
    id: str
    group: str
    what: str
    code: str
    caught: str
    build: Callable[[Context], Bad]
    needs_mount: bool = False


@dataclass
class Context:
    """Where a case builds its input: a scratch directory, the pristine tiny world exported as
    Parquet and the storage root that already holds a good partition."""

    tmp: Path
    world_src: Path
    root: Path
    _world: Path | None = field(default=None, repr=False)

    def argv(self, **over: str) -> list[str]:
        args = {
            "world": "tiny",
            "scenario": "baseline",
            "start": HORIZON[0],
            "end": HORIZON[1],
            "out": str(self.root),
        }
        args.update(over)
        out = ["run"]
        for name, value in args.items():
            if value is not None:
                out += [f"--{name}", value]
        return out

    # ---------------------------------------------------------------- worlds
    def world(self) -> Path:
        if self._world is None:
            self._world = self.tmp / "world"
            shutil.copytree(self.world_src, self._world)
        return self._world

    def table(self, name: str) -> pa.Table:
        return pq.read_table(self.world() / f"{name}.parquet")

    def write(self, name: str, table: pa.Table) -> None:
        pq.write_table(table, self.world() / f"{name}.parquet")

    def world_argv(self) -> list[str]:
        return self.argv(world=str(self.world()))

    # ---------------------------------------------------------------- policies
    def policy(self, content: str | bytes | dict) -> Path:
        path = self.tmp / "policy.yaml"
        if isinstance(content, dict):
            content = yaml.safe_dump(content, sort_keys=False)
        if isinstance(content, str):
            content = content.encode("utf-8")
        path.write_bytes(content)
        return path

    def policy_argv(self, path: Path) -> list[str]:
        return [*self.argv(), "--policy", str(path)]


CASES: list[Case] = []


def case(
    id: str, group: str, code: str, caught: str, what: str, *, needs_mount: bool = False
) -> Callable:
    def register(build: Callable[[Context], Bad]) -> Callable[[Context], Bad]:
        CASES.append(Case(id, group, what, code, caught, build, needs_mount))
        return build

    return register


# ------------------------------------------------------------------------------ table editing
def set_value(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table.column(column).to_pylist()
    values[row] = value
    typ = table.schema.field(column).type
    return table.set_column(
        table.schema.get_field_index(column), column, pa.array(values, type=typ)
    )


def replace_column(table: pa.Table, column: str, array: pa.Array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(column), column, array)


def key_at(table: pa.Table, name: str, row: int) -> Any:
    values = tuple(table.column(c)[row].as_py() for c in PRIMARY_KEYS[name])
    return values[0] if len(values) == 1 else values


def first_row(table: pa.Table, column: str, value: object) -> int:
    return table.column(column).to_pylist().index(value)


def edit(ctx: Context, name: str, column: str, row: int, value: object) -> Bad:
    """Set one cell of a world table; the expected key is that row's primary key after."""
    t = set_value(ctx.table(name), column, row, value)
    ctx.write(name, t)
    return Bad(ctx.world_argv(), name, column, key_at(t, name, row))


def retype(ctx: Context, name: str, column: str, array: pa.Array) -> Bad:
    ctx.write(name, replace_column(ctx.table(name), column, array))
    return Bad(ctx.world_argv(), name, column, None)


# ------------------------------------------------------------------------------ world: files
@case(
    "world_missing_table",
    "world",
    "WORLD_MISSING_TABLE",
    WORLD_READ,
    "`edges.parquet` absent from the world directory",
)
def _(ctx: Context) -> Bad:
    (ctx.world() / "edges.parquet").unlink()
    return Bad(ctx.world_argv(), "edges", names=("edges.parquet",))


@case(
    "world_truncated_parquet",
    "world",
    "WORLD_UNREADABLE",
    WORLD_READ,
    "`series.parquet` cut to half its bytes",
)
def _(ctx: Context) -> Bad:
    path = ctx.world() / "series.parquet"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return Bad(ctx.world_argv(), "series", names=(str(path),))


@case(
    "world_corrupt_footer",
    "world",
    "WORLD_UNREADABLE",
    WORLD_READ,
    "`sites.parquet` with its footer metadata overwritten (magic bytes intact)",
)
def _(ctx: Context) -> Bad:
    path = ctx.world() / "sites.parquet"
    data = bytearray(path.read_bytes())
    footer_len = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer_len
    data[start : start + footer_len] = b"\xff" * footer_len
    path.write_bytes(bytes(data))
    return Bad(ctx.world_argv(), "sites", names=(str(path),))


@case(
    "world_empty_file", "world", "WORLD_UNREADABLE", WORLD_READ, "`merchants.parquet` of zero bytes"
)
def _(ctx: Context) -> Bad:
    path = ctx.world() / "merchants.parquet"
    path.write_bytes(b"")
    return Bad(ctx.world_argv(), "merchants", names=(str(path),))


@case(
    "world_csv_not_parquet",
    "world",
    "WORLD_UNREADABLE",
    WORLD_READ,
    "`scenarios.parquet` holding CSV text",
)
def _(ctx: Context) -> Bad:
    path = ctx.world() / "scenarios.parquet"
    path.write_text("scenario_id,band,labels\nbaseline,baseline,\n")
    return Bad(ctx.world_argv(), "scenarios", names=(str(path),))


@case(
    "world_not_found",
    "world",
    "WORLD_NOT_FOUND",
    "`load_world`",
    "`--world` naming neither a preset nor a directory",
)
def _(ctx: Context) -> Bad:
    missing = str(ctx.tmp / "no-such-world")
    return Bad(ctx.argv(world=missing), key=missing)


@case(
    "world_is_a_file", "world", "WORLD_NOT_FOUND", "`load_world`", "`--world` naming a regular file"
)
def _(ctx: Context) -> Bad:
    path = ctx.tmp / "world.parquet"
    path.write_bytes(b"PAR1")
    return Bad(ctx.argv(world=str(path)), key=str(path))


# ------------------------------------------------------------------------------ world: schema
@case(
    "world_missing_column",
    "world",
    "WORLD_MISSING_COLUMN",
    WORLD_SCHEMA,
    "`sites` without its `weight` column",
)
def _(ctx: Context) -> Bad:
    ctx.write("sites", ctx.table("sites").drop_columns(["weight"]))
    return Bad(ctx.world_argv(), "sites", "weight")


@case(
    "world_string_ids",
    "world",
    "WORLD_BAD_TYPE",
    WORLD_SCHEMA,
    "`merchants.merchant_id` written as strings",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("merchants")
    return retype(ctx, "merchants", "merchant_id", t.column("merchant_id").cast(pa.string()))


@case(
    "world_float_ids", "world", "WORLD_BAD_TYPE", WORLD_SCHEMA, "`sites.site_id` written as float64"
)
def _(ctx: Context) -> Bad:
    t = ctx.table("sites")
    return retype(ctx, "sites", "site_id", t.column("site_id").cast(pa.float64()))


@case(
    "world_string_weights",
    "world",
    "WORLD_BAD_TYPE",
    WORLD_SCHEMA,
    "`edges.weight` written as strings",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("edges")
    return retype(ctx, "edges", "weight", t.column("weight").cast(pa.string()))


@case(
    "world_string_dates",
    "world",
    "WORLD_BAD_TYPE",
    WORLD_SCHEMA,
    "`calendar.local_date` written as ISO strings",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("calendar")
    return retype(ctx, "calendar", "local_date", t.column("local_date").cast(pa.string()))


@case(
    "world_shape_of_strings",
    "world",
    "WORLD_BAD_TYPE",
    WORLD_SCHEMA,
    "`series.shape` a list of strings",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("series")
    bad = pa.array([["1"] * 168] * t.num_rows, type=pa.list_(pa.string()))
    return retype(ctx, "series", "shape", bad)


@case(
    "world_band_as_int",
    "world",
    "WORLD_BAD_TYPE",
    WORLD_SCHEMA,
    "`scenarios.band` written as integers",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("scenarios")
    return retype(ctx, "scenarios", "band", pa.array(range(t.num_rows), pa.int64()))


# ------------------------------------------------------------------------------ world: ids
@case(
    "world_id_beyond_u63",
    "world",
    "WORLD_ID_RANGE",
    WORLD_TABLE,
    "`sites.site_id` = 2⁶³ (fits u64, not i64)",
)
def _(ctx: Context) -> Bad:
    edit(ctx, "sites", "site_id", 3, 2**63)
    return Bad(ctx.world_argv(), "sites", "site_id", 2**63)


@case("world_id_max_u64", "world", "WORLD_ID_RANGE", WORLD_TABLE, "`merchants.merchant_id` = 2⁶⁴−1")
def _(ctx: Context) -> Bad:
    edit(ctx, "merchants", "merchant_id", 0, 2**64 - 1)
    return Bad(ctx.world_argv(), "merchants", "merchant_id", 2**64 - 1)


@case(
    "world_negative_id",
    "world",
    "WORLD_ID_RANGE",
    WORLD_TABLE,
    "`edges.edge_id` = −5 (int64 column)",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("edges")
    ids = t.column("edge_id").to_pylist()
    ids[1] = -5
    ctx.write("edges", replace_column(t, "edge_id", pa.array(ids, pa.int64())))
    return Bad(ctx.world_argv(), "edges", "edge_id", -5)


@case("world_zero_id", "world", "WORLD_ZERO_ID", WORLD_TABLE, "`merchants.merchant_id` = 0")
def _(ctx: Context) -> Bad:
    edit(ctx, "merchants", "merchant_id", 4, 0)
    return Bad(ctx.world_argv(), "merchants", "merchant_id", 0)


@case("world_null_key", "world", "WORLD_NULL_KEY", WORLD_TABLE, "`edges.merchant_id` null in row 3")
def _(ctx: Context) -> Bad:
    edit(ctx, "edges", "merchant_id", 3, None)
    return Bad(ctx.world_argv(), "edges", "merchant_id", "row 3")


@case("world_null_value", "world", "WORLD_NULL_VALUE", WORLD_TABLE, "`sites.weight` null")
def _(ctx: Context) -> Bad:
    return edit(ctx, "sites", "weight", 4, None)


@case(
    "world_duplicate_key",
    "world",
    "WORLD_DUPLICATE_KEY",
    WORLD_TABLE,
    "two `sites` rows with the same `site_id`",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("sites")
    dup = set_value(t.slice(5, 1), "weight", 0, 9.0)
    ctx.write("sites", pa.concat_tables([t, dup.cast(t.schema)]))
    return Bad(ctx.world_argv(), "sites", "site_id", key_at(t, "sites", 5))


@case(
    "world_duplicate_series",
    "world",
    "WORLD_DUPLICATE_KEY",
    WORLD_TABLE,
    "a `series` row repeated (composite key)",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("series")
    ctx.write("series", pa.concat_tables([t.slice(2, 1), t]))
    return Bad(
        ctx.world_argv(),
        "series",
        "merchant_id,legal_country_iso,tzid,channel_group",
        key_at(t, "series", 2),
    )


# ------------------------------------------------------------------------------ world: values
@case(
    "world_bad_demand_class",
    "world",
    "WORLD_BAD_ENUM",
    WORLD_TABLE,
    "`merchants.demand_class` = `grocery`",
)
def _(ctx: Context) -> Bad:
    return edit(ctx, "merchants", "demand_class", 1, "grocery")


@case(
    "world_bad_virtual_mode",
    "world",
    "WORLD_BAD_ENUM",
    WORLD_TABLE,
    "`merchants.virtual_mode` = `ONLINE`",
)
def _(ctx: Context) -> Bad:
    return edit(ctx, "merchants", "virtual_mode", 2, "ONLINE")


@case("world_bad_channel", "world", "WORLD_BAD_ENUM", WORLD_TABLE, "`series.channel_group` = `atm`")
def _(ctx: Context) -> Bad:
    return edit(ctx, "series", "channel_group", 0, "atm")


@case("world_bad_band", "world", "WORLD_BAD_ENUM", WORLD_TABLE, "`scenarios.band` = `panic`")
def _(ctx: Context) -> Bad:
    return edit(ctx, "scenarios", "band", 1, "panic")


@case(
    "world_bad_scenario_id",
    "world",
    "WORLD_BAD_ENUM",
    WORLD_TABLE,
    "`scenarios.scenario_id` = `../stress` (not `[a-z0-9_]+`)",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("scenarios")
    return edit(ctx, "scenarios", "scenario_id", first_row(t, "scenario_id", "stress"), "../stress")


@case(
    "world_bad_country",
    "world",
    "WORLD_BAD_COUNTRY",
    WORLD_TABLE,
    "`sites.legal_country_iso` = `usa`",
)
def _(ctx: Context) -> Bad:
    return edit(ctx, "sites", "legal_country_iso", 9, "usa")


@case(
    "world_tz_mars",
    "world",
    "WORLD_UNKNOWN_TZID",
    WORLD_TABLE,
    "`sites.tzid` = `Mars/Olympus_Mons` (not in the installed tzdata)",
)
def _(ctx: Context) -> Bad:
    return edit(ctx, "sites", "tzid", 2, "Mars/Olympus_Mons")


@case(
    "world_series_tz_mars",
    "world",
    "WORLD_UNKNOWN_TZID",
    WORLD_TABLE,
    "`series.tzid` = `Mars/Olympus_Mons`",
)
def _(ctx: Context) -> Bad:
    return edit(ctx, "series", "tzid", 5, "Mars/Olympus_Mons")


@case(
    "world_tz_host_only",
    "world",
    "WORLD_UNKNOWN_TZID",
    WORLD_TABLE,
    "`edges.tzid` = `localtime` (a host file, not a tzdata zone)",
)
def _(ctx: Context) -> Bad:
    return edit(ctx, "edges", "tzid", 0, "localtime")


@case(
    "world_settlement_tz_unknown",
    "world",
    "WORLD_UNKNOWN_TZID",
    WORLD_TABLE,
    "`merchants.settlement_tzid` = `Europe/Atlantis`",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("merchants")
    return edit(
        ctx,
        "merchants",
        "settlement_tzid",
        first_row(t, "virtual_mode", "VIRTUAL_ONLY"),
        "Europe/Atlantis",
    )


@case("world_weight_nan", "world", "WORLD_BAD_WEIGHT", WORLD_TABLE, "`sites.weight` = NaN")
def _(ctx: Context) -> Bad:
    return edit(ctx, "sites", "weight", 7, math.nan)


@case("world_weight_inf", "world", "WORLD_BAD_WEIGHT", WORLD_TABLE, "`edges.weight` = +inf")
def _(ctx: Context) -> Bad:
    return edit(ctx, "edges", "weight", 1, math.inf)


@case("world_weight_zero", "world", "WORLD_BAD_WEIGHT", WORLD_TABLE, "`sites.weight` = 0")
def _(ctx: Context) -> Bad:
    return edit(ctx, "sites", "weight", 0, 0.0)


@case("world_scale_nan", "world", "WORLD_BAD_SCALE", WORLD_TABLE, "`series.scale` = NaN")
def _(ctx: Context) -> Bad:
    return edit(ctx, "series", "scale", 4, math.nan)


@case("world_scale_negative", "world", "WORLD_BAD_SCALE", WORLD_TABLE, "`series.scale` = −3")
def _(ctx: Context) -> Bad:
    return edit(ctx, "series", "scale", 6, -3.0)


@case(
    "world_shape_short", "world", "WORLD_BAD_SHAPE", WORLD_TABLE, "`series.shape` with 167 entries"
)
def _(ctx: Context) -> Bad:
    return edit(ctx, "series", "shape", 3, [1.0] * 167)


@case("world_shape_inf", "world", "WORLD_BAD_SHAPE", WORLD_TABLE, "`series.shape` holding +inf")
def _(ctx: Context) -> Bad:
    return edit(ctx, "series", "shape", 7, [1.0] * 100 + [math.inf] + [1.0] * 67)


@case("world_shape_all_zero", "world", "WORLD_BAD_SHAPE", WORLD_TABLE, "`series.shape` all zero")
def _(ctx: Context) -> Bad:
    return edit(ctx, "series", "shape", 1, [0.0] * 168)


@case("world_effect_nan", "world", "WORLD_BAD_EFFECT", WORLD_TABLE, "`calendar.effect` = NaN")
def _(ctx: Context) -> Bad:
    return edit(ctx, "calendar", "effect", 11, math.nan)


@case("world_effect_negative", "world", "WORLD_BAD_EFFECT", WORLD_TABLE, "`calendar.effect` = −0.5")
def _(ctx: Context) -> Bad:
    return edit(ctx, "calendar", "effect", 12, -0.5)


@case(
    "world_empty_merchants",
    "world",
    "WORLD_EMPTY_TABLE",
    WORLD_TABLE,
    "`merchants` with a schema and no rows",
)
def _(ctx: Context) -> Bad:
    ctx.write("merchants", ctx.table("merchants").slice(0, 0))
    return Bad(ctx.world_argv(), "merchants")


@case("world_empty_series", "world", "WORLD_EMPTY_TABLE", WORLD_TABLE, "`series` with no rows")
def _(ctx: Context) -> Bad:
    ctx.write("series", ctx.table("series").slice(0, 0))
    return Bad(ctx.world_argv(), "series")


@case(
    "world_empty_scenarios", "world", "WORLD_EMPTY_TABLE", WORLD_TABLE, "`scenarios` with no rows"
)
def _(ctx: Context) -> Bad:
    ctx.write("scenarios", ctx.table("scenarios").slice(0, 0))
    return Bad(ctx.world_argv(), "scenarios")


# ------------------------------------------------------------------------------ world: across
def _virtual_only(ctx: Context) -> set[int]:
    m = ctx.table("merchants")
    mask = pc.equal(m.column("virtual_mode"), "VIRTUAL_ONLY")
    return set(pc.filter(m.column("merchant_id"), mask).to_pylist())


@case(
    "world_empty_sites",
    "world",
    "WORLD_SERIES_NO_SITE",
    WORLD_CROSS,
    "`sites` with no rows while physical series exist",
)
def _(ctx: Context) -> Bad:
    ctx.write("sites", ctx.table("sites").slice(0, 0))
    sr = ctx.table("series")
    virtual = _virtual_only(ctx)
    row = next(
        i for i, mid in enumerate(sr.column("merchant_id").to_pylist()) if mid not in virtual
    )
    return Bad(ctx.world_argv(), "series", "tzid", key_at(sr, "series", row))


@case(
    "world_unknown_merchant",
    "world",
    "WORLD_UNKNOWN_MERCHANT",
    WORLD_CROSS,
    "a `sites` row for merchant 999, absent from `merchants`",
)
def _(ctx: Context) -> Bad:
    return edit(ctx, "sites", "merchant_id", 0, 999)


@case(
    "world_missing_settlement_tz",
    "world",
    "WORLD_MISSING_SETTLEMENT_TZ",
    WORLD_CROSS,
    "a `HYBRID` merchant without `settlement_tzid`",
)
def _(ctx: Context) -> Bad:
    t = ctx.table("merchants")
    return edit(ctx, "merchants", "settlement_tzid", first_row(t, "virtual_mode", "HYBRID"), None)


@case(
    "world_virtual_without_edges",
    "world",
    "WORLD_NO_EDGES",
    WORLD_CROSS,
    "a `VIRTUAL_ONLY` merchant whose edges were dropped",
)
def _(ctx: Context) -> Bad:
    mid = min(_virtual_only(ctx))
    e = ctx.table("edges")
    ctx.write("edges", e.filter(pc.not_equal(e.column("merchant_id"), mid)))
    return Bad(ctx.world_argv(), "edges", "merchant_id", mid)


@case(
    "world_series_without_site",
    "world",
    "WORLD_SERIES_NO_SITE",
    WORLD_CROSS,
    "a physical series whose (merchant, country, tzid) has no site",
)
def _(ctx: Context) -> Bad:
    sr = ctx.table("series")
    virtual = _virtual_only(ctx)
    row = next(
        i for i, mid in enumerate(sr.column("merchant_id").to_pylist()) if mid not in virtual
    )
    mid, country, tz, _ = key_at(sr, "series", row)
    s = ctx.table("sites")
    here = pc.and_(
        pc.and_(
            pc.equal(s.column("merchant_id"), mid), pc.equal(s.column("legal_country_iso"), country)
        ),
        pc.equal(s.column("tzid"), tz),
    )
    ctx.write("sites", s.filter(pc.invert(here)))
    orphans = sorted(
        key_at(sr, "series", i)
        for i in range(sr.num_rows)
        if key_at(sr, "series", i)[:3] == (mid, country, tz)
    )
    return Bad(ctx.world_argv(), "series", "tzid", orphans[0])


@case(
    "world_calendar_unknown_scenario",
    "world",
    "WORLD_UNKNOWN_SCENARIO",
    WORLD_CROSS,
    "a `calendar` row for scenario `holiday_rush`, absent from `scenarios`",
)
def _(ctx: Context) -> Bad:
    return edit(ctx, "calendar", "scenario_id", 3, "holiday_rush")


# ------------------------------------------------------------------------------ policy
def _policy() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def _policy_edit(ctx: Context, column: str, change: Callable[[dict], None]) -> Bad:
    data = _policy()
    change(data)
    path = ctx.policy(data)
    return Bad(ctx.policy_argv(path), column=column, names=(str(path),))


@case("policy_unknown_key", "policy", "POLICY_INVALID", POLICY, "a top-level key `surprise`")
def _(ctx: Context) -> Bad:
    return _policy_edit(ctx, "surprise", lambda d: d.update(surprise=1))


@case(
    "policy_typo_key",
    "policy",
    "POLICY_INVALID",
    POLICY,
    "a misspelt nested key `latent.sigma_bse` (and `sigma_base` missing)",
)
def _(ctx: Context) -> Bad:
    def change(d: dict) -> None:
        d["latent"]["sigma_bse"] = d["latent"].pop("sigma_base")

    return _policy_edit(ctx, "latent.sigma_base", change)


@case("policy_missing_section", "policy", "POLICY_INVALID", POLICY, "no `routing` section")
def _(ctx: Context) -> Bad:
    return _policy_edit(ctx, "routing", lambda d: d.pop("routing"))


@case(
    "policy_probability_out_of_range",
    "policy",
    "POLICY_INVALID",
    POLICY,
    "`routing.p_virtual_hybrid: 1.5`",
)
def _(ctx: Context) -> Bad:
    return _policy_edit(
        ctx, "routing.p_virtual_hybrid", lambda d: d["routing"].update(p_virtual_hybrid=1.5)
    )


@case(
    "policy_reversed_bounds",
    "policy",
    "POLICY_INVALID",
    POLICY,
    "`latent.sigma_bounds: [1.2, 0.05]`",
)
def _(ctx: Context) -> Bad:
    return _policy_edit(
        ctx, "latent.sigma_bounds", lambda d: d["latent"].update(sigma_bounds=[1.2, 0.05])
    )


@case(
    "policy_negative_kappa", "policy", "POLICY_INVALID", POLICY, "`counts.kappa_base.stress: -12`"
)
def _(ctx: Context) -> Bad:
    return _policy_edit(
        ctx, "counts.kappa_base.stress", lambda d: d["counts"]["kappa_base"].update(stress=-12.0)
    )


@case(
    "policy_string_number",
    "policy",
    "POLICY_INVALID",
    POLICY,
    '`time_grid.bucket_seconds: "3600"` (a string)',
)
def _(ctx: Context) -> Bad:
    return _policy_edit(
        ctx, "time_grid.bucket_seconds", lambda d: d["time_grid"].update(bucket_seconds="3600")
    )


@case(
    "policy_bool_number", "policy", "POLICY_INVALID", POLICY, "`counts.max_count_per_bucket: true`"
)
def _(ctx: Context) -> Bad:
    return _policy_edit(
        ctx, "counts.max_count_per_bucket", lambda d: d["counts"].update(max_count_per_bucket=True)
    )


@case("policy_nan", "policy", "POLICY_INVALID", POLICY, "`counts.lambda_max: .nan`")
def _(ctx: Context) -> Bad:
    return _policy_edit(ctx, "counts.lambda_max", lambda d: d["counts"].update(lambda_max=math.nan))


@case(
    "policy_bucket_not_dividing_day",
    "policy",
    "POLICY_INVALID",
    POLICY,
    "`time_grid.bucket_seconds: 7`",
)
def _(ctx: Context) -> Bad:
    return _policy_edit(
        ctx, "time_grid.bucket_seconds", lambda d: d["time_grid"].update(bucket_seconds=7)
    )


@case(
    "policy_bad_namespace",
    "policy",
    "POLICY_INVALID",
    POLICY,
    "`namespace: ../../etc` (not `^[a-z0-9][a-z0-9_.-]{0,63}$`)",
)
def _(ctx: Context) -> Bad:
    return _policy_edit(ctx, "namespace", lambda d: d.update(namespace="../../etc"))


@case("policy_empty_file", "policy", "POLICY_UNREADABLE", POLICY, "an empty policy file")
def _(ctx: Context) -> Bad:
    path = ctx.policy("")
    return Bad(ctx.policy_argv(path), names=(str(path),))


@case(
    "policy_python_object",
    "policy",
    "POLICY_UNREADABLE",
    POLICY,
    "`!!python/object/apply:os.system` (would run a shell command)",
)
def _(ctx: Context) -> Bad:
    marker = ctx.tmp / "pwned"
    path = ctx.policy(f"version: !!python/object/apply:os.system ['touch {marker}']\n")

    def after() -> None:
        assert not marker.exists(), "the YAML loader ran a shell command"

    return Bad(ctx.policy_argv(path), names=(str(path),), after=after)


@case(
    "policy_python_name",
    "policy",
    "POLICY_UNREADABLE",
    POLICY,
    "`!!python/name:os.system` and `!!python/object/new:subprocess.Popen`",
)
def _(ctx: Context) -> Bad:
    marker = ctx.tmp / "pwned2"
    path = ctx.policy(
        f"version: !!python/name:os.system\n"
        f"namespace: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n"
    )

    def after() -> None:
        assert not marker.exists(), "the YAML loader constructed a Python object"

    return Bad(ctx.policy_argv(path), names=(str(path),), after=after)


@case("policy_duplicate_key", "policy", "POLICY_UNREADABLE", POLICY, "`namespace` given twice")
def _(ctx: Context) -> Bad:
    path = ctx.policy(DEFAULT_POLICY_PATH.read_text() + "namespace: other\n")
    return Bad(ctx.policy_argv(path), names=(str(path),))


@case("policy_not_a_mapping", "policy", "POLICY_UNREADABLE", POLICY, "a YAML list")
def _(ctx: Context) -> Bad:
    path = ctx.policy("- 1\n- 2\n")
    return Bad(ctx.policy_argv(path), names=(str(path),))


@case(
    "policy_invalid_yaml",
    "policy",
    "POLICY_UNREADABLE",
    POLICY,
    "unbalanced brackets (`latent: {sigma_base: [`)",
)
def _(ctx: Context) -> Bad:
    path = ctx.policy("latent: {sigma_base: [\n")
    return Bad(ctx.policy_argv(path), names=(str(path),))


@case("policy_not_utf8", "policy", "POLICY_UNREADABLE", POLICY, "Latin-1 bytes")
def _(ctx: Context) -> Bad:
    path = ctx.policy(b"namespace: caf\xe9\n")
    return Bad(ctx.policy_argv(path), names=(str(path),))


@case(
    "policy_missing_file", "policy", "POLICY_UNREADABLE", POLICY, "`--policy` naming a missing file"
)
def _(ctx: Context) -> Bad:
    path = ctx.tmp / "nope.yaml"
    return Bad(ctx.policy_argv(path), names=(str(path),))


# ------------------------------------------------------------------------------ CLI arguments
@case(
    "cli_unknown_scenario",
    "cli",
    "SCENARIO_UNKNOWN",
    SCENARIO_LOOKUP,
    "`--scenario holiday` (valid id, not in the world)",
)
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(scenario="holiday"), "scenarios", "scenario_id", "holiday")


@case("cli_scenario_traversal", "cli", "SCENARIO_INVALID", ENGINE_ARGS, "`--scenario ../x`")
def _(ctx: Context) -> Bad:
    return Bad(
        ctx.argv(scenario="../x"),
        None,
        "scenario_id",
        "../x",
        must_not_exist=(ctx.root.parent / "x", ctx.root / "x"),
    )


@case("cli_scenario_uppercase", "cli", "SCENARIO_INVALID", ENGINE_ARGS, "`--scenario Baseline`")
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(scenario="Baseline"), None, "scenario_id", "Baseline")


@case(
    "cli_year_before_range",
    "cli",
    "HORIZON_INVALID",
    HORIZON_CHECK,
    "`--start 1960-01-01 --end 1960-02-01` (years before 1971)",
)
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(start="1960-01-01", end="1960-02-01"))


@case(
    "cli_year_after_range",
    "cli",
    "HORIZON_INVALID",
    HORIZON_CHECK,
    "`--start 9999-01-01 --end 9999-02-01` (years after 9998)",
)
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(start="9999-01-01", end="9999-02-01"))


@case(
    "cli_not_aligned",
    "cli",
    "HORIZON_NOT_ALIGNED",
    HORIZON_CHECK,
    "`--start 2026-01-01T00:30` (not on a bucket boundary)",
)
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(start="2026-01-01T00:30:00"))


@case(
    "cli_not_aligned_offset",
    "cli",
    "HORIZON_NOT_ALIGNED",
    HORIZON_CHECK,
    "`--end 2026-02-01T00:00+05:30` (18:30 UTC)",
)
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(end="2026-02-01T00:00:00+05:30"))


@case("cli_end_equals_start", "cli", "HORIZON_INVALID", HORIZON_CHECK, "`--end` = `--start`")
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(end=HORIZON[0]))


@case("cli_end_before_start", "cli", "HORIZON_INVALID", HORIZON_CHECK, "`--end` before `--start`")
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(start="2026-02-01", end="2026-01-01"))


@case("cli_bad_month", "cli", "HORIZON_INVALID", PARSE_TS, "`--start 2026-13-01`")
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(start="2026-13-01"))


@case("cli_not_a_date", "cli", "HORIZON_INVALID", PARSE_TS, "`--end next-tuesday`")
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(end="next-tuesday"))


@case("cli_seed_negative", "cli", "SEED_INVALID", ENGINE_ARGS, "`--seed -1`")
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(seed="-1"), key=-1)


@case("cli_seed_beyond_u64", "cli", "SEED_INVALID", ENGINE_ARGS, "`--seed 2⁶⁴`")
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(seed=str(2**64)), key=2**64)


@case("cli_seed_not_int", "cli", "CLI_USAGE", ARGPARSE, "`--seed abc`")
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(seed="abc"))


@case("cli_threads_zero", "cli", "CLI_USAGE", CLI_CHECK, "`--threads 0`")
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(threads="0"))


@case("cli_missing_start", "cli", "CLI_USAGE", ARGPARSE, "`run` without `--start`")
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(start=None))


@case("cli_unknown_option", "cli", "CLI_USAGE", ARGPARSE, "`--year 2026` (no such option)")
def _(ctx: Context) -> Bad:
    return Bad([*ctx.argv(), "--year", "2026"])


# ------------------------------------------------------------------------------ storage roots
@case(
    "storage_under_regular_file",
    "storage",
    "STORAGE_NOT_WRITABLE",
    STORAGE_PROBE,
    "`--out <tmp>/afile/sub`, `afile` a regular file",
)
def _(ctx: Context) -> Bad:
    afile = ctx.tmp / "afile"
    afile.write_text("not a directory\n")
    out = afile / "sub"

    def after() -> None:
        assert afile.read_text() == "not a directory\n"

    return Bad(ctx.argv(out=str(out)), key=str(out), after=after)


@case(
    "storage_under_proc",
    "storage",
    "STORAGE_NOT_WRITABLE",
    STORAGE_PROBE,
    "`--out /proc/arrival-engine/data` (procfs takes no directories)",
)
def _(ctx: Context) -> Bad:
    out = "/proc/arrival-engine/data"
    return Bad(ctx.argv(out=out), key=out)


@case(
    "storage_read_only_mount",
    "storage",
    "STORAGE_NOT_WRITABLE",
    STORAGE_PROBE,
    "`--out` on a tmpfs mounted read-only",
    needs_mount=True,
)
def _(ctx: Context) -> Bad:
    mnt = ctx.tmp / "ro"
    out = mnt / "data"
    return Bad(ctx.argv(out=str(out)), key=str(out), must_not_exist=(out,))


@case(
    "storage_unknown_scheme",
    "storage",
    "STORAGE_UNAVAILABLE",
    STORAGE_OPEN,
    "`--out nosuch://bucket/prefix`",
)
def _(ctx: Context) -> Bad:
    return Bad(ctx.argv(out="nosuch://bucket/prefix"))


# ------------------------------------------------------------------------------ mounts
def mount_tmpfs(path: Path, options: str) -> bool:
    """Mount a tmpfs at ``path`` (root only); False where mounting is not permitted."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
