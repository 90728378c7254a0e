"""The measuring scripts behind docs/benchmarks.md's figures on the S4 rules and the year:
bench_rules_phases.py (the rules phase by phase, thread by thread), bench_id_dups.py (the
id classes' duplicate check by bucket count) and trace_cpu.py (a command's cores and RSS)."""

from __future__ import annotations

import datetime as dt
import sys

import engine_core.checks.rules_s4 as rules
from benchmarks import bench_id_dups, bench_rules_phases, trace_cpu
from tests.pipeline.conftest import run_states

START = dt.datetime(2026, 3, 23, tzinfo=dt.UTC)
END = dt.datetime(2026, 3, 30, tzinfo=dt.UTC)


def test_rules_phases_time_every_phase_and_leave_the_rules_as_they_were(tmp_path):
    root = str(tmp_path / "run")
    run_states(root, START, END)
    before = (rules.id_classes, rules.EventChecks._scan)
    out = bench_rules_phases.main(["--world", "tiny", "--start", "2026-03-23",
                                   "--end", "2026-03-30", "--out", root, "--every", "0.05"])
    assert out["passed"] and out["rules"] == 13
    phases = out["phases"]
    # every shard's pass ran inside its shard's run, and the merge's phases once
    assert phases["_scan"]["calls"] == phases["run"]["calls"] >= 1
    assert phases["id_classes"]["calls"] == phases["merge_partials"]["calls"] == 1
    assert 0 < phases["_scan"]["cpu"] <= phases["run"]["cpu"] <= out["cpu"] + 0.05
    assert out["threads"]["MainThread"] > 0
    assert (rules.id_classes, rules.EventChecks._scan) == before


def test_id_dups_finds_the_planted_duplicates_at_every_bucket_count():
    rows = bench_id_dups.main(["--ids", "50000", "--bits", "1,6,10,14", "--dups", "40",
                               "--reps", "1"])
    assert [r["bits"] for r in rows] == [1, 6, 10, 14]
    counts = {r["duplicates"] for r in rows}
    assert len(counts) == 1 and 0 < counts.pop() <= 40  # a copy may land on another's source
    assert all(r["cpu"] >= 0 and r["wall"] > 0 for r in rows)


def test_trace_reports_the_child_and_its_exit_code(tmp_path):
    samples = tmp_path / "samples.txt"
    busy = [sys.executable, "-c", "import time; t = time.time()\nwhile time.time() - t < 0.6: pass"]
    out = trace_cpu.main(["--every", "0.05", "--bin", "0.2", "--samples", str(samples), "--",
                          *busy])
    assert out["returncode"] == 0 and out["wall"] >= 0.6
    assert out["samples"] >= 3 and out["peak_rss_kb"] > 0 and out["mean_cores"] > 0
    assert len(samples.read_text().splitlines()) == out["samples"]
    failed = trace_cpu.main(["--every", "0.05", "--", sys.executable, "-c", "raise SystemExit(3)"])
    assert failed["returncode"] == 3
