"""Merchant shards balanced by expected work (the cut itself, ``balanced_shards``, lives in
engine_core/context.py beside ``Shard``: the S4 rules cut their shards with it too).

S3 samples every (series, bucket) cell, so its work is cells: series × buckets. S4 realises
events, so its work is the published S3 counts summed per merchant. Shards are contiguous
merchant ranges cut at equal shares of the cumulative work; the cut depends only on the data
and the number of shards, never on the cluster, so any cluster writes the same files.
"""

from __future__ import annotations

import math

import numpy as np

from engine_core.context import RunContext, Shard, balanced_shards
from engine_core.io.store import DatasetStore

__all__ = ["balanced_shards", "merchant_cells", "merchant_events", "plan_shards"]

# Work per shard when the caller does not fix the number of shards: a few seconds of one
# worker thread each, so a lost worker costs little and a cluster stays busy.
CELLS_PER_SHARD = 10_000_000
EVENTS_PER_SHARD = 5_000_000


def merchant_cells(ctx: RunContext) -> np.ndarray:
    """S3 work per merchant: its series × the horizon's buckets."""
    rank = np.searchsorted(ctx.merchant_ids, ctx.arrays.merchant_id)
    buckets = sum(w.n_buckets for w in ctx.windows)
    return np.bincount(rank, minlength=len(ctx.merchant_ids)).astype(np.float64) * buckets


def merchant_events(ctx: RunContext, store: DatasetStore) -> np.ndarray:
    """S4 work per merchant: its published S3 counts, read a row group at a time."""
    ids = ctx.merchant_ids
    out = np.zeros(len(ids), dtype=np.float64)
    for w in ctx.windows:
        for t in store.dataset_batches("bucket_counts", w.year, ["merchant_id", "count"]):
            rank = np.searchsorted(ids, t.column("merchant_id").to_numpy())
            out += np.bincount(rank, weights=t.column("count").to_numpy().astype(np.float64),
                               minlength=len(ids))
    return out


def plan_shards(ctx: RunContext, store: DatasetStore, state: str, n_shards: int | None = None
                ) -> list[Shard]:
    """The shards of ``state`` (s3 or s4); ``n_shards`` None = from the work's size."""
    if state == "s3":
        work, per = merchant_cells(ctx), CELLS_PER_SHARD
    elif state == "s4":
        work, per = merchant_events(ctx, store), EVENTS_PER_SHARD
    else:
        raise ValueError(f"state {state!r} has no merchant shards on a cluster (s3, s4)")
    if n_shards is None:
        n_shards = max(1, math.ceil(float(work.sum()) / per))
    return balanced_shards(work, n_shards)
