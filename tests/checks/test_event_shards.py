"""The pieces of the S4 rules' shards (engine_core/checks/event_shards.py), without a state:
the world seen from a shard, the id classes on disk, the merge of examples, and a shard's
pass over rows that are not all its own."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine_core.checks.event_scan import duplicate_ids
from engine_core.checks.event_shards import (
    ID_MAX,
    RankedOffences,
    ShardIds,
    ShardIndex,
    drop_ids,
    merged_offences,
    plan_s4_rules,
    read_id_class,
    rule_shards,
)
from engine_core.checks.rules_s4 import s4_rules
from engine_core.checks.world_index import WorldIndex
from engine_core.context import Shard
from tests.checks.conftest import YEAR, col, only


def test_shards_own_every_merchant_id_once(ctx, law, store_of):
    store = store_of(law)
    plan = plan_s4_rules(ctx, store, YEAR, [Shard(0, 7), Shard(7, 12), Shard(12, 20)])
    drop_ids(store, plan)
    ids = ctx.merchant_ids
    assert plan.shards[0].id_lo == 0 and plan.shards[-1].id_hi == ID_MAX
    for a, b in zip(plan.shards, plan.shards[1:], strict=False):
        assert a.id_hi + 1 == b.id_lo == int(ids[b.lo])
    # the S3 rows before each shard, for the re-derivation sample's positions
    mid = col(law.tables["bucket_counts"], "merchant_id")
    for s in plan.shards:
        assert s.s3_rows == int(np.count_nonzero((mid >= s.id_lo) & (mid <= s.id_hi)))
    assert [s.s3_before for s in plan.shards] == [0, plan.shards[0].s3_rows,
                                                   plan.shards[0].s3_rows + plan.shards[1].s3_rows]
    assert len(rule_shards(ctx, YEAR, at_least=3)) == 3


def test_a_shard_index_names_the_worlds_series_sites_and_edges(ctx):
    world = WorldIndex(ctx)
    ids = ctx.merchant_ids
    seen = []
    for lo, hi in ((0, 7), (7, 20)):
        id_hi = int(ids[hi]) - 1 if hi < len(ids) else ID_MAX
        idx = ShardIndex(world, 0 if lo == 0 else int(ids[lo]), id_hi)
        seen += list(range(idx.s_lo, idx.s_lo + idx.n_series))
        # every local series key leads to the world series it stands for
        slots, _ = idx.series_table
        tv = slots[1::2]  # (key, value) slots side by side
        local = tv[tv >= 0]
        assert sorted(local.tolist()) == list(range(idx.n_series))
        mids = world.model.merchant_id[idx.s_lo : idx.s_lo + idx.n_series]
        assert np.all((mids >= ids[lo]) & (mids <= ids[hi - 1]))
        sites = world.site_merchant[idx.site_lo : idx.site_lo + idx.n_sites]
        assert np.array_equal(idx.site_merchant, sites - idx.m_lo)
        assert np.all((idx.site_merchant >= 0) & (idx.site_merchant < len(idx.m_ids)))
        edges = world.edge_merchant[idx.edge_lo : idx.edge_lo + idx.n_edges]
        assert np.array_equal(idx.edge_merchant, edges - idx.m_lo)
        assert np.all((idx.edge_merchant >= 0) & (idx.edge_merchant < len(idx.m_ids)))
    assert seen == list(range(ctx.arrays.n_series))


def test_id_classes_hold_each_shards_ids_by_class_in_shard_order(ctx, law, store_of):
    store = store_of(law)
    plan = plan_s4_rules(ctx, store, YEAR, [Shard(0, 20)])
    plan = type(plan)(**{**plan.__dict__, "id_classes": 4})
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 2**63, 1000, dtype=np.uint64), rng.integers(0, 2**63, 500,
                                                                        dtype=np.uint64)
    dirs = []
    for name, ids in (("one", a), ("two", b)):
        w = ShardIds(store, plan, name)
        w.add(ids[:300])
        w.add(ids[300:])
        dirs.append(w.finish())
    try:
        for p in range(4):
            got = read_id_class(store, plan, dirs, p)
            want = np.concatenate([a[(a & np.uint64(3)) == p], b[(b & np.uint64(3)) == p]])
            assert np.array_equal(got, want)
    finally:
        drop_ids(store, plan)


def test_a_failed_id_write_fails_the_shard_and_leaves_nothing(ctx, law, store_of):
    # the ids are written by a thread of their own: its failure reaches the scan
    store = store_of(law)
    plan = plan_s4_rules(ctx, store, YEAR, [Shard(0, 20)])
    plan = type(plan)(**{**plan.__dict__, "id_classes": 4})
    w = ShardIds(store, plan, "full")

    class Full:
        def write(self, _data):
            raise OSError(28, "No space left on device")

        def close(self):
            pass

    w._files[2] = Full()
    ids = np.arange(1000, dtype=np.uint64)
    with pytest.raises(OSError, match="No space left"):
        for _ in range(50):  # the failure is told at a later add or at finish
            w.add(ids)
        w.finish()
    w.close()
    assert not w._writer.is_alive()
    drop_ids(store, plan)


def test_merged_examples_are_the_first_in_partition_order():
    x, y = RankedOffences(), RankedOffences()
    x.add(3, [((1, 10), "row 10"), ((1, 12), "row 12"), ((2, 5), "cell 5")])
    y.add(4, [((0, 1, 0), "s3 row"), ((1, 11), "row 11"), ((1, 99), "row 99"),
              ((3, 0), "totals"), ((1, 100), "row 100"), ((1, 101), "dropped")])
    assert len(y.examples) == 5
    assert merged_offences([x, y]) == (7, ["s3 row", "row 10", "row 11", "row 12", "row 99"])


def test_a_shard_judges_only_its_own_rows_of_a_shared_file(ctx, law, store_of):
    # one file holds every merchant: each of 4 shards reads it and keeps its own rows
    store = store_of(law)
    one = s4_rules(ctx, store, YEAR, shards=1)
    four = s4_rules(ctx, store, YEAR, shards=4)
    assert [r.to_dict() for r in one] == [r.to_dict() for r in four]
    assert only(four, "EVENTS_SEQ").figures["merchants"] == len(ctx.merchant_ids)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 5000),
    dups=st.integers(0, 50),
    bits=st.integers(1, 14),
    chunks=st.integers(1, 9),
    seed=st.integers(0, 2**32 - 1),
)
def test_duplicate_ids_counts_repeats_for_any_bucketing(n, dups, bits, chunks, seed):
    """The id classes' check counts every id equal to an earlier one, whatever the number of
    buckets it scatters into and the chunks it works in; the examples it reports are distinct
    duplicated ids (no unfilled slot, also when two repeated ids share a bucket). Ids
    drawn from a small range repeat on their own; ``dups`` more are copied over others; 0
    (the hash sets' empty mark) is among the values."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, max(1, n // 2), size=n, dtype=np.uint64) << np.uint64(40)
    if n and dups:
        ids[rng.integers(0, n, size=dups)] = ids[rng.integers(0, n, size=dups)]
    ids.setflags(write=False)
    examples = np.zeros(8, dtype=np.uint64)
    found, m = duplicate_ids(ids, examples, chunks, None, bits)
    assert found == n - len(np.unique(ids))
    values, counts = np.unique(ids, return_counts=True)
    repeated = set(values[counts > 1].tolist())
    shown = examples[:m].tolist()
    assert len(set(shown)) == len(shown) and set(shown) <= repeated
    assert (m > 0) == (found > 0) and m <= min(found, len(examples))
