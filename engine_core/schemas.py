"""One pyarrow schema per table and dataset: used by writers, readers and checks alike.

World tables (inputs) and the datasets the states publish (SPEC §4, §8). Column names and
types here are the public contract.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from engine_core.errors import EngineError

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

# ----------------------------------------------------------------------------- identity
SCENARIO_RE = re.compile(r"^[a-z0-9_]+$")
YEAR_MIN, YEAR_MAX = 1971, 9998  # years a partition may have


def validate_scenario_id(scenario: str) -> str:
    if not isinstance(scenario, str) or not SCENARIO_RE.fullmatch(scenario):
        raise EngineError(
            "SCENARIO_INVALID",
            f"scenario id {scenario!r} must match [a-z0-9_]+",
            column="scenario_id",
            key=scenario,
        )
    return scenario

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
@dataclass(frozen=True)
class EventColumn:
    """One column of ``arrival_events``: the single declaration from which the S4 kernel's
    output arrays (allocation and warm-up), the Arrow table, the Parquet options and the
    checks' column list are derived (docs/architecture.md, "adding a column").

    ``kernel_dtype`` is the dtype of the array the kernel fills. ``dictionary`` names the
    world dictionary (``WorldArrays`` attribute) a code column indexes. ``null_when`` names
    the rows where the value is null: ``virtual`` / ``physical`` (by ``is_virtual``) or
    ``unsettled`` (where the kernel wrote settlement zone -1). ``parquet`` is the Parquet
    encoding: ``dictionary`` pages, ``delta`` (DELTA_BINARY_PACKED, for sorted µs and
    sequences) or ``plain``; ``statistics`` keeps min/max for the columns readers sort and
    prune by.
    """

    name: str
    arrow: pa.DataType
    kernel_dtype: str
    description: str
    dictionary: str | None = None
    null_when: str | None = None
    parquet: str = "dictionary"
    statistics: bool = False

    def field(self) -> pa.Field:
        return pa.field(self.name, self.arrow, nullable=self.null_when is not None)


# Events: dictionary pages only where values repeat; sorted µs timestamps delta-encode well;
# min/max statistics only on the columns readers sort and prune by. Measured in CPU seconds on
# an 8.4 M-row reference chunk, against dictionaries and statistics everywhere: 0.52x the CPU
# and 18.3 instead of 24.2 B/row (docs/benchmarks.md).
EVENT_COLUMNS: tuple[EventColumn, ...] = (
    EventColumn("arrival_id", pa.uint64(), "uint64",
                "Unique, partition-invariant 64-bit id of the arrival.",
                parquet="plain"),
    EventColumn("merchant_id", pa.uint64(), "uint64",
                "Merchant of the series (world `merchants.merchant_id`).",
                statistics=True),
    EventColumn("legal_country_iso", DICT_STR, "int32",
                "ISO 3166-1 alpha-2 country of the series.",
                dictionary="countries"),
    EventColumn("zone_tzid", DICT_STR, "int32",
                "IANA time zone of the series (its weekly shape is in this local time).",
                dictionary="tzids"),
    EventColumn("channel_group", DICT_STR, "int32",
                "card_present, card_not_present or mixed.",
                dictionary="channels"),
    EventColumn("bucket_start_utc", TS_UTC, "int64",
                "Start of the UTC bucket the arrival was drawn in, µs.",
                statistics=True),
    EventColumn("arrival_seq", pa.int64(), "int64",
                "Per-merchant sequence number, 1.., chronological within the partition.",
                parquet="delta", statistics=True),
    EventColumn("ts_utc", TS_UTC, "int64",
                "Arrival instant, µs, UTC.",
                parquet="delta", statistics=True),
    EventColumn("tzid", DICT_STR, "int32",
                "Time zone of the arrival: the site's, or the edge's operational zone.",
                dictionary="tzids"),
    EventColumn("ts_local", TS_LOCAL, "int64",
                "Wall-clock time of ts_utc in tzid (naive, µs).",
                parquet="delta"),
    EventColumn("tzid_settlement", DICT_STR, "int32",
                "Settlement time zone of a virtual arrival (null when physical "
                "or the merchant has none).",
                dictionary="tzids", null_when="unsettled"),
    EventColumn("ts_local_settlement", TS_LOCAL, "int64",
                "Wall-clock time of ts_utc in tzid_settlement (naive, µs).",
                null_when="unsettled", parquet="delta"),
    EventColumn("site_id", pa.uint64(), "uint64",
                "Physical site the arrival was routed to (null when virtual).",
                null_when="virtual"),
    EventColumn("edge_id", pa.uint64(), "uint64",
                "Virtual edge the arrival was routed to (null when physical).",
                null_when="physical"),
    EventColumn("is_virtual", pa.bool_(), "bool",
                "True for an arrival routed to a virtual edge."),
)
ARRIVAL_EVENTS = pa.schema([c.field() for c in EVENT_COLUMNS])
# Rows per Parquet data page. Arrow's default (20,000) makes a million-row row group of a
# column some fifty pages, each compressed and decompressed on its own; every zstd call
# sets up a context (which asks the CPU for its features: slow in a virtual machine).
# Fewer, larger pages cut the CPU of writing events by ~11 % and of reading them by ~18 %
# (docs/benchmarks.md), for about 0.3 % more bytes.
PAGE_ROWS = 100_000
EVENT_PARQUET_OPTIONS: dict = {
    "compression": "zstd",
    "max_rows_per_page": PAGE_ROWS,
    "use_dictionary": [c.name for c in EVENT_COLUMNS if c.parquet == "dictionary"],
    "column_encoding": {c.name: "DELTA_BINARY_PACKED" for c in EVENT_COLUMNS
                        if c.parquet == "delta"},
    "write_statistics": [c.name for c in EVENT_COLUMNS if c.statistics],
}
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
# every dataset of the storage layout (SPEC §8), validation included
DATASET_NAMES: tuple[str, ...] = (*DATASETS, "validation")

# ----------------------------------------------------------------------------- data dictionary
# One description per published column: the single source of the data dictionary in
# docs/consuming.md (tests/core/test_data_dictionary.py keeps the two equal) and of the column
# descriptions in the Dagster assets' table-schema metadata. Kept beside the schemas rather than
# as Arrow field metadata, which would be written into every Parquet footer.
_SERIES_COLUMNS = {
    "merchant_id": "Merchant of the series (world `merchants.merchant_id`).",
    "legal_country_iso": "ISO 3166-1 alpha-2 country of the series.",
    "zone_tzid": "IANA time zone of the series (its weekly shape is in this local time).",
    "channel_group": "card_present, card_not_present or mixed.",
}
COLUMN_DESCRIPTIONS: dict[str, dict[str, str]] = {
    "time_grid": {
        "bucket_index": "Bucket number within the partition, from 0.",
        "bucket_abs": "Absolute bucket number: bucket_start_utc in seconds / bucket_seconds.",
        "bucket_start_utc": "Start of the bucket (inclusive), µs, UTC.",
        "bucket_end_utc": "End of the bucket (exclusive), µs, UTC.",
        "duration_s": "Bucket length in seconds (policy time_grid.bucket_seconds).",
    },
    "grouping": {
        **_SERIES_COLUMNS,
        "demand_class": "The merchant's demand class (one of 11).",
        "virtual_band": "physical or virtual: the virtual band of the stratum.",
        "zone_group": "SHA-256 of the tzid modulo 16.",
        "hash_bucket": "SHA-256 of the merchant_id modulo 32: splits a stratum into groups.",
        "group_id": "Latent group: scenario band, stratum and hash bucket.",
        "sigma": "σ of the group's log-Gaussian AR(1) field.",
        "length_scale": "Length scale L of the field, in buckets.",
        "kappa": "NB2 dispersion κ of the series' counts.",
    },
    "latent_intensity": {
        "group_id": "Latent group (see grouping.group_id).",
        "bucket_start_utc": "Start of the bucket, µs, UTC.",
        "z": "Value of the AR(1) field Z at the bucket.",
        "factor": "Multiplicative factor clamp(exp(Z − σ²/2), 0.2, 5).",
    },
    "bucket_counts": {
        **_SERIES_COLUMNS,
        "bucket_start_utc": "Start of the UTC bucket, µs.",
        "mu": "Expected count μ = λ(series, bucket) × latent factor, capped at lambda_max.",
        "count": "Sampled number of arrivals (> 0: only non-empty buckets are stored).",
        "capped": "True when the count was capped at max_count_per_bucket.",
    },
    # the event columns are described where they are declared
    "arrival_events": {c.name: c.description for c in EVENT_COLUMNS},
}


def data_dictionary_markdown(dataset: str) -> str:
    """The data dictionary of ``dataset`` as a Markdown table (column, type, nulls, meaning)."""
    schema = DATASETS[dataset]
    lines = ["| column | type | nulls | description |", "| --- | --- | --- | --- |"]
    for f in schema:
        nulls = "yes" if f.nullable else "no"
        typ = f"dict<{f.type.value_type}>" if pa.types.is_dictionary(f.type) else str(f.type)
        lines.append(f"| `{f.name}` | `{typ}` | {nulls} | "
                     f"{COLUMN_DESCRIPTIONS[dataset][f.name]} |")
    return "\n".join(lines)
