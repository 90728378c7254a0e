"""Failures end to end: the right blocking check fails, nothing downstream runs, no
``_passed.flag`` survives, and the alert sensor turns each failed check into one alert."""

import json
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine_assets.definitions import ENGINE_ASSETS
from engine_assets.sensors import check_failure_alerts
from engine_core.pipeline.run import Run
from engine_core.pipeline.types import RuleResult

from .conftest import PARTITION, TINY, engine_resources


def _materialize(instance, root, world=TINY, **alerts):
    return dg.materialize(
        ENGINE_ASSETS,
        partition_key=PARTITION.key,
        resources=engine_resources(root, world=world, **alerts),
        instance=instance,
        raise_on_error=False,
    )


def _materialized(result) -> set[str]:
    return {
        e.step_materialization_data.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()
    }


def _tick(instance, root, webhook_url, cursor=None):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources=engine_resources(root, webhook_url=webhook_url)
    )
    check_failure_alerts(context)
    return context.cursor


def _alerts(root) -> list[dict]:
    path = Path(root) / "alerts.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def _flags(root) -> list[Path]:
    return list(Path(root).rglob("_passed.flag"))


def test_published_s3_corrupted_before_its_checks(instance, tmp_path, webhook, monkeypatch):
    """A dataset damaged between publish and check (a duplicated row) fails COUNTS_KEY_UNIQUE;
    a non-blocking S1 rule that fails only warns. The partition had passed before, so the
    test also shows that its old flag is withdrawn."""
    root = tmp_path / "data"
    first = _materialize(instance, root)
    assert first.success and len(_flags(root)) == 1

    real_state = Run.state
    real_check = Run.check

    def run_s3_then_corrupt(self, name, *args, **kwargs):
        result = real_state(self, name, *args, **kwargs)
        if name != "s3":
            return result
        counts = self.store.dataset_path("bucket_counts", PARTITION.year)
        part = sorted(Path(counts).glob("*.parquet"))[0]
        table = pq.read_table(part)
        pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), part)
        return result

    def check_with_group_size_warning(self, state, *args, **kwargs):
        results = real_check(self, state, *args, **kwargs)
        return [
            RuleResult(r.code, r.state, False, r.blocking, r.description, {"largest": 999})
            if r.code == "GROUP_SIZE_BOUNDS"
            else r
            for r in results
        ]

    monkeypatch.setattr(Run, "state", run_s3_then_corrupt)
    monkeypatch.setattr(Run, "check", check_with_group_size_warning)
    alerts_before = len(_alerts(root))
    cursor = _tick(instance, root, webhook.url)  # the first, clean run: nothing to say
    assert len(_alerts(root)) == alerts_before == 0

    result = _materialize(instance, root)
    assert not result.success
    assert _materialized(result) == {
        "world",
        "s1_time_grid",
        "s1_grouping",
        "s2_latent_intensity",
        "s3_bucket_counts",
    }
    evaluations = result.get_asset_check_evaluations()
    failed = {e.check_name: e for e in evaluations if not e.passed}
    assert "counts_key_unique" in failed
    assert failed["counts_key_unique"].severity == dg.AssetCheckSeverity.ERROR
    assert failed["group_size_bounds"].severity == dg.AssetCheckSeverity.WARN
    assert not any(e.asset_key.to_user_string() == "s4_arrival_events" for e in evaluations)
    assert _flags(root) == []

    cursor = _tick(instance, root, webhook.url, cursor)
    alerts = _alerts(root)
    assert sorted(a["check"] for a in alerts) == sorted(failed)
    assert {a["partition"] for a in alerts} == {str(PARTITION.key)}
    assert {a["asset"] for a in alerts if a["check"] == "counts_key_unique"} == {"s3_bucket_counts"}
    assert len(webhook.posts) == len(failed)
    assert _tick(instance, root, webhook.url, cursor) == cursor
    assert len(_alerts(root)) == len(failed) and len(webhook.posts) == len(failed)


@pytest.fixture
def world_missing_sites(tmp_path) -> str:
    """The tiny world exported to Parquet, minus every site of one physical series."""
    from engine_core.world import load_world

    world = load_world(TINY)
    out = tmp_path / "world"
    out.mkdir()
    for name, table in world.tables.items():
        pq.write_table(table, out / f"{name}.parquet")
    series = world.tables["series"].to_pylist()
    merchants = {m["merchant_id"]: m for m in world.tables["merchants"].to_pylist()}
    victim = next(s for s in series if merchants[s["merchant_id"]]["virtual_mode"] == "NON_VIRTUAL")
    sites = world.tables["sites"]
    keep = [
        not (
            s["merchant_id"] == victim["merchant_id"]
            and s["legal_country_iso"] == victim["legal_country_iso"]
            and s["tzid"] == victim["tzid"]
        )
        for s in sites.to_pylist()
    ]
    pq.write_table(sites.filter(pa.array(keep)), out / "sites.parquet")
    return str(out)


def test_world_whose_series_lacks_sites_is_rejected(
    instance, tmp_path, webhook, world_missing_sites
):
    root = tmp_path / "data"
    result = _materialize(instance, root, world=world_missing_sites)
    assert not result.success
    assert _materialized(result) <= {"world"}
    assert "s1_time_grid" not in _materialized(result)
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name for e in failed] == ["world_valid"]
    assert failed[0].severity == dg.AssetCheckSeverity.ERROR
    assert _flags(root) == []
    assert not any(Path(root).rglob("*.parquet"))

    cursor = _tick(instance, root, webhook.url)
    alerts = _alerts(root)
    assert [(a["asset"], a["check"], a["partition"]) for a in alerts] == [
        ("world", "world_valid", str(PARTITION.key))
    ]
    assert len(webhook.posts) == 1 and webhook.posts[0]["json"]["check"] == "world_valid"
    assert _tick(instance, root, webhook.url, cursor) == cursor
    assert len(_alerts(root)) == 1 and len(webhook.posts) == 1
