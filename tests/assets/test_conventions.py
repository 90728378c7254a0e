"""The Dagster surface follows the platform's conventions: code and data versions (so the UI
shows stale partitions), owners, tags, column descriptions from the data dictionary, asset
descriptions that say how to read the data."""

from __future__ import annotations

import dagster as dg
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus
from dagster._core.loader import LoadingContextForTest

import engine_core
from engine_assets.asset_keys import ALL_ASSETS, FIDELITY_REPORT, S4_ARRIVAL_EVENTS
from engine_assets.definitions import ENGINE_ASSETS, defs
from engine_assets.metadata import COLUMN_SCHEMA
from engine_core import schemas
from tests.assets.conftest import PARTITION

EVERY_ASSET = {*ALL_ASSETS, FIDELITY_REPORT}


def _status(instance, assets, key: str) -> tuple[StaleStatus, list]:
    resolver = CachingStaleStatusResolver(instance, AssetGraph.from_assets(assets),
                                          LoadingContextForTest(instance))
    asset_key = dg.AssetKey(key)
    partition = str(PARTITION.key)
    return (resolver.get_status(asset_key, partition),
            list(resolver.get_stale_causes(asset_key, partition)))


def test_every_asset_carries_code_version_owners_and_tags():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in graph.get_all_asset_keys()} == EVERY_ASSET
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.code_version == engine_core.code_version(), key
        assert node.owners == ["team:synthetic-data"], key
        assert node.tags["domain"] == "fraud_simulation" and node.tags["engine_state"], key
        assert len(node.description or "") > 80, key
    events = graph.get(dg.AssetKey(S4_ARRIVAL_EVENTS))
    assert "engine_core.read_arrivals" in events.description


def test_materialisations_carry_data_versions_and_described_columns(tiny_run):
    result = tiny_run["result"]
    assert result.success
    mats = {e.asset_key.to_user_string(): e.step_materialization_data.materialization
            for e in result.get_asset_materialization_events()}
    assert set(mats) == EVERY_ASSET
    for name, mat in mats.items():
        assert mat.tags.get("dagster/data_version"), name
        assert mat.tags.get("dagster/code_version") == engine_core.code_version(), name
    tables = mats["s5_validation_report"].metadata["iceberg_tables"].value
    assert {t.split(".")[1] for t in tables} == {"arrival_events_baseline",
                                                 "bucket_counts_baseline"}
    assert all(t["snapshot_id"] and t["year_files"] >= 1 for t in tables.values())
    columns = mats[S4_ARRIVAL_EVENTS].metadata[COLUMN_SCHEMA].value.columns
    assert [c.name for c in columns] == schemas.ARRIVAL_EVENTS.names
    assert [c.description for c in columns] == [
        schemas.COLUMN_DESCRIPTIONS["arrival_events"][c.name] for c in columns]


def test_a_code_version_change_marks_the_materialised_partition_stale(tiny_run):
    instance = tiny_run["instance"]
    for key in ALL_ASSETS:
        status, causes = _status(instance, ENGINE_ASSETS, key)
        assert status == StaleStatus.FRESH, (key, causes)
    changed = [a.map_asset_specs(lambda spec: spec.replace_attributes(
        code_version="0.1.0+changed-kernel")) for a in ENGINE_ASSETS]
    for key in ALL_ASSETS:
        status, causes = _status(instance, changed, key)
        assert status == StaleStatus.STALE, key
        assert any(c.category.name == "CODE" and c.key.asset_key == dg.AssetKey(key)
                   for c in causes), (key, causes)
