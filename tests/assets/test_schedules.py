import datetime as dt
import warnings

import dagster as dg

from engine_assets.definitions import defs
from engine_assets.jobs import ENGINE_JOB
from engine_assets.partitions import engine_partitions
from engine_assets.schedules import yearly_partitions


def test_new_year_tick_requests_that_year_for_every_scenario():
    tick = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    context = dg.build_schedule_context(
        scheduled_execution_time=tick, repository_def=defs.get_repository_def()
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        requests = list(yearly_partitions.evaluate_tick(context).run_requests)
    assert [str(w.message) for w in caught] == []  # e.g. no deprecated tag keys
    assert {r.tags["dagster/partition"] for r in requests} == {"baseline|2027", "stress|2027"}
    assert sorted(r.partition_key for r in requests) == ["baseline|2027", "stress|2027"]
    assert len({r.run_key for r in requests}) == 2
    # The keys exist at the tick: end_offset=1 lists the year that has just begun.
    assert set(engine_partitions.get_partition_keys(current_time=tick)) >= {
        "baseline|2027",
        "stress|2027",
    }


def test_schedule_is_yearly_in_utc_and_targets_the_engine_job():
    assert yearly_partitions.cron_schedule == "0 0 1 1 *"
    assert yearly_partitions.execution_timezone == "UTC"
    assert yearly_partitions.job_name == ENGINE_JOB
    assert yearly_partitions.default_status == dg.DefaultScheduleStatus.STOPPED
