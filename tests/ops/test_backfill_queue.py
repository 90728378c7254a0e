"""A multi-partition backfill through the daemon and the run queue, measured end to end.

2 years x 2 scenarios of the tiny world, launched with GraphQL ``launchPartitionBackfill``
against ``dagster dev`` whose instance allows 2 concurrent runs: one run per partition, tagged
``dagster/partition`` (the assets have no backfill policy), never more than 2 at once, every
run successful, every check evaluation recorded under its run's partition, and the
benchmark's report (partitions/hour, events/s, daemon waits against compute) consistent with
the runs.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_backfill import (
    ENGINE_ASSETS,
    EVENTS_STEP,
    check_executions,
    measure_backfill,
    partition_keys,
)
from engine_assets.definitions import defs

from .conftest import MAX_CONCURRENT_RUNS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

YEARS = (2025, 2026)
SCENARIOS = ("baseline", "stress")


def test_backfill_of_four_partitions_through_the_run_queue(engine_server):
    keys = partition_keys(SCENARIOS, YEARS)
    report = measure_backfill(
        engine_server.dev.gql, keys, world="tiny", max_concurrent_runs=MAX_CONCURRENT_RUNS
    )
    print("\n" + report.to_text())

    assert report.backfill_status in ("COMPLETED", "COMPLETED_SUCCESS")
    assert sorted(r.partition for r in report.runs) == sorted(keys), "one run per partition"
    assert all(r.status == "SUCCESS" for r in report.runs)
    assert all(r.enqueued is not None and r.launched is not None for r in report.runs), (
        "every run went through the run queue"
    )
    assert 1 <= report.summary()["overlap"]["peak_queue_slots_held"] <= MAX_CONCURRENT_RUNS
    for r in report.runs:
        assert set(r.steps) >= {"world", "s1_time_grid_and_grouping", EVENTS_STEP,
                                  "s5_validation_report"}
        assert r.events > 100_000

    summary = report.summary()
    assert summary["runs_succeeded"] == len(keys)
    assert summary["events"] == sum(r.events for r in report.runs)
    assert summary["partitions_per_hour"] == pytest.approx(len(keys) / report.wall_s * 3600, 0.01)
    assert summary["events_per_s"] == pytest.approx(report.events / report.wall_s, 0.01)
    daemon, compute = summary["daemon"], summary["compute"]
    assert 0 <= daemon["submission_to_first_run_s"] < report.wall_s
    assert compute["steps_total_s"] > 0
    # The wall clock is explained: submission wait + the busiest chain of run time.
    assert report.wall_s >= daemon["submission_to_first_run_s"] + max(
        r.compute_s for r in report.runs
    )

    # Every check of every asset was evaluated once per run, recorded under the run's partition.
    partition_of_run = {r.run_id: r.partition for r in report.runs}
    # (the backfill covers the engine's chain; the fidelity report is not in it)
    check_keys = [k for k in defs.resolve_asset_graph().asset_check_keys
                  if k.asset_key.to_user_string() in ENGINE_ASSETS]
    assert len(check_keys) >= 30
    for key in check_keys:
        executions = check_executions(
            engine_server.dev.gql, key.asset_key.to_user_string(), key.name, limit=100
        )
        ours = [e for e in executions if e["runId"] in partition_of_run]
        assert len(ours) == len(partition_of_run), key.to_user_string()
        recorded = {e["runId"]: e["partition"] for e in ours}
        assert recorded == partition_of_run, f"{key.to_user_string()}: {recorded}"
        assert {e["status"] for e in ours} == {"SUCCEEDED"}, key.to_user_string()
