"""The S4 rules on a real Dask cluster: each merchant shard's pass runs on a worker (its
partial names the worker's pid), the id classes are checked by tasks on the workers, the
coordinator merges and records the verdicts, and those verdicts are the in-process ones;
``Run.check("s4")`` then takes them without reading the partition."""

from __future__ import annotations

import glob
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import FileSelector

from engine_core.checks import evaluate, memo, rules_s4
from engine_core.checks.event_shards import drop_ids, plan_s4_rules, rule_shards
from engine_core.cluster.coordinator import ClusterSettings, compute_state, worker_config
from engine_core.cluster.rules import check_s4_on_cluster
from engine_core.pipeline import Run, RunConfig
from tests.cluster.conftest import YEAR
from tests.conftest import utc
from tests.ops.test_object_storage import BUCKET, CREDENTIALS, s3_server  # noqa: F401

pytestmark = pytest.mark.timeout(600)
SHARDS = 3


def test_s4_rules_run_on_the_workers_and_equal_the_in_process_verdicts(
        make_cluster, tmp_path, monkeypatch):
    cluster = make_cluster(workers=2)
    root = str(tmp_path / "data")
    run = Run.open(RunConfig(world="tiny", scenario="baseline", start=utc(YEAR, 3),
                             end=utc(YEAR, 4), storage_root=root, threads=1))
    run.state("s1")
    run.state("s2")
    settings = ClusterSettings(cluster.scheduler_file, shards=SHARDS)
    with cluster.client() as client:
        worker_pids = set(client.run(os.getpid).values())
        compute_state(run, "s3", settings, client)
        res = compute_state(run, "s4", settings, client)
        m = res.metrics
        assert m["rules_on_cluster"], m.get("rules_error")
        assert m["rules_shards"] == SHARDS and m["rules_failed"] == []  # S4's own shards
        # the shards' passes ran in the worker processes, not here
        pids = {int(w.rsplit(":", 1)[1]) for w in m["rules_workers"]}
        assert pids and pids <= worker_pids and os.getpid() not in pids

        recorded = memo.recall(run.ctx, run.store, "s4", YEAR)
        assert recorded is not None
        fresh = evaluate(run.ctx, run.store, "s4", YEAR)
        assert [r.to_dict() for r in recorded] == [r.to_dict() for r in fresh]
        assert all(r.passed for r in fresh)

        # Run.check takes the recorded verdicts: the partition is not judged again here
        def not_here(*args, **kwargs):
            raise AssertionError("the S4 rules ran in process")

        with monkeypatch.context() as mp:
            mp.setattr(rules_s4, "sharded_rules", not_here)
            assert [r.to_dict() for r in run.check("s4", YEAR)] == [
                r.to_dict() for r in recorded]
        # the id classes are gone from the shard area
        assert not glob.glob(os.path.join(root, "_shards", "*", "*", "*", "arrival_ids", "*",
                                          "*", "*"))

        # a duplicate id in two shards' rows, judged on the cluster
        files = run.store.dataset_files("arrival_events", YEAR)
        first, last = pq.read_table(files[0]), pq.read_table(files[-1])
        shards = rule_shards(run.ctx, YEAR, SHARDS)
        plan = plan_s4_rules(run.ctx, run.store, YEAR, shards)
        drop_ids(run.store, plan)
        mid = last.column("merchant_id").to_numpy()
        assert mid[-1] >= plan.shards[-1].id_lo > first.column("merchant_id").to_numpy()[0]
        aid = last.column("arrival_id").to_numpy().copy()
        aid[-1] = first.column("arrival_id")[0].as_py()
        pq.write_table(last.set_column(0, last.schema.field(0), pa.array(aid, pa.uint64())),
                       files[-1])
        m = check_s4_on_cluster(run, worker_config(run, settings), client, 300, shards)
        assert m["rules_on_cluster"], m.get("rules_error")
        assert m["rules_failed"] == [f"EVENTS_ID_UNIQUE|{YEAR}"]
    r = next(r for r in memo.recall(run.ctx, run.store, "s4", YEAR)
             if r.code == "EVENTS_ID_UNIQUE")
    assert not r.passed and r.figures["duplicates"] == 1
    assert r.examples == (f"arrival_id={int(aid[-1])}; appears more than once",)
    assert np.uint64(aid[-1]) == first.column("arrival_id").to_numpy()[0]


def test_s4_rules_on_the_cluster_with_an_object_store_root(
        make_cluster, s3_server, monkeypatch):  # noqa: F811
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server.endpoint}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cluster = make_cluster(workers=2, env=env)
    run = Run.open(RunConfig(world="tiny", scenario="baseline", start=utc(YEAR, 3),
                             end=utc(YEAR, 3, 8), storage_root=f"s3://{BUCKET}/rules",
                             threads=1))
    run.state("s1")
    run.state("s2")
    settings = ClusterSettings(cluster.scheduler_file, shards=SHARDS)
    with cluster.client() as client:
        compute_state(run, "s3", settings, client)
        m = compute_state(run, "s4", settings, client).metrics
    assert m["rules_on_cluster"], m.get("rules_error")
    assert m["rules_failed"] == []
    recorded = memo.recall(run.ctx, run.store, "s4", YEAR)
    assert [r.to_dict() for r in recorded] == [
        r.to_dict() for r in evaluate(run.ctx, run.store, "s4", YEAR)]
    # the id classes went through the bucket's shard area and are gone
    left = s3_server.filesystem().get_file_info(FileSelector(
        f"{BUCKET}/rules/_shards", recursive=True, allow_not_found=True))
    assert not [i for i in left if i.path.endswith(".u64")]
