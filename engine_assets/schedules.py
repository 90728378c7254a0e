"""The yearly schedule: on Jan 1 (UTC) materialise the new year's partition of every scenario.

The year partitions are listed one year ahead of completion (``end_offset=1``), so the new
year's key exists at the tick. One run per scenario; the run key makes a re-evaluated tick
idempotent. Like every Dagster schedule it starts STOPPED (docs/operations.md).
"""

import datetime as dt
from collections.abc import Iterator

import dagster as dg

from engine_assets.jobs import engine_job
from engine_assets.partitions import SCENARIOS, EnginePartition

YEARLY_CRON = "0 0 1 1 *"
PARTITION_TAG = "dagster/partition"


def partitions_for_tick(tick_time: dt.datetime) -> list[EnginePartition]:
    """The partitions a tick at ``tick_time`` materialises: its year, every scenario."""
    year = tick_time.astimezone(dt.UTC).year
    return [EnginePartition(year=year, scenario=s) for s in SCENARIOS]


@dg.schedule(
    name="yearly_partitions",
    cron_schedule=YEARLY_CRON,
    execution_timezone="UTC",
    job=engine_job,
    description="Materialise each new year's partitions (all scenarios) on Jan 1, 00:00 UTC.",
)
def yearly_partitions(context: dg.ScheduleEvaluationContext) -> Iterator[dg.RunRequest]:
    tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
    for partition in partitions_for_tick(tick):
        yield dg.RunRequest(
            run_key=f"yearly:{partition}",
            partition_key=partition.key,
            # The partition tag given here marks the request as resolved: Dagster would
            # otherwise add one tag per dimension (``dagster/partition/year``), keys it
            # itself deprecates (two namespace sections), and warn at every tick. The run's
            # partition key is the same; assets parse it from the string (partition_of).
            tags={"engine/trigger": "yearly_partitions", PARTITION_TAG: str(partition.key)},
        )
