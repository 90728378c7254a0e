"""Identity and determinism (SPEC §3): reruns, threads, partitions, insertion, CRN."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from engine_core.config import DEFAULT_POLICY_PATH
from engine_core.world import export_world, generate_world
from tests.pipeline.conftest import run_states

UTC = dt.UTC
JAN = (dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 2, 1, tzinfo=UTC))
Q1 = (dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 4, 1, tzinfo=UTC))
DATASETS = ("time_grid", "grouping", "latent_intensity", "bucket_counts", "arrival_events")


def tree_digest(root: str) -> dict[str, str]:
    """SHA-256 of every published data file under ``root`` (relative path → digest)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        if "_staging" in dirpath:
            continue
        for name in files:
            if name.endswith(".parquet") or name == "_totals.json":
                p = os.path.join(dirpath, name)
                out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def events(eng, year: int = 2026) -> pl.DataFrame:
    return pl.read_parquet(eng.store.dataset_files("arrival_events", year))


def test_two_runs_give_identical_bytes(tmp_path):
    a = run_states(str(tmp_path / "a"), *JAN)
    b = run_states(str(tmp_path / "b"), *JAN)
    da, db = tree_digest(str(tmp_path / "a")), tree_digest(str(tmp_path / "b"))
    assert len(da) >= len(DATASETS)
    assert da == db
    assert a.run_root.split("/")[-3:] == b.run_root.split("/")[-3:]


def test_rerun_in_place_is_identical(tmp_path):
    root = str(tmp_path / "r")
    run_states(root, *JAN)
    first = tree_digest(root)
    run_states(root, *JAN)
    assert tree_digest(root) == first


def _cli_run(out: Path, threads: int) -> dict:
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    code = (
        "import datetime as dt, sys\n"
        "from tests.pipeline.conftest import run_states\n"
        "UTC = dt.UTC\n"
        f"run_states({str(out)!r}, dt.datetime(2026, 1, 1, tzinfo=UTC),"
        f" dt.datetime(2026, 2, 1, tzinfo=UTC), threads={threads})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env,
                   cwd=Path(__file__).resolve().parents[2], timeout=600)
    return tree_digest(str(out))


def test_one_and_two_threads_give_identical_bytes(tmp_path):
    one = _cli_run(tmp_path / "t1", 1)
    two = _cli_run(tmp_path / "t2", 2)
    assert one and one == two


def test_month_equals_same_month_of_a_longer_run(tmp_path):
    """Partition invariance: every column but arrival_seq is equal for January, whether
    January was computed alone or as part of a quarter."""
    month = run_states(str(tmp_path / "m"), *JAN)
    quarter = run_states(str(tmp_path / "q"), *Q1)
    em = events(month)
    eq = events(quarter).filter(pl.col("ts_utc") < pl.datetime(2026, 2, 1, time_zone="UTC"))
    assert em.height > 1000
    cols = [c for c in em.columns if c != "arrival_seq"]
    assert em.select(cols).equals(eq.select(cols))
    # S2 and S3 agree too
    for ds in ("latent_intensity", "bucket_counts"):
        a = pl.read_parquet(month.dataset_files(ds, 2026))
        b = pl.read_parquet(quarter.dataset_files(ds, 2026)).filter(
            pl.col("bucket_start_utc") < pl.datetime(2026, 2, 1, time_zone="UTC"))
        if ds == "latent_intensity":
            a = a.sort("group_id", "bucket_start_utc")
            b = b.sort("group_id", "bucket_start_utc")
        assert a.equals(b), ds


def test_horizon_across_new_year_writes_two_partitions(tmp_path):
    start = dt.datetime(2026, 12, 31, tzinfo=UTC)
    end = dt.datetime(2027, 1, 2, tzinfo=UTC)
    eng = run_states(str(tmp_path / "ny"), start, end)
    assert eng.ctx.years == [2026, 2027]
    for y in (2026, 2027):
        grid = pq.read_table(eng.store.dataset_files("time_grid", y))
        assert grid.num_rows == 24
    ev26 = events(eng, 2026)
    assert ev26["ts_utc"].max() < dt.datetime(2027, 1, 1, tzinfo=UTC)
    assert events(eng, 2027)["arrival_seq"].min() == 1


