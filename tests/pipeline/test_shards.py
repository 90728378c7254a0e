"""A state run over merchant shards produces exactly the whole run's rows for those merchants.

Every draw is keyed by series and absolute bucket, so cutting the merchants into shards may
change how the work is split, never a row. Three shards of S1 (grouping), S3 and S4, read in
shard order, equal the unsharded partitions row for row, every column.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine_core.pipeline import Run, RunConfig, Shard
from tests.conftest import utc

YEAR = 2026


def _plain(t: pa.Table) -> pa.Table:
    """Dictionary columns decoded: shards and the whole run may number a dictionary apart."""
    return pa.table({f.name: (t.column(f.name).cast(f.type.value_type)
                              if pa.types.is_dictionary(f.type) else t.column(f.name))
                     for f in t.schema})


def _read(paths: list[str]) -> pa.Table:
    return _plain(pa.concat_tables([pq.read_table(p) for p in sorted(paths)]))


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shards") / "data")
    run = Run.open(RunConfig(world="tiny", scenario="baseline", start=utc(YEAR, 3),
                             end=utc(YEAR, 4), storage_root=root, seed=42))
    for state in ("world", "s1", "s2", "s3", "s4"):
        run.state(state)
    return run


def _three_shards(run: Run) -> list[Shard]:
    n = len(run.ctx.merchant_ids)
    cuts = [0, n // 3, 2 * n // 3, n]
    return [Shard(a, b) for a, b in zip(cuts, cuts[1:], strict=False)]


@pytest.mark.parametrize("state,dataset", [("s1", "grouping"), ("s3", "bucket_counts"),
                                           ("s4", "arrival_events")])
def test_three_shards_concatenated_equal_the_whole_run(whole, state, dataset):
    shards = _three_shards(whole)
    assert all(s.hi > s.lo for s in shards)
    parts = []
    for shard in shards:
        res = whole.state(state, shard=shard)
        assert res.paths and all(os.path.isfile(p) for p in res.paths)
        # nothing of a shard lands in the published partition
        assert not any(p.startswith(whole.store.dataset_path(dataset, YEAR)) for p in res.paths)
        got = _read(res.paths)
        mids = got.column("merchant_id").to_numpy()
        ids = whole.ctx.merchant_ids
        assert np.all((mids >= ids[shard.lo]) & (mids <= ids[shard.hi - 1]))
        parts.append(got)
    sharded = pa.concat_tables(parts)
    expected = _read(glob.glob(os.path.join(whole.store.dataset_path(dataset, YEAR),
                                            "*.parquet")))
    assert sharded.num_rows == expected.num_rows > 0
    assert sharded.schema == expected.schema
    for name in expected.column_names:
        assert sharded.column(name).equals(expected.column(name)), f"column {name} differs"


def test_shard_totals_add_up_to_the_whole(whole):
    want = whole.store.read_totals("bucket_counts", YEAR)
    got = {"rows": 0, "sum_count": 0, "cells_sampled": 0, "blocks": 0}
    for shard in _three_shards(whole):
        res = whole.state("s3", shard=shard)
        with open(os.path.join(os.path.dirname(res.paths[0]), "_totals.json")) as fh:
            t = json.load(fh)
        for k in got:
            got[k] += t[k]
    assert got == {k: want[k] for k in got}


def test_states_without_a_merchant_cut_refuse_a_shard(whole):
    for state in ("world", "s2", "s5"):
        with pytest.raises(ValueError, match="shard"):
            whole.state(state, shard=Shard(0, 1))
