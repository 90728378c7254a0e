"""Without a cluster: the shard plan (balanced, data-determined) and the publish of a
partition from shards (all or nothing, name order = merchant order, totals merged)."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine_core.cluster.plan import balanced_shards
from engine_core.context import Shard
from engine_core.errors import EngineError
from engine_core.io.store import TOTALS, DatasetStore
from engine_core.pipeline import s3_counts


def test_shards_are_contiguous_cover_every_merchant_and_balance_the_work():
    rng = np.random.default_rng(7)
    work = rng.pareto(1.2, 500) + 0.01
    for n in (1, 2, 3, 7, 40):
        shards = balanced_shards(work, n)
        assert shards[0].lo == 0 and shards[-1].hi == len(work)
        assert all(a.hi == b.lo for a, b in zip(shards, shards[1:], strict=False))
        assert all(s.hi > s.lo for s in shards)
        assert len(shards) <= n
        share = [work[s.lo:s.hi].sum() / work.sum() for s in shards]
        # a shard overshoots its share by at most its last merchant
        assert max(share) <= 1 / n + work.max() / work.sum() + 1e-12
    assert balanced_shards(work, 3) == balanced_shards(work.copy(), 3)  # data only
    assert balanced_shards(np.zeros(10), 4)[-1].hi == 10
    assert balanced_shards(np.ones(3), 10) == [Shard(0, 1), Shard(1, 2), Shard(2, 3)]
    assert balanced_shards(np.array([]), 4) == [Shard(0, 0)]


def _store(tmp_path) -> DatasetStore:
    return DatasetStore.open(str(tmp_path / "data"), "a" * 64, "b" * 64, 42, "baseline")


def _write_shard(store: DatasetStore, shard: Shard, parts: int, totals: dict | None) -> None:
    d = store.shard_dir("bucket_counts", 2026, shard.name)
    for k in range(parts):
        pq.write_table(pa.table({"merchant_id": pa.array([shard.lo * 10 + k], pa.uint64())}),
                       os.path.join(d, f"part-{k:05d}.parquet"))
    if totals is not None:
        with open(os.path.join(d, TOTALS), "w") as fh:
            json.dump(totals, fh)


def _totals(rows: int) -> dict:
    return {"series": 1, "buckets": 24, "cells_sampled": 24, "blocks": 3, "rows": rows,
            "sum_count": rows, "sum_mu": 0.5 * rows, "capped": 0, "sum_mu_all": 1.0}


def test_publish_shards_is_all_or_nothing_and_name_order_is_merchant_order(tmp_path):
    store = _store(tmp_path)
    shards = [Shard(0, 3, "r-1"), Shard(3, 12, "r-2"), Shard(12, 20, "r-3")]
    _write_shard(store, shards[0], 1, _totals(1))
    _write_shard(store, shards[1], 2, _totals(2))
    _write_shard(store, shards[2], 1, None)  # still running, or died: no totals yet
    with pytest.raises(EngineError) as err:
        store.publish_shards("bucket_counts", 2026, shards, s3_counts.merge_totals)
    assert err.value.code == "SHARD_INCOMPLETE" and shards[2].name in str(err.value)
    assert not store.is_published("bucket_counts", 2026)

    _write_shard(store, shards[2], 1, _totals(3))
    paths = store.publish_shards("bucket_counts", 2026, list(reversed(shards)),
                                 s3_counts.merge_totals)
    names = [os.path.basename(p) for p in paths]
    assert names == ["part-0000000-00000.parquet", "part-0000003-00000.parquet",
                     "part-0000003-00001.parquet", "part-0000012-00000.parquet"]
    assert store.dataset_files("bucket_counts", 2026) == sorted(paths)
    mids = store.read_dataset("bucket_counts", 2026).column("merchant_id").to_pylist()
    assert mids == [0, 30, 31, 120]
    totals = store.read_totals("bucket_counts", 2026)
    assert totals["rows"] == 6 and totals["buckets"] == 24 and totals["sum_mu"] == 3.0
    assert not any(os.path.exists(store.shard_path("bucket_counts", 2026, s.name))
                   for s in shards)


def test_shard_attempt_names_a_directory_of_its_own():
    assert Shard(0, 5).name == "m0000000-0000005"
    assert Shard(0, 5, "ab12-cd34").name == "m0000000-0000005.ab12-cd34"
    with pytest.raises(ValueError):
        Shard(0, 5, "../x")


def test_sweep_keeps_live_leases_and_recent_unleased_entries(tmp_path):
    """The sweep of a partition's shard area by run ``new``: a run with a live lease is kept,
    an expired or unreadable lease takes its run's entries with it, an entry no lease names
    goes only once nothing in it changed for STALE_SHARDS_S."""
    from engine_core.io.store import STALE_SHARDS_S

    store = _store(tmp_path)
    now = 1_000_000_000.0
    for tag in ("live", "dead", "junk", "orphan", "new"):
        _write_shard(store, Shard(0, 3, f"{tag}-aaaa"), 1, _totals(1))
    store.write_shard_lease("bucket_counts", 2026, "live", now + 60)
    store.write_shard_lease("bucket_counts", 2026, "dead", now - 1)
    with open(store.lease_path("bucket_counts", 2026, "junk"), "w") as fh:
        fh.write("{not json")
    old = Shard(0, 3, "orphan-aaaa")
    for dirpath, _dirs, files in os.walk(store.shard_path("bucket_counts", 2026, old.name)):
        for p in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
            os.utime(p, (now - STALE_SHARDS_S - 5, now - STALE_SHARDS_S - 5))
    names = lambda: sorted(os.listdir(store.shard_area("bucket_counts", 2026)))  # noqa: E731
    removed = store.sweep_stale_shards("bucket_counts", 2026, keep="new", now=now)
    assert sorted(removed) == sorted(["m0000000-0000003.dead-aaaa", "_lease.dead.json",
                                      "m0000000-0000003.junk-aaaa", "_lease.junk.json",
                                      "m0000000-0000003.orphan-aaaa"])
    assert names() == ["_lease.live.json", "m0000000-0000003.live-aaaa",
                       "m0000000-0000003.new-aaaa"]
    # an unleased entry that changed recently is kept (its run may not have leased yet)
    assert store.sweep_stale_shards("bucket_counts", 2026, keep="x", now=now) == []
    assert store.drop_run_shards("bucket_counts", 2026, "live") == 2
    assert store.drop_run_shards("bucket_counts", 2026, "new") == 1
    assert not os.path.exists(tmp_path / "data" / "_shards")  # the empty area pruned


def test_a_lease_that_cannot_be_written_fails_coded_before_any_shard(tmp_path):
    """No cluster needed: the run's claim on its shard areas is taken before anything is
    submitted, and a storage root where it cannot be written fails the state with
    STORAGE_WRITE_FAILED."""
    from engine_core.cluster.coordinator import shard_areas
    from engine_core.pipeline import Run, RunConfig
    from tests.conftest import utc

    root = tmp_path / "data"
    run = Run.open(RunConfig(world="tiny", scenario="baseline", start=utc(2026, 3),
                             end=utc(2026, 4), storage_root=str(root)))
    root.mkdir()
    (root / "_shards").write_text("not a directory")
    entered = False
    with pytest.raises(EngineError) as err, shard_areas(run, "bucket_counts", "abcd1234"):
        entered = True
    assert err.value.code == "STORAGE_WRITE_FAILED" and not entered
    (root / "_shards").unlink()
    with shard_areas(run, "bucket_counts", "abcd1234"):
        area = run.store.shard_area("bucket_counts", 2026)
        assert os.listdir(area) == ["_lease.abcd1234.json"]
    assert not (root / "_shards").exists()
