"""S3: NB2 / Poisson counts of every (series, bucket) around μ = λ × factor; rows with N > 0.

A window is sampled in chunks of whole merchants (memory bounded by the chunk, not the
partition); each cell draws from its own series stream at its absolute bucket, so the
rows of a merchant are the same whichever chunk or shard computes them.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine_core import schemas
from engine_core.context import RunContext, Shard, Window
from engine_core.errors import EngineError
from engine_core.io.memory import release_memory
from engine_core.io.publish import write_json_atomic
from engine_core.io.store import PARQUET_OPTS, TOTALS, DatasetStore
from engine_core.kernels.counts import bucket_counts
from engine_core.kernels.parallel import side_pool
from engine_core.pipeline.columns import dict_array, ts_array
from engine_core.pipeline.jit import warm_up_kernels
from engine_core.pipeline.progress import ProgressReporter, peak_rss_mb
from engine_core.pipeline.s2_latent import read_factors
from engine_core.pipeline.types import ProgressCallback, StateResult
from engine_core.timebase import US_PER_S

CELLS_PER_CHUNK = 4_000_000
ROW_GROUP = 1 << 20


def series_groups(ctx: RunContext, store: DatasetStore, year: int, gids: list[str]
                  ) -> np.ndarray:
    """Series → row of the published S2 factors, via the published S1 grouping."""
    m = ctx.arrays
    t = store.read_dataset("grouping", year, ["merchant_id", "group_id"])
    if t.num_rows != m.n_series or not np.array_equal(
        t.column("merchant_id").to_numpy(), m.merchant_id
    ):
        raise EngineError(
            "DOMAIN_ALIGN_FAILED",
            "published grouping does not match the world's series; re-run S1",
            table="grouping", key=f"{ctx.scenario}|{year}",
        )
    index = {g: i for i, g in enumerate(gids)}
    out = np.empty(t.num_rows, dtype=np.int64)
    for i, g in enumerate(t.column("group_id").to_pylist()):
        if g not in index:
            raise EngineError("DOMAIN_ALIGN_FAILED", "group has no latent factors",
                              table="latent_intensity", column="group_id", key=g)
        out[i] = index[g]
    return out


def _check_grid(ctx: RunContext, store: DatasetStore, w: Window) -> None:
    grid_b = store.read_dataset("time_grid", w.year, ["bucket_abs"]).column("bucket_abs")
    grid_b = grid_b.to_numpy()
    if len(grid_b) != w.n_buckets or (len(grid_b) and grid_b[0] != w.first_bucket):
        raise EngineError("DOMAIN_ALIGN_FAILED", "time grid does not match the horizon",
                          table="time_grid", key=f"{ctx.scenario}|{w.year}")


def _sample_window(ctx: RunContext, store: DatasetStore, w: Window, keys: np.ndarray,
                   shard: Shard | None, path: str, rep: ProgressReporter, done: list[int]
                   ) -> dict[str, Any]:
    """Sample the window's cells of the shard's series into one Parquet file; its totals."""
    m = ctx.arrays
    cnt = ctx.policy.counts
    _check_grid(ctx, store, w)
    gids, factor = read_factors(ctx, store, w.year)
    group_of_series = series_groups(ctx, store, w.year, gids)
    kappa = ctx.grouping.kappa
    day_mult, first_day = ctx.day_multipliers(w)
    lo_s, hi_s = ctx.series_range(shard)
    totals = {"series": hi_s - lo_s, "buckets": w.n_buckets, "cells_sampled": 0,
              "blocks": 0, "rows": 0, "sum_count": 0, "sum_mu": 0.0, "capped": 0,
              "sum_mu_all": 0.0}
    def emit(lo: int, mu: np.ndarray, counts: np.ndarray, capped: np.ndarray) -> tuple:
        """Write one chunk's rows (N > 0, in merchant, bucket, series order); its sums."""
        si, bj = np.nonzero(counts)
        order = np.lexsort((si, bj, m.merchant_id[lo : lo + counts.shape[0]][si]))
        si = si[order]
        bj = bj[order]
        gs = si + lo
        c = counts[si, bj]
        tbl = pa.table(
            {
                "merchant_id": pa.array(m.merchant_id[gs], pa.uint64()),
                "legal_country_iso": dict_array(m.country_idx[gs], m.countries),
                "zone_tzid": dict_array(m.zone_idx[gs], m.tzids),
                "channel_group": dict_array(m.channel_idx[gs], m.channels),
                "bucket_start_utc": ts_array((bj + w.first_bucket) * w.bucket_seconds * US_PER_S),
                "mu": pa.array(mu[si, bj], pa.float64()),
                "count": pa.array(c, pa.int64()),
                "capped": pa.array(capped[si, bj], pa.bool_()),
            },
            schema=schemas.BUCKET_COUNTS,
        )
        writer.write_table(tbl, row_group_size=ROW_GROUP)
        return (int(len(c)), int(c.sum()), float(mu[si, bj].sum()), float(mu.sum()),
                int(capped.sum()))

    def add(sums: tuple) -> None:
        for key, v in zip(("rows", "sum_count", "sum_mu", "sum_mu_all", "capped"), sums,
                          strict=True):
            totals[key] += v

    # a chunk's rows are sorted and written by a thread of its own while the next chunk is
    # sampled; chunks are written, and their sums added, in order (the same bytes and sums)
    with (pq.ParquetWriter(path, schemas.BUCKET_COUNTS, **PARQUET_OPTS) as writer,
          side_pool(1, "s3-writer") as pool):
        pending = None
        for lo, hi in ctx.series_chunks(CELLS_PER_CHUNK, w.n_buckets, shard):
            lam = ctx.lambda_chunk(w, lo, hi, day_mult, first_day)
            n = hi - lo
            mu = np.empty_like(lam)
            counts = np.empty(lam.shape, dtype=np.int64)
            capped = np.empty(lam.shape, dtype=np.bool_)
            blocks = np.empty(n, dtype=np.int64)
            bucket_counts(lam, factor, group_of_series[lo:hi], keys[lo:hi], kappa[lo:hi],
                          w.first_bucket, cnt.lambda_max, cnt.mu_epsilon,
                          cnt.law == "poisson", cnt.max_count_per_bucket, mu, counts, capped,
                          blocks)
            del lam
            if pending is not None:
                add(pending.result())
            pending = pool.submit(emit, lo, mu, counts, capped)
            totals["cells_sampled"] += int(n * w.n_buckets)
            totals["blocks"] += int(blocks.sum())
            done[0] += n
            rep.update(done[0])
        if pending is not None:
            add(pending.result())
    return totals


