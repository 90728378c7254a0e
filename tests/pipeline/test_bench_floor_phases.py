"""benchmarks/bench_floor_phases.py measures what S4 and the floor really produce."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow.parquet as pq

from benchmarks import floor
from benchmarks.bench_floor_phases import Phases, main
from engine_core.pipeline.s4_events import count_chunks
from engine_core.schemas import EVENT_COLUMNS
from tests.pipeline.conftest import run_states

START = dt.datetime(2026, 3, 23, tzinfo=dt.UTC)  # a week over the EU's DST change
END = dt.datetime(2026, 3, 30, tzinfo=dt.UTC)


def test_phases_encode_the_published_tables(tmp_path):
    run = run_states(str(tmp_path / "run"), START, END)
    ctx = run.ctx
    year = ctx.years[0]
    chunks = list(count_chunks(ctx, run.store, ctx.window(year), None))
    assert len(chunks) == 1  # a week of the tiny world: one S4 chunk
    ph = Phases(run, chunks)
    # S4's part of the benchmark builds the very table S4 published
    s4_tbl, s4_cpu = ph.s4_table(chunks[0], {})
    published = pq.read_table(run.store.dataset_files("arrival_events", year)[0])
    assert s4_tbl.equals(published)
    # the floor's part builds the very table floor.py writes
    floor_tbl, floor_cpu = ph.floor_table(chunks[0])
    res = floor.run_floor(run, year, str(tmp_path / "floor"))
    assert floor_tbl.equals(pq.read_table(tmp_path / "floor" / "part-00000.parquet"))
    assert floor_tbl.num_rows == s4_tbl.num_rows == res["events"]
    assert set(s4_cpu) == set(floor_cpu) == {"kernel", "table"}


def test_script_reports_every_part_and_column(tmp_path):
    out = tmp_path / "phases.json"
    root = str(tmp_path / "run")
    result = main(["--world", "tiny", "--start", "2026-03-23", "--end", "2026-03-30",
                   "--out", root, "--chunks", "4", "--reps", "2", "--col-reps", "1",
                   "--json", str(out)])
    run = run_states(root, START, END)  # S1–S4 again over the partition the script published
    s3_events = int(run.store.read_totals("bucket_counts", run.ctx.years[0])["sum_count"])
    assert result["chunks"] == 1
    assert result["events"] == s3_events > 0
    assert len(result["passes"]) == 2
    for p in result["passes"]:
        assert p["s4"]["events"] == p["floor"]["events"] == s3_events
        for side in ("s4", "floor"):
            assert p[side]["bytes"] > 8 * s3_events  # the random ids alone take 8 bytes
            assert p[side]["kernel"] + p[side]["encode"] > 0
    assert result["ratio"] == result["total"]["s4"] / result["total"]["floor"]
    assert list(result["columns"]) == [c.name for c in EVENT_COLUMNS]
    ids = result["columns"]["arrival_id"]
    assert ids["s4_bytes_per_event"] >= 8 and ids["floor_bytes_per_event"] >= 8
    assert json.loads(out.read_text())["ratio"] == result["ratio"]
