"""The fidelity tallies taken beside the S4 rules' pass (engine_core/fidelity/tallies.py):
equal exactly to the report's own scan of the events, whatever the rules' merchant shards;
the report built from them has the same content as the one that scans; and they are taken
back only while the partition's files are the ones they were taken from. The tiny world from
March to mid-November 2026, so that both of the northern zones' transitions are tallied."""

from __future__ import annotations

import datetime as dt
import os

import numpy as np
import pyarrow as pa
import pytest

from engine_core.checks.rules_s4 import s4_rules
from engine_core.fidelity import fidelity_report
from engine_core.fidelity.scan import (
    EventAggregates,
    WorldFrame,
    horizon_of,
    partition_dir,
    scan_events,
)
from engine_core.fidelity.tallies import (
    TallyRecorder,
    recall_event_tallies,
    tallies_path,
)
from engine_core.io.files import dataset_files
from engine_core.pipeline import Run, RunConfig

YEAR = 2026
START = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
END = dt.datetime(2026, 11, 8, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Run:
    root = str(tmp_path_factory.mktemp("tallies"))
    r = Run.open(RunConfig(world="tiny", scenario="baseline", start=START, end=END,
                           storage_root=root, seed=7))
    for state in ("s1", "s2", "s3", "s4"):
        r.state(state)
    return r


def _recorder(run: Run) -> TallyRecorder:
    return TallyRecorder(run.store.uri(), run.ctx.scenario, YEAR, run.ctx.world, run.ctx.policy)


def _frame(run: Run) -> WorldFrame:
    run_dir = run.store.uri()
    return WorldFrame(run.ctx.world, run.ctx.scenario, horizon_of(run_dir, "baseline", YEAR),
                      run.ctx.policy.routing.p_virtual_hybrid)


def _assert_equal(got: EventAggregates, want: EventAggregates) -> None:
    assert got.events == want.events
    np.testing.assert_array_equal(got.class_how, want.class_how)
    np.testing.assert_array_equal(got.merchant_total, want.merchant_total)
    np.testing.assert_array_equal(got.loc_day, want.loc_day)
    assert got.dst_gap == want.dst_gap
    assert got.dst_fold == want.dst_fold


@pytest.mark.parametrize("shards", [1, 3])
def test_tallies_of_the_rules_pass_equal_the_reports_own_scan(run, shards):
    run_dir = run.store.uri()
    recorder = _recorder(run)
    results = s4_rules(run.ctx, run.store, YEAR, shards=shards, rider=recorder)
    assert all(r.passed for r in results), [r.code for r in results if not r.passed]
    # every row reached the rider once, across the merchant shards
    assert recorder.error is None
    assert recorder.tally.events == recorder.rows > 0
    assert recorder.save(), recorder.outcome
    assert "kept for the report" in recorder.outcome

    frame = _frame(run)
    scanned = scan_events(frame, partition_dir(run_dir, "arrival_events", "baseline", YEAR))
    assert scanned.dst_fold and scanned.dst_gap  # both transitions are in the horizon
    assert sum(v for v in scanned.dst_gap.values()) == 0  # no local time in a gap
    recalled = recall_event_tallies(run_dir, "baseline", YEAR, frame)
    assert recalled is not None
    _assert_equal(recalled, scanned)


def test_report_from_the_tallies_equals_the_report_that_scans(run):
    run_dir = run.store.uri()
    recorder = _recorder(run)
    run.check("s4", year=YEAR, remember=False, reuse=False, rider=recorder)
    assert recorder.save(), recorder.outcome
    said: list[str] = []
    with_tallies = fidelity_report(run_dir, "baseline", YEAR, world=run.ctx.world,
                                   policy=run.ctx.policy, progress=said.append)
    assert any("taken by the S4 rules' pass" in m for m in said), said

    os.remove(tallies_path(run_dir, "baseline", YEAR))
    said.clear()
    scanning = fidelity_report(run_dir, "baseline", YEAR, world=run.ctx.world,
                               policy=run.ctx.policy, progress=said.append)
    assert any("rows read" in m for m in said), said
    assert with_tallies == scanning


def test_tallies_are_not_taken_back_once_the_events_change(run):
    run_dir = run.store.uri()
    frame = _frame(run)
    recorder = _recorder(run)
    run.check("s4", year=YEAR, remember=False, reuse=False, rider=recorder)
    assert recorder.save()
    assert recall_event_tallies(run_dir, "baseline", YEAR, frame) is not None
    # a part file rewritten (here: its modification time moved) is another partition
    part = dataset_files(partition_dir(run_dir, "arrival_events", "baseline", YEAR))[0]
    st = os.stat(part)
    os.utime(part, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert recall_event_tallies(run_dir, "baseline", YEAR, frame) is None
    # tallies of another world frame (another routing share) are not these
    recorder = _recorder(run)
    run.check("s4", year=YEAR, remember=False, reuse=False, rider=recorder)
    assert recorder.save()
    other = WorldFrame(run.ctx.world, "baseline", frame.horizon, frame.p_virtual_hybrid / 2)
    assert recall_event_tallies(run_dir, "baseline", YEAR, other) is None
    assert recall_event_tallies(run_dir, "baseline", YEAR, frame) is not None


def test_partial_or_failed_tallies_are_not_kept(run):
    run_dir = run.store.uri()
    kept = tallies_path(run_dir, "baseline", YEAR)
    assert kept is not None and not kept.startswith(run_dir)
    if os.path.exists(kept):
        os.remove(kept)
    # a rider that saw no row (the rules' verdicts taken from their record, say)
    idle = _recorder(run)
    assert not idle.save()
    assert f"0 of the partition's {idle.rows:,} rows" in idle.outcome
    # a fold that fails leaves the rules alone and keeps nothing
    broken = _recorder(run)
    broken(pa.table({"merchant_id": pa.array([1], pa.uint64())}))
    assert broken.error is not None and "legal_country_iso" in broken.error
    assert not broken.save()
    assert "the report scans the events" in broken.outcome
    assert not os.path.exists(kept)


def test_tallies_live_beside_the_verdict_memos_outside_the_run():
    fp, ph = "5d9c22e9718d", "36199d3bff57"
    assert tallies_path(f"/data/out/{fp}/{ph}/seed=42", "baseline", 2026) == (
        f"/data/out/_fidelity/{fp}/{ph}/seed=42/scenario=baseline/year=2026/event_tallies.npz")
    # an object store's endpoint options stay at the end of the URI
    uri = f"s3://bucket/engine/{fp}/{ph}/seed=7/?endpoint_override=127.0.0.1:9000&scheme=http"
    assert tallies_path(uri, "stress", 2027) == (
        f"s3://bucket/engine/_fidelity/{fp}/{ph}/seed=7/scenario=stress/year=2027/"
        "event_tallies.npz?endpoint_override=127.0.0.1:9000&scheme=http")
    # a directory not laid out as a run has no place for them: the report scans
    assert tallies_path("/data/somewhere", "baseline", 2026) is None
    assert tallies_path(f"/data/{fp}/{ph}/seed=42/arrival_events", "baseline", 2026) is None
