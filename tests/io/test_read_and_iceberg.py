"""Consumers' side: the reading API over validated partitions only, and the Iceberg tables the
engine keeps beside the Hive layout (engine_core/read.py, engine_core/io/iceberg.py).

One tiny run history, shared by the module: 2026 published for two weeks, then re-published
for the whole of January (a re-publish with other content), then 2027 published and failed
(one bucket-count row dropped after S4, so count conservation fails in S5).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import warnings

import polars as pl
import pyarrow.parquet as pq
import pytest

import engine_core
from engine_core.errors import EngineError
from engine_core.io.iceberg import load_table, year_files
from engine_core.pipeline import Run, RunConfig
from engine_core.pipeline.run import run_all

UTC = dt.UTC
SCENARIO = "baseline"


def _engine(root: str, start: dt.datetime, end: dt.datetime) -> Run:
    return Run.open(RunConfig(world="tiny", scenario=SCENARIO, start=start, end=end,
                            storage_root=root))


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> dict:
    root = str(tmp_path_factory.mktemp("consume") / "data")
    first = run_all(_engine(root, dt.datetime(2026, 1, 1, tzinfo=UTC),
                            dt.datetime(2026, 1, 15, tzinfo=UTC)))
    assert first["passed"]
    ids = {"world_fingerprint": first["world_fingerprint"],
           "parameter_hash": first["parameter_hash"], "seed": 42, "scenario": SCENARIO}
    table = load_table(root, dataset="arrival_events", **ids)
    first_snapshot = table.current_snapshot().snapshot_id
    second = run_all(_engine(root, dt.datetime(2026, 1, 1, tzinfo=UTC),
                             dt.datetime(2026, 2, 1, tzinfo=UTC)))
    assert second["passed"] and second["events"] > first["events"]
    # 2027: S1-S4 published, one bucket-count row removed, then S5 fails the partition
    eng = _engine(root, dt.datetime(2027, 1, 1, tzinfo=UTC), dt.datetime(2027, 1, 8, tzinfo=UTC))
    for state in ("world", "s1", "s2", "s3", "s4"):
        eng.state(state)
    (counts_file,) = eng.store.dataset_files("bucket_counts", 2027)
    counts = pq.read_table(counts_file)
    pq.write_table(counts.slice(1), counts_file)
    s5 = eng.state("s5")
    report, passed = s5.report, s5.passed
    assert not passed and report["rules"] and not report["passed"]
    return {"root": root, "ids": ids, "first": first, "second": second,
            "first_snapshot": first_snapshot}


# ----------------------------------------------------------------------------- reading API
def test_read_arrivals_reads_the_validated_partition(history):
    lf = engine_core.read_arrivals(history["root"], world="tiny", scenario=SCENARIO,
                                   years=[2026])
    assert isinstance(lf, pl.LazyFrame)
    df = lf.collect()
    assert df.height == history["second"]["events"]
    assert df["ts_utc"].dt.year().unique().to_list() == [2026]
    assert df.select(pl.col("arrival_id").n_unique()).item() == df.height
    counts = engine_core.read_bucket_counts(history["root"], world="tiny", scenario=SCENARIO,
                                            years=[2026], columns=["count"]).collect()
    assert counts.columns == ["count"] and counts["count"].sum() == df.height


def test_an_unvalidated_partition_is_refused_by_name_unless_asked(history):
    with pytest.raises(EngineError) as err:
        engine_core.read_arrivals(history["root"], world="tiny", scenario=SCENARIO)
    assert err.value.code == "PARTITION_NOT_VALIDATED"
    assert "year=2027" in str(err.value) and "year=2026" not in err.value.message
    anyway = engine_core.read_arrivals(history["root"], world="tiny", scenario=SCENARIO,
                                       years=[2027], require_passed=False,
                                       columns=["ts_utc"]).collect()
    assert anyway.height > 0 and anyway["ts_utc"].dt.year().unique().to_list() == [2027]


def test_a_world_directory_names_the_same_run(history, tmp_path):
    from engine_core.world import export_world, generate_world

    export_world(generate_world("tiny"), tmp_path / "world")
    by_dir = engine_core.read_arrivals(history["root"], world=str(tmp_path / "world"),
                                       scenario=SCENARIO, years=[2026])
    assert by_dir.select(pl.len()).collect().item() == history["second"]["events"]


def test_unknown_year_and_world_fingerprint_as_world(history):
    with pytest.raises(EngineError) as err:
        engine_core.read_arrivals(history["root"], world="tiny", scenario=SCENARIO,
                                  years=[2030])
    assert err.value.code == "PARTITION_NOT_FOUND" and "2030" in err.value.message
    by_hash = engine_core.read_arrivals(
        history["root"], world=history["ids"]["world_fingerprint"], scenario=SCENARIO,
        years=[2026], policy=history["ids"]["parameter_hash"]).select(pl.len()).collect()
    assert by_hash.item() == history["second"]["events"]


# ----------------------------------------------------------------------------- Iceberg
def _table(history, dataset="arrival_events"):
    return load_table(history["root"], dataset=dataset, **history["ids"])


def test_iceberg_table_equals_the_validated_files(history):
    files = engine_core.read_arrivals(history["root"], world="tiny", scenario=SCENARIO,
                                      years=[2026]).collect()
    key = ["merchant_id", "ts_utc", "arrival_seq"]
    expected = files.with_columns(pl.col(pl.Categorical).cast(pl.String)).sort(key)
    table = _table(history)
    via_pyiceberg = pl.from_arrow(table.scan().to_arrow())
    assert via_pyiceberg.height == history["second"]["events"]
    assert via_pyiceberg.with_columns(pl.col(pl.Categorical).cast(pl.String)).sort(key).select(
        expected.columns).equals(expected)
    # polars reads Iceberg's signed long: arrival_id (all 64 bits) stays with pyiceberg
    signed_safe = [c for c in expected.columns if c != "arrival_id"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # polars' planner notice
        via_polars = (pl.scan_iceberg(table, reader_override="pyiceberg")
                      .select(signed_safe).collect())
        assert pl.scan_iceberg(table).select(pl.len()).collect().item() == files.height
    assert via_polars.sort(key).equals(expected.select(signed_safe).with_columns(
        pl.col(pl.UInt64).cast(pl.Int64)))
    counts = pl.from_arrow(_table(history, "bucket_counts").scan().to_arrow())
    assert counts["count"].sum() == history["second"]["events"]


def test_republish_is_one_overwrite_snapshot_and_time_travel_still_reads(history):
    table = _table(history)
    ops = [s.summary.operation.value for s in table.snapshots()]
    assert ops == ["append", "overwrite"]
    last = table.current_snapshot()
    assert last.parent_snapshot_id == history["first_snapshot"]
    old = table.scan(snapshot_id=history["first_snapshot"]).to_arrow()
    assert old.num_rows == history["first"]["events"]
    assert pl.from_arrow(old)["ts_utc"].max() < dt.datetime(2026, 1, 15, tzinfo=UTC)
    # the registered files are links outside the Hive directory, which was replaced
    paths = [f.file_path for f in year_files(table, 2026)]
    assert paths and all("/_iceberg/data/" in p for p in paths)


def test_a_failed_partition_never_appears(history):
    for dataset in ("arrival_events", "bucket_counts"):
        table = _table(history, dataset)
        assert year_files(table, 2027) == []
        years = pl.from_arrow(table.scan(selected_fields=("bucket_start_utc",)).to_arrow())
        assert years["bucket_start_utc"].dt.year().unique().to_list() == [2026]


# ----------------------------------------------------------------------------- configuration
WEEK = (dt.datetime(2026, 3, 2, tzinfo=UTC), dt.datetime(2026, 3, 9, tzinfo=UTC))


def test_a_catalog_from_pyiceberg_configuration(tmp_path):
    """ENGINE_ICEBERG names a catalog of pyiceberg's own configuration (here an SQL one
    defined in the environment of the CLI run; a REST catalog is configured the same way)."""
    from pyiceberg.catalog.sql import SqlCatalog

    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    env = {**os.environ, "ENGINE_ICEBERG": "lake", "NUMBA_NUM_THREADS": "2",
           "PYICEBERG_CATALOG__LAKE__TYPE": "sql",
           "PYICEBERG_CATALOG__LAKE__URI": f"sqlite:///{tmp_path}/lake.db",
           "PYICEBERG_CATALOG__LAKE__WAREHOUSE": f"file://{warehouse}"}
    root = tmp_path / "data"
    proc = subprocess.run(
        [sys.executable, "-m", "engine_core.cli", "run", "--world", "tiny", "--start",
         "2026-03-02", "--end", "2026-03-09", "--out", str(root), "--quiet"],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.splitlines()[-1])
    catalog = SqlCatalog("lake", uri=f"sqlite:///{tmp_path}/lake.db",
                         warehouse=f"file://{warehouse}")
    (namespace,) = catalog.list_namespaces()
    assert namespace[0].startswith(f"engine_{summary['world_fingerprint'][:12]}_")
    table = catalog.load_table((namespace[0], "arrival_events_baseline"))
    assert table.scan(selected_fields=("ts_utc",)).to_arrow().num_rows == summary["events"]
    assert not (root / "_iceberg" / "catalog.db").exists()


def test_tables_can_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_ICEBERG", "off")
    root = tmp_path / "data"
    assert run_all(_engine(str(root), *WEEK))["passed"]
    assert not (root / "_iceberg").exists()
    assert engine_core.read_arrivals(str(root), world="tiny", scenario=SCENARIO).select(
        pl.len()).collect().item() > 0
