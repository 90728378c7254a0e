import datetime as dt

import dagster as dg
import pytest

from engine_assets.definitions import ENGINE_ASSETS
from engine_assets.partitions import (
    ENGINE_BACKFILL_POLICY,
    EnginePartition,
    engine_partitions,
    parse_partition_key,
)


def test_key_string_orders_dimensions_alphabetically():
    assert str(EnginePartition(2026, "baseline").key) == "baseline|2026"


@pytest.mark.parametrize(
    "key", ["baseline|2026", dg.MultiPartitionKey({"year": "2026", "scenario": "baseline"})]
)
def test_plain_string_and_multi_key_parse_alike(key):
    p = parse_partition_key(key)
    assert p == EnginePartition(2026, "baseline")
    assert p.start == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert p.end == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


@pytest.mark.parametrize("bad", ["2026|baseline", "nope|2026", "baseline|26"])
def test_malformed_keys_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_partition_key(bad)


def test_current_year_is_listed_and_next_year_is_not():
    keys = engine_partitions.get_partition_keys(current_time=dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    assert "baseline|2026" in keys and "stress|2026" in keys
    assert "baseline|2027" not in keys
    assert "baseline|2024" in keys and "baseline|2023" not in keys


def test_every_asset_shares_partitions_and_backfill_policy():
    for assets_def in ENGINE_ASSETS:
        assert assets_def.partitions_def == engine_partitions
        assert assets_def.backfill_policy == ENGINE_BACKFILL_POLICY
    assert ENGINE_BACKFILL_POLICY is None


# Dagster's own backfill code (called here as its daemon calls it) tags multi-dimension
# partitions with `dagster/partition/<dimension>` keys it has itself deprecated; nothing of the
# engine sets them, so the warning is expected here and only here.
@pytest.mark.filterwarnings("ignore:Non-compliant tag keys:DeprecationWarning")
def test_asset_backfill_requests_one_partition_tagged_run_per_partition():
    """What the backfill daemon launches for two partitions of the whole chain: one run per
    partition with every asset, tagged ``dagster/partition`` (so check evaluations are recorded
    under it), never a partition-range run."""
    from dagster._core.definitions.automation_tick_evaluation_context import (
        build_run_requests_with_backfill_policies,
    )
    from dagster._core.definitions.events import AssetKeyPartitionKey

    from engine_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = ["baseline|2025", "stress|2026"]
    asset_keys = {k for a in ENGINE_ASSETS for k in a.keys}
    with dg.instance_for_test() as instance:
        requests = build_run_requests_with_backfill_policies(
            asset_partitions=[AssetKeyPartitionKey(a, k) for a in asset_keys for k in keys],
            asset_graph=graph,
            dynamic_partitions_store=instance,
        )
    assert sorted(r.partition_key for r in requests) == keys
    for request in requests:
        assert set(request.asset_selection) == asset_keys
        scenario, year = request.partition_key.split("|")
        assert request.tags["dagster/partition"] == request.partition_key
        assert request.tags["dagster/partition/year"] == year
        assert request.tags["dagster/partition/scenario"] == scenario
        assert not any(t.startswith("dagster/asset_partition_range") for t in request.tags)
