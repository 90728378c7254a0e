"""What a person sees when `arrival-engine run` runs in a terminal: one live bar per state with
its rate and ETA, a summary table, and still the JSON summary as the last line."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

from engine_core.console import TerminalProgress, print_summary, summary_rows
from engine_core.pipeline.types import ProgressUpdate
from tests.terminal import run_on_terminal

CLI = str(Path(sys.executable).with_name("arrival-engine"))


def test_a_terminal_shows_bars_per_state_and_a_summary_table(tmp_path):
    out = tmp_path / "out"
    run = run_on_terminal(
        [CLI, "run", "--world", "tiny", "--scenario", "baseline", "--start", "2026-01-01",
         "--end", "2026-02-01", "--out", str(out)],
        env={**os.environ, "NUMBA_NUM_THREADS": "2"},
    )
    assert run.returncode == 0, run.text
    # the JSON summary is still the last line (wrapped at the screen's width)
    bottom = max(i for i, line in enumerate(run.screen) if line.startswith("└"))
    summary = json.loads("".join(run.screen[bottom + 1:]))
    assert summary["passed"] is True
    events = summary["events"]
    bar = run.line_starting("s4 arrival events")
    assert "━" in bar and "100.0%" in bar
    assert f"{events:,}/{events:,} events" in bar
    assert "events/s" in bar and "ETA 0:00" in bar and "elapsed" in bar
    for label in ("s1 time grid", "s2 latent field", "s3 bucket counts", "s5 validation"):
        assert "100.0%" in run.line_starting(label), label
    # one bar per state: redraws leave exactly one line per state on the screen
    assert sum(line.startswith("s4 arrival events") for line in run.screen) == 1
    table = {}
    for line in run.screen:
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and line.startswith("│"):
            table[cells[0]] = cells[1]
    assert table["result"] == "PASSED"
    assert table["events"] == f"{events:,}"
    assert table["checks passed"] == "32/32"
    assert table["output"] == summary["out"]
    assert table["throughput"].endswith("events/s") and table["wall"].endswith(" s")
    assert "[s4]" not in run.text  # no plain log lines on a terminal


def test_plain_lines_when_not_a_terminal_each_state_ends_once():
    stream = io.StringIO()
    progress = TerminalProgress(["s4"], stream=stream, tty=False, every_s=60)
    for done in (10, 20, 30, 40):  # within the interval: only the first is printed
        progress(ProgressUpdate("s4", done, 40, "events", 1.0, 40.0, 0.0 if done == 40 else 1.0))
    progress(ProgressUpdate("s4", 40, 40, "events", 1.0, 40.0, 0.0))  # told twice
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines == ["[s4] 10/40 events (25.0%) 40 events/s elapsed 1.0s eta 1s",
                     "[s4] 40/40 events (100.0%) 40 events/s elapsed 1.0s eta 0s"]
    table = io.StringIO()
    print_summary(summary_rows(events=1000, wall_s=2.0, checks_passed=31, checks_total=32,
                               output="/x", passed=False), stream=table, tty=False)
    text = table.getvalue()
    assert "FAILED" in text and "500 events/s" in text and "31/32" in text and "/x" in text