def merge_totals(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The totals of a partition from its shards' totals (in merchant order): counts add,
    the window's bucket count is shared."""
    out: dict[str, Any] = {k: (0.0 if isinstance(v, float) else 0) for k, v in parts[0].items()}
    for part in parts:
        for k, v in part.items():
            out[k] += v
    out["buckets"] = parts[0]["buckets"]
    return out


def run(ctx: RunContext, store: DatasetStore, progress: ProgressCallback | None = None,
        shard: Shard | None = None) -> StateResult:
    """Publish the counts of every window; over a shard, write the shard's rows (and its
    totals) into the shard's directory instead."""
    jit_s = warm_up_kernels()
    t0 = time.perf_counter()
    keys = ctx.arrays.series_keys("S3.count.v1", ctx.policy.namespace, ctx.seed)
    lo_s, hi_s = ctx.series_range(shard)
    paths: list[str] = []
    rows_total = 0
    events_total = 0
    rep = ProgressReporter(progress, "s3", (hi_s - lo_s) * len(ctx.windows), "series")
    done = [0]
    for w in ctx.windows:
        if shard is None:
            store.withdraw_passed_flag(w.year)
            with store.publishing("bucket_counts", w.year) as stage:
                totals = _sample_window(ctx, store, w, keys, None,
                                        os.path.join(stage, "part-00000.parquet"), rep, done)
                write_json_atomic(os.path.join(stage, TOTALS), totals)
            paths.append(f"{store.dataset_path('bucket_counts', w.year)}/part-00000.parquet")
        else:
            stage = store.shard_dir("bucket_counts", w.year, shard.name)
            paths.append(os.path.join(stage, "part-00000.parquet"))
            totals = _sample_window(ctx, store, w, keys, shard, paths[-1], rep, done)
            write_json_atomic(os.path.join(stage, TOTALS), totals)
        rows_total += totals["rows"]
        events_total += totals["sum_count"]
    release_memory()
    rep.finish()
    return StateResult(
        jit_compile_s=jit_s,
        state="s3", rows=rows_total, events=events_total,
        elapsed_s=time.perf_counter() - t0,
        output_bytes=(store.file_bytes(paths) if shard is None
                      else int(sum(os.path.getsize(p) for p in paths))),
        paths=paths,
        metrics={"peak_rss_mb": peak_rss_mb(), "expected_events": None},
    )
