"""S1: the time grid of each year window and the latent grouping of every series (no RNG)."""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine_core import schemas
from engine_core.context import RunContext, Shard
from engine_core.io.store import PARQUET_OPTS, DatasetStore
from engine_core.pipeline.columns import dict_array, ts_array
from engine_core.pipeline.progress import ProgressReporter, peak_rss_mb
from engine_core.pipeline.types import ProgressCallback, StateResult
from engine_core.timebase import US_PER_S


def time_grid(first_bucket: int, n_buckets: int, bucket_seconds: int) -> pa.Table:
    b = np.arange(first_bucket, first_bucket + n_buckets, dtype=np.int64)
    return pa.table(
        {
            "bucket_index": pa.array(b - first_bucket, pa.int64()),
            "bucket_abs": pa.array(b, pa.int64()),
            "bucket_start_utc": ts_array(b * bucket_seconds * US_PER_S),
            "bucket_end_utc": ts_array((b + 1) * bucket_seconds * US_PER_S),
            "duration_s": pa.array(np.full(n_buckets, bucket_seconds), pa.int64()),
        },
        schema=schemas.TIME_GRID,
    )


def grouping_table(ctx: RunContext, lo: int, hi: int) -> pa.Table:
    """The grouping rows of series ``lo..hi``."""
    m = ctx.arrays
    g = ctx.grouping
    gid = np.asarray(g.series_group)[lo:hi]
    return pa.table(
        {
            "merchant_id": pa.array(m.merchant_id[lo:hi], pa.uint64()),
            "legal_country_iso": dict_array(m.country_idx[lo:hi], m.countries),
            "zone_tzid": dict_array(m.zone_idx[lo:hi], m.tzids),
            "channel_group": dict_array(m.channel_idx[lo:hi], m.channels),
            "demand_class": pa.array(m.demand_class[lo:hi]).dictionary_encode(),
            "virtual_band": pa.array(g.vband[lo:hi]).dictionary_encode(),
            "zone_group": pa.array(g.zone_group[lo:hi], pa.int32()),
            "hash_bucket": pa.array(g.hash_bucket[lo:hi], pa.int32()),
            "group_id": pa.array([g.group_ids[i] for i in gid], pa.string()),
            "sigma": pa.array(g.sigma[gid], pa.float64()),
            "length_scale": pa.array(g.length_scale[gid], pa.float64()),
            "kappa": pa.array(g.kappa[lo:hi], pa.float64()),
        },
        schema=schemas.GROUPING,
    )


def run(ctx: RunContext, store: DatasetStore, progress: ProgressCallback | None = None,
        shard: Shard | None = None) -> StateResult:
    """Publish the grid and the grouping of every window. Over a shard: the grouping rows
    of the shard's merchants only, into the shard's directory (the grid is not per
    merchant and is left to the whole run)."""
    t0 = time.perf_counter()
    lo, hi = ctx.series_range(shard)
    paths: list[str] = []
    rows = 0
    rep = ProgressReporter(progress, "s1", len(ctx.windows), "partitions")
    for k, w in enumerate(ctx.windows):
        grouping = grouping_table(ctx, lo, hi)
        if shard is None:
            store.withdraw_passed_flag(w.year)
            grid = time_grid(w.first_bucket, w.n_buckets, w.bucket_seconds)
            paths += store.publish_table("time_grid", w.year, grid)
            paths += store.publish_table("grouping", w.year, grouping)
            rows += grid.num_rows
        else:
            path = os.path.join(store.shard_dir("grouping", w.year, shard.name),
                                "part-00000.parquet")
            pq.write_table(grouping, path, **PARQUET_OPTS)
            paths.append(path)
            rows += grouping.num_rows
        rep.update(k + 1)
    rep.finish()
    return StateResult(
        state="s1", rows=rows, elapsed_s=time.perf_counter() - t0,
        output_bytes=store.file_bytes(paths) if shard is None else _local_bytes(paths),
        paths=paths,
        metrics={"series": hi - lo, "groups": len(ctx.grouping.group_ids),
                 "peak_rss_mb": peak_rss_mb()},
    )


def _local_bytes(paths: list[str]) -> int:
    return int(sum(os.path.getsize(p) for p in paths))