def _add_merchant(world_dir: Path) -> int:
    """Add a merchant with one site and one series to an exported world."""
    merchants = pq.read_table(world_dir / "merchants.parquet")
    sites = pq.read_table(world_dir / "sites.parquet")
    series = pq.read_table(world_dir / "series.parquet")
    new_id = int(pa.compute.max(merchants["merchant_id"]).as_py()) + 17
    new_site = int(pa.compute.max(sites["site_id"]).as_py()) + 17
    m_row = {"merchant_id": [new_id], "demand_class": ["retail_daytime"],
             "virtual_mode": ["NON_VIRTUAL"], "settlement_tzid": [None]}
    s_row = {"merchant_id": [new_id], "site_id": [new_site], "legal_country_iso": ["GB"],
             "tzid": ["Europe/London"], "weight": [1.0]}
    shape = [1.0 + (h % 24 >= 9) * 4.0 for h in range(168)]
    r_row = {"merchant_id": [new_id], "legal_country_iso": ["GB"], "tzid": ["Europe/London"],
             "channel_group": ["card_present"], "shape": [shape], "scale": [2000.0]}
    for name, tbl, row in (("merchants", merchants, m_row), ("sites", sites, s_row),
                           ("series", series, r_row)):
        extra = pa.table(row, schema=tbl.schema)
        pq.write_table(pa.concat_tables([tbl, extra]), world_dir / f"{name}.parquet")
    return new_id


def test_adding_a_merchant_leaves_others_unchanged(tmp_path):
    base_dir = tmp_path / "world"
    export_world(generate_world("tiny"), base_dir)
    grown_dir = tmp_path / "world_grown"
    export_world(generate_world("tiny"), grown_dir)
    new_id = _add_merchant(grown_dir)
    a = run_states(str(tmp_path / "a"), *JAN, world=str(base_dir))
    b = run_states(str(tmp_path / "b"), *JAN, world=str(grown_dir))
    assert a.world_fingerprint != b.world_fingerprint
    ea = events(a)
    eb = events(b)
    assert eb.filter(pl.col("merchant_id") == new_id).height > 0
    eb_old = eb.filter(pl.col("merchant_id") != new_id)
    cast = {c: pl.String for c in ("legal_country_iso", "zone_tzid", "channel_group", "tzid",
                                   "tzid_settlement")}
    assert ea.cast(cast).equals(eb_old.cast(cast))


def _policy_with(tmp_path: Path, **latent) -> str:
    pack = yaml.safe_load(Path(DEFAULT_POLICY_PATH).read_text())
    pack["latent"].update(latent)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(pack))
    return str(path)


def test_common_random_numbers_counts_monotone_in_mu(tmp_path):
    """Same seed, another policy value (σ): counts are drawn by inversion from the same
    uniforms, so wherever μ rises at equal κ the count never falls (SPEC §3)."""
    a = run_states(str(tmp_path / "a"), *JAN)
    b = run_states(str(tmp_path / "b"), *JAN,
                   policy_path=_policy_with(tmp_path, sigma_base={"baseline": 0.5,
                                                                  "stress": 0.4}))
    assert a.parameter_hash != b.parameter_hash
    key = ["merchant_id", "legal_country_iso", "zone_tzid", "channel_group", "bucket_start_utc"]
    cast = {c: pl.String for c in ("legal_country_iso", "zone_tzid", "channel_group")}
    ca = pl.read_parquet(a.dataset_files("bucket_counts", 2026)).cast(cast)
    cb = pl.read_parquet(b.dataset_files("bucket_counts", 2026)).cast(cast)
    j = ca.join(cb, on=key, how="full", suffix="_b", coalesce=True).fill_null(0)
    j = j.with_columns(pl.col("mu").fill_null(0.0), pl.col("mu_b").fill_null(0.0))
    # rows missing on one side have count 0 there; their μ is unknown (not written), so
    # compare where both μ are known
    both = j.filter((pl.col("mu") > 0) & (pl.col("mu_b") > 0))
    rising = both.filter(pl.col("mu_b") > pl.col("mu"))
    falling = both.filter(pl.col("mu_b") < pl.col("mu"))
    assert rising.height > 100 and falling.height > 100
    assert (rising["count_b"] >= rising["count"]).all()
    assert (falling["count_b"] <= falling["count"]).all()


def test_scenarios_share_uniforms(tmp_path):
    """Baseline and stress with one seed draw the same time uniforms: an arrival j of the
    same (series, bucket) lands at the same µs in both."""
    a = run_states(str(tmp_path / "a"), *JAN)
    b = run_states(str(tmp_path / "b"), *JAN, scenario="stress")
    ea = events(a).select("arrival_id", "ts_utc")
    eb = events(b).select("arrival_id", "ts_utc")
    shared = ea.join(eb, on="arrival_id", suffix="_b")
    assert shared.height > 0.2 * min(ea.height, eb.height)
    assert (shared["ts_utc"] == shared["ts_utc_b"]).all()


def test_summary_json_is_serialisable(tmp_path):
    eng = run_states(str(tmp_path / "s"), *JAN)
    assert json.dumps(eng.ctx.identity())
    assert np.isfinite(eng.store.read_totals("bucket_counts", 2026)["sum_mu_all"])


@pytest.mark.parametrize("bad", ["../escape", "UPPER", "a/b", ""])
def test_scenario_ids_cannot_escape(tmp_path, bad):
    from engine_core.errors import EngineError

    with pytest.raises(EngineError) as err:
        run_states(str(tmp_path / "x"), *JAN, scenario=bad)
    assert err.value.code == "SCENARIO_INVALID"
