"""S3 and S4 on a real Dask cluster (a scheduler and ``dask worker`` processes on 127.0.0.1)
give the in-process partitions, and any number of workers the same bytes.

A partition computed in merchant shards is published only when every shard succeeded; read
in file-name order it equals the in-process partition, every column of every row, and S5
(run on the coordinator over the published partitions) passes every rule.
"""

from __future__ import annotations

import glob
import os

import pytest

from engine_core.cluster.coordinator import ClusterSettings, compute_state
from engine_core.cluster.tasks import compute_shard, run_identity
from engine_core.context import Shard
from engine_core.errors import EngineError
from engine_core.pipeline import Run, RunConfig
from tests.cluster.conftest import (
    DATASETS,
    YEAR,
    cli_run,
    decoded,
    digests,
    partition_files,
    summary_of,
)
from tests.conftest import utc

SHARDS = 3
pytestmark = pytest.mark.timeout(600)


def test_cluster_partitions_equal_in_process_and_any_worker_count(
        make_cluster, in_process, tmp_path):
    cluster = make_cluster(workers=1)
    one = str(tmp_path / "one-worker")
    # the scheduler from the environment (the two-worker run names it with --scheduler)
    done = cli_run(one, "--shards", str(SHARDS), scheduler_env=cluster.scheduler_file)
    assert done.returncode == 0, done.stderr[-3000:]
    s = summary_of(done)
    assert s["passed"] and not s["failed_rules"]
    assert s["states"]["s4"]["events"] > 0

    cluster.add_workers(1)
    two = str(tmp_path / "two-workers")
    # TLS required: a plain-TCP scheduler on loopback is still allowed
    done = cli_run(two, "--scheduler", cluster.address, "--shards", str(SHARDS),
                   "--require-tls")
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary_of(done)["passed"]

    for dataset in DATASETS:
        files = partition_files(one, dataset)
        # one part file (at least) per shard, named so that name order is merchant order
        assert len(files) >= SHARDS
        assert all(os.path.basename(f).startswith("part-") for f in files)
        # byte-identical whatever the number of workers
        assert digests(one, dataset) == digests(two, dataset)
        # the same rows as the in-process partition, in the same order
        got, want = decoded(files), decoded(partition_files(in_process, dataset))
        assert got.num_rows == want.num_rows > 0
        assert got.schema == want.schema
        for name in want.column_names:
            assert got.column(name).equals(want.column(name)), f"{dataset}.{name} differs"
    # no shard is left behind once published
    assert not glob.glob(os.path.join(one, "_shards", "*", "*", "*", "*", "*", "*", "*",
                                      "*.parquet"))


def test_worker_refuses_a_shard_of_another_identity(make_cluster, tmp_path):
    cluster = make_cluster(workers=1)
    config = RunConfig(world="tiny", scenario="baseline", start=utc(YEAR, 3), end=utc(YEAR, 4),
                       storage_root=str(tmp_path / "data"), threads=1)
    run = Run.open(config)
    for field in ("tzdata_version", "world_fingerprint", "parameter_hash", "engine_source"):
        identity = {**run_identity(run.ctx), field: "0" * 12}
        with cluster.client() as client:
            fut = client.submit(compute_shard, config, identity, "s3", Shard(0, 1), pure=False)
            with pytest.raises(EngineError) as err:
                fut.result(timeout=120)
        assert err.value.code == "CLUSTER_IDENTITY_MISMATCH"
        assert field in str(err.value)
    assert not os.path.exists(tmp_path / "data" / "_shards")


def test_unreachable_scheduler_is_a_coded_error(tmp_path):
    from tests.cluster.conftest import free_port

    run = Run.open(RunConfig(world="tiny", scenario="baseline", start=utc(YEAR, 3),
                             end=utc(YEAR, 4), storage_root=str(tmp_path / "data")))
    settings = ClusterSettings(f"tcp://127.0.0.1:{free_port()}", connect_timeout_s=2)
    with pytest.raises(EngineError) as err:
        compute_state(run, "s3", settings)
    assert err.value.code == "CLUSTER_UNAVAILABLE"
    missing = ClusterSettings(str(tmp_path / "nowhere.json"))
    with pytest.raises(EngineError) as err:
        compute_state(run, "s3", missing)
    assert err.value.code == "CLUSTER_UNAVAILABLE"
