"""One partition of the tiny world through Dagster (`dg.materialize`, in process): every asset
materialises, every check passes, and the metadata tells the truth about what is on disk."""

import base64
import json
import re
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from engine_assets.asset_keys import ALL_ASSETS, FIDELITY_REPORT
from engine_assets.progress import TAG_PROGRESS
from engine_core import schemas
from engine_core.checks.catalogue import RULES
from engine_core.fidelity.report import CHECKS as FIDELITY_CHECKS

from .conftest import PARTITION

DATASET_OF = {
    "s1_time_grid": "time_grid",
    "s1_grouping": "grouping",
    "s2_latent_intensity": "latent_intensity",
    "s3_bucket_counts": "bucket_counts",
    "s4_arrival_events": "arrival_events",
}


@pytest.fixture(scope="module")
def materialized(tiny_run):
    result = tiny_run["result"]
    md = {}
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        assert str(mat.partition) == str(PARTITION.key)
        md[mat.asset_key.to_user_string()] = {k: v.value for k, v in mat.metadata.items()}
    return {**tiny_run, "md": md}


def _rows_on_disk(path: str) -> int:
    return pads.dataset(path, format="parquet").count_rows()


def test_every_asset_materialises(materialized):
    assert materialized["result"].success
    assert set(materialized["md"]) == set(ALL_ASSETS) | {FIDELITY_REPORT}


def test_every_check_runs_and_passes_for_the_partition(materialized):
    every = materialized["result"].get_asset_check_evaluations()
    evaluations = [e for e in every if e.asset_key.to_user_string() != FIDELITY_REPORT]
    assert sorted(e.check_name for e in evaluations) == sorted(r.code.lower() for r in RULES)
    failed = [(e.check_name, e.metadata) for e in evaluations if not e.passed]
    assert failed == []
    assert {e.partition for e in every} == {str(PARTITION.key)}


def test_fidelity_checks_warn_with_the_report_verdicts(materialized):
    evaluations = [
        e for e in materialized["result"].get_asset_check_evaluations()
        if e.asset_key.to_user_string() == FIDELITY_REPORT
    ]
    codes = sorted(code.lower() for code, _ in FIDELITY_CHECKS)
    assert sorted(e.check_name for e in evaluations) == codes
    assert {e.severity.value for e in evaluations} == {"WARN"}
    verdicts = materialized["md"][FIDELITY_REPORT]["checks"]
    for e in evaluations:
        # a check that could not be judged does not warn
        assert e.passed == (verdicts[e.check_name.upper()]["passed"] is not False)
    # the tiny world's year has DST changes (New York, London): no arrival in a gap
    assert verdicts["FIDELITY_DST_GAP"]["passed"] is True
    assert verdicts["FIDELITY_DST_FOLD"]["passed"] is not False  # few arrivals at 01:00


@pytest.mark.parametrize("asset", sorted(DATASET_OF))
def test_row_count_path_and_schema_match_the_published_parquet(materialized, asset):
    md = materialized["md"][asset]
    path = md["path"]
    assert Path(path).is_dir()
    assert path.endswith(f"/{DATASET_OF[asset]}/scenario=baseline/year=2026")
    assert md["dagster/row_count"] == _rows_on_disk(path) > 0
    assert md["output_bytes"] == sum(p.stat().st_size for p in Path(path).glob("*.parquet"))
    columns = [c.name for c in md["dagster/column_schema"].columns]
    assert columns == schemas.DATASETS[DATASET_OF[asset]].names
    assert md["elapsed_s"] >= 0 and md["peak_rss_mb"] > 0 and md["jit_compile_s"] >= 0


def test_time_grid_covers_the_year_hour_by_hour(materialized):
    assert materialized["md"]["s1_time_grid"]["dagster/row_count"] == 365 * 24


def test_events_and_throughput(materialized):
    md = materialized["md"]["s4_arrival_events"]
    assert md["events"] == md["dagster/row_count"] > 0
    assert md["events_per_s"] > 0


def test_identity_is_the_same_on_every_asset(materialized):
    ids = {
        (m["world_fingerprint"], m["parameter_hash"], m["tzdata_version"], m["run_root"])
        for m in materialized["md"].values()
    }
    assert len(ids) == 1
    fp, ph, tzdata, run_root = ids.pop()
    assert re.fullmatch(r"[0-9a-f]{64}", fp) and re.fullmatch(r"[0-9a-f]{64}", ph)
    assert tzdata
    assert run_root == str(Path(materialized["root"]) / fp[:12] / ph[:12] / "seed=42")


@pytest.mark.parametrize(
    ("asset", "plot"),
    [
        ("s1_grouping", "plot_group_sizes"),
        ("s2_latent_intensity", "plot_latent_factor"),
        ("s3_bucket_counts", "plot_count_dispersion"),
        ("s3_bucket_counts", "plot_arrivals_per_day"),
        ("s4_arrival_events", "plot_weekly_profile"),
        ("s4_arrival_events", "plot_routing_shares"),
        (FIDELITY_REPORT, "plot_hour_x_weekday"),
        (FIDELITY_REPORT, "plot_rank_size"),
        (FIDELITY_REPORT, "plot_event_study"),
    ],
)
def test_plots_are_embedded_pngs(materialized, asset, plot):
    text = materialized["md"][asset][plot]
    found = re.search(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", text)
    assert found, text[:200]
    assert base64.b64decode(found.group(1)).startswith(b"\x89PNG")


def test_validation_report_and_flag(materialized):
    md = materialized["md"]["s5_validation_report"]
    assert md["passed"] is True
    assert md["failed_blocking"] == 0
    assert Path(md["passed_flag"]).is_file()
    report = json.loads(Path(md["report_path"]).read_text())
    assert report["passed"] is True
    # the state checks of this run judged exactly these files: S5 took their verdicts
    assert md["reused_verdicts"] == ["s1|2026", "s2|2026", "s3|2026", "s4|2026"]


def test_progress_reaches_the_log_and_the_run_tags(materialized):
    result, instance = materialized["result"], materialized["instance"]
    run = instance.get_run_by_id(result.run_id)
    assert run.tags[TAG_PROGRESS] == "s5 100.0%"
    messages = [e.user_message for e in instance.all_logs(result.run_id)]
    for state in ("s1", "s2", "s3", "s4"):
        assert any(m.startswith(f"[{state}] ") for m in messages), state
