"""A Dagster materialisation whose engine resource names the cluster: S3 and S4 of the
partition run as merchant shards on the workers, every asset check passes."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from engine_assets.definitions import ENGINE_ASSETS
from engine_assets.partitions import EnginePartition
from engine_assets.resources import AlertSettings, EngineSettings, EngineStorage

pytestmark = pytest.mark.timeout(900)


def test_materialisation_on_the_cluster(make_cluster, tmp_path):
    cluster = make_cluster(workers=2)
    root = tmp_path / "data"
    partition = EnginePartition(year=2026, scenario="baseline")
    resources = {
        "storage": EngineStorage(root=str(root)),
        "engine": EngineSettings(world="tiny", seed=42, scheduler=cluster.scheduler_file,
                                 shards=2),
        "alerts": AlertSettings(log_path=str(tmp_path / "alerts.jsonl")),
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(ENGINE_ASSETS, partition_key=partition.key,
                                resources=resources, instance=instance, raise_on_error=False)
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks), [c.check_name for c in checks
                                                          if not c.passed]
        s4 = [m for m in result.get_asset_materialization_events()
              if m.asset_key.path[-1] == "s4_arrival_events"]
        assert s4
    for dataset in ("bucket_counts", "arrival_events"):
        found = [n for d, _, files in os.walk(root) if f"/{dataset}/" in d + "/"
                 for n in files if n.endswith(".parquet")]
        # the cluster's part names: part-<first merchant index>-<k>, one shard at 0000000
        assert any(n.startswith("part-0000000-") for n in found), found
        assert len({n.split("-")[1] for n in found}) == 2
