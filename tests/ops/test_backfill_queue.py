"""A multi-partition backfill through the daemon and the run queue, measured end to end.

2 years x 2 scenarios of the tiny world, launched with GraphQL ``launchPartitionBackfill``
against ``dagster dev`` whose instance allows 2 concurrent runs: one run per partition
(``BackfillPolicy.multi_run(max_partitions_per_run=1)``), never more than 2 at once, every
run successful, and the benchmark's report (partitions/hour, events/s, daemon waits against
compute) consistent with the runs.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_backfill import (
    EVENTS_STEP,
    BackfillReport,
    measure_backfill,
    partition_keys,
)

from .conftest import MAX_CONCURRENT_RUNS

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

YEARS = (2025, 2026)
SCENARIOS = ("baseline", "stress")


def _max_overlap(report: BackfillReport) -> int:
    """The most runs holding a queue slot (dequeued, not yet ended) at any instant."""
    edges = []
    for r in report.runs:
        edges += [(r.launched, 1), (r.ended, -1)]
    held = peak = 0
    for _t, step in sorted(edges, key=lambda e: (e[0], e[1])):
        held += step
        peak = max(peak, held)
    return peak


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
    assert 1 <= _max_overlap(report) <= MAX_CONCURRENT_RUNS
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
