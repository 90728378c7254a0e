"""One pyarrow schema per table and dataset: used by writers, readers and checks alike.

World tables (inputs) and the datasets the states publish (SPEC §4, §8). Column names and
types here are the public contract.
"""

from __future__ import annotations

import pyarrow as pa

DICT_STR = pa.dictionary(pa.int32(), pa.string())
TS_UTC = pa.timestamp("us", tz="UTC")
TS_LOCAL = pa.timestamp("us")

DEMAND_CLASSES: tuple[str, ...] = (
    "office_hours",
    "consumer_daytime",
    "retail_daytime",
    "evening_weekend",
    "always_on_local",
    "online_24h",
    "online_bursty",
    "travel_hospitality",
    "fuel_convenience",
    "bills_utilities",
    "low_volume_tail",
)
VIRTUAL_MODES: tuple[str, ...] = ("NON_VIRTUAL", "HYBRID", "VIRTUAL_ONLY")
CHANNEL_GROUPS: tuple[str, ...] = ("card_present", "card_not_present", "mixed")
SCENARIO_BANDS: tuple[str, ...] = ("baseline", "stress")
HOURS_PER_WEEK = 168

# ----------------------------------------------------------------------------- world tables
MERCHANTS = pa.schema(
    [
        pa.field("merchant_id", pa.uint64(), nullable=False),
        pa.field("demand_class", pa.string(), nullable=False),
        pa.field("virtual_mode", pa.string(), nullable=False),
        pa.field("settlement_tzid", pa.string(), nullable=True),
    ]
)
SITES = pa.schema(
    [
        pa.field("merchant_id", pa.uint64(), nullable=False),
        pa.field("site_id", pa.uint64(), nullable=False),
        pa.field("legal_country_iso", pa.string(), nullable=False),
        pa.field("tzid", pa.string(), nullable=False),
        pa.field("weight", pa.float64(), nullable=False),
    ]
)
EDGES = pa.schema(
    [
        pa.field("merchant_id", pa.uint64(), nullable=False),
        pa.field("edge_id", pa.uint64(), nullable=False),
        pa.field("tzid", pa.string(), nullable=False),
        pa.field("weight", pa.float64(), nullable=False),
    ]
)
SERIES = pa.schema(
    [
        pa.field("merchant_id", pa.uint64(), nullable=False),
        pa.field("legal_country_iso", pa.string(), nullable=False),
        pa.field("tzid", pa.string(), nullable=False),
        pa.field("channel_group", pa.string(), nullable=False),
        pa.field("shape", pa.list_(pa.float64()), nullable=False),
        pa.field("scale", pa.float64(), nullable=False),
    ]
)
# One row per (scenario, country, local date, demand class): multiplicative effect on λ.
# demand_class "*" applies to every class. Dates without a row have effect 1.
CALENDAR = pa.schema(
    [
        pa.field("scenario_id", pa.string(), nullable=False),
        pa.field("legal_country_iso", pa.string(), nullable=False),
        # "*" for the whole country, else the one zone a regional effect applies to
        pa.field("tzid", pa.string(), nullable=False),
        pa.field("local_date", pa.date32(), nullable=False),
        pa.field("demand_class", pa.string(), nullable=False),
        pa.field("effect", pa.float64(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)
SCENARIOS = pa.schema(
    [
        pa.field("scenario_id", pa.string(), nullable=False),
        pa.field("band", pa.string(), nullable=False),
        pa.field("labels", pa.string(), nullable=True),
    ]
)
WORLD_TABLES: dict[str, pa.Schema] = {
    "merchants": MERCHANTS,
    "sites": SITES,
    "edges": EDGES,
    "series": SERIES,
    "calendar": CALENDAR,
    "scenarios": SCENARIOS,
}

# ----------------------------------------------------------------------------- datasets
TIME_GRID = pa.schema(
    [
        pa.field("bucket_index", pa.int64(), nullable=False),
        pa.field("bucket_abs", pa.int64(), nullable=False),
        pa.field("bucket_start_utc", TS_UTC, nullable=False),
        pa.field("bucket_end_utc", TS_UTC, nullable=False),
        pa.field("duration_s", pa.int64(), nullable=False),
    ]
)
GROUPING = pa.schema(
    [
        pa.field("merchant_id", pa.uint64(), nullable=False),
        pa.field("legal_country_iso", DICT_STR, nullable=False),
        pa.field("zone_tzid", DICT_STR, nullable=False),
        pa.field("channel_group", DICT_STR, nullable=False),
        pa.field("demand_class", DICT_STR, nullable=False),
        pa.field("virtual_band", DICT_STR, nullable=False),
        pa.field("zone_group", pa.int32(), nullable=False),
        pa.field("hash_bucket", pa.int32(), nullable=False),
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("sigma", pa.float64(), nullable=False),
        pa.field("length_scale", pa.float64(), nullable=False),
        pa.field("kappa", pa.float64(), nullable=False),
    ]
)
LATENT_INTENSITY = pa.schema(
    [
        pa.field("group_id", DICT_STR, nullable=False),
        pa.field("bucket_start_utc", TS_UTC, nullable=False),
        pa.field("z", pa.float64(), nullable=False),
        pa.field("factor", pa.float64(), nullable=False),
    ]
)
BUCKET_COUNTS = pa.schema(
    [
        pa.field("merchant_id", pa.uint64(), nullable=False),
        pa.field("legal_country_iso", DICT_STR, nullable=False),
        pa.field("zone_tzid", DICT_STR, nullable=False),
        pa.field("channel_group", DICT_STR, nullable=False),
        pa.field("bucket_start_utc", TS_UTC, nullable=False),
        pa.field("mu", pa.float64(), nullable=False),
        pa.field("count", pa.int64(), nullable=False),
        pa.field("capped", pa.bool_(), nullable=False),
    ]
)
ARRIVAL_EVENTS = pa.schema(
    [
        pa.field("arrival_id", pa.uint64(), nullable=False),
        pa.field("merchant_id", pa.uint64(), nullable=False),
        pa.field("legal_country_iso", DICT_STR, nullable=False),
        pa.field("zone_tzid", DICT_STR, nullable=False),
        pa.field("channel_group", DICT_STR, nullable=False),
        pa.field("bucket_start_utc", TS_UTC, nullable=False),
        pa.field("arrival_seq", pa.int64(), nullable=False),
        pa.field("ts_utc", TS_UTC, nullable=False),
        pa.field("tzid", DICT_STR, nullable=False),
        pa.field("ts_local", TS_LOCAL, nullable=False),
        pa.field("tzid_settlement", DICT_STR, nullable=True),
        pa.field("ts_local_settlement", TS_LOCAL, nullable=True),
        pa.field("site_id", pa.uint64(), nullable=True),
        pa.field("edge_id", pa.uint64(), nullable=True),
        pa.field("is_virtual", pa.bool_(), nullable=False),
    ]
)
VALIDATION_ISSUES = pa.schema(
    [
        pa.field("rule", pa.string(), nullable=False),
        pa.field("severity", pa.string(), nullable=False),
        pa.field("dataset", pa.string(), nullable=False),
        pa.field("key", pa.string(), nullable=True),
        pa.field("detail", pa.string(), nullable=False),
    ]
)
CALENDAR_ALL_ZONES = "*"
# Columns a world file may omit, with the value they take (added after the first release).
WORLD_COLUMN_DEFAULTS: dict[str, dict[str, str]] = {"calendar": {"tzid": CALENDAR_ALL_ZONES}}

DATASETS: dict[str, pa.Schema] = {
    "time_grid": TIME_GRID,
    "grouping": GROUPING,
    "latent_intensity": LATENT_INTENSITY,
    "bucket_counts": BUCKET_COUNTS,
    "arrival_events": ARRIVAL_EVENTS,
}
