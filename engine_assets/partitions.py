"""Partitions of every engine asset: year x scenario, plus the one parser of partition keys.

A partition is one calendar year of simulated time (buckets from Jan 1 00:00 UTC to the next
Jan 1 00:00 UTC, half-open) under one scenario. Key strings order the dimensions
alphabetically, so a key reads ``"baseline|2026"``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import dagster as dg

FIRST_YEAR = "2024"
SCENARIOS: tuple[str, ...] = ("baseline", "stress")

# Yearly windows have no dedicated class: a yearly cron with a "%Y" format is one.
# end_offset=1 lists the current (started, not finished) year too: the engine simulates a year
# ahead of time, so it need not wait for the year to end.
year_partitions = dg.TimeWindowPartitionsDefinition(
    start=FIRST_YEAR,
    cron_schedule="0 0 1 1 *",
    fmt="%Y",
    timezone="UTC",
    end_offset=1,
)
scenario_partitions = dg.StaticPartitionsDefinition(list(SCENARIOS))
engine_partitions = dg.MultiPartitionsDefinition(
    {"year": year_partitions, "scenario": scenario_partitions}
)

# No backfill policy, on purpose. Without one, Dagster's asset backfill (the UI's "Materialize"
# over several partitions, GraphQL ``launchPartitionBackfill``) requests one run per partition
# key, with the chain of every asset in that run, tagged ``dagster/partition`` like a run launched
# for one partition: its check evaluations are recorded under that partition (event log, the
# asset's Checks tab, per-partition check status). ``BackfillPolicy.multi_run(
# max_partitions_per_run=1)`` also gives one run per partition, but tags it only with
# ``dagster/asset_partition_range_start``/``_end``, and Dagster 1.13 records the check
# evaluations of such a run without a partition. Either way concurrent runs, bounded by the run
# queue (``max_concurrent_runs``), give the parallelism.
ENGINE_BACKFILL_POLICY: dg.BackfillPolicy | None = None


@dataclass(frozen=True)
class EnginePartition:
    """One (year, scenario) partition and the simulated horizon it covers."""

    year: int
    scenario: str

    @property
    def start(self) -> dt.datetime:
        return dt.datetime(self.year, 1, 1, tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        return dt.datetime(self.year + 1, 1, 1, tzinfo=dt.UTC)

    @property
    def key(self) -> dg.MultiPartitionKey:
        return dg.MultiPartitionKey({"year": str(self.year), "scenario": self.scenario})

    def __str__(self) -> str:
        return str(self.key)


def parse_partition_key(key: str | dg.MultiPartitionKey) -> EnginePartition:
    """Parse a partition key, whether Dagster hands it over as a MultiPartitionKey or as the
    plain string of a run launched with only the ``dagster/partition`` tag."""
    multi = engine_partitions.get_partition_key_from_str(str(key))
    dims = multi.keys_by_dimension
    year, scenario = dims["year"], dims["scenario"]
    if scenario not in SCENARIOS:
        raise ValueError(
            f"unknown scenario {scenario!r} in partition key {key!r}; "
            f"expected one of {', '.join(SCENARIOS)}"
        )
    if not (len(year) == 4 and year.isdigit()):
        raise ValueError(f"year {year!r} in partition key {key!r} is not a 4-digit year")
    return EnginePartition(year=int(year), scenario=scenario)


def partition_of(context: dg.AssetExecutionContext) -> EnginePartition:
    """The partition a running asset step materialises."""
    return parse_partition_key(context.partition_key)
