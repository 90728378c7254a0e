"""S2: the latent LGCP factor of every (group, bucket) — a partition-free AR(1) (docs/model.md)."""

from __future__ import annotations

import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine_core import schemas
from engine_core.context import RunContext, Shard, Window
from engine_core.errors import EngineError
from engine_core.io.store import PARQUET_OPTS, DatasetStore
from engine_core.kernels.jit import readonly
from engine_core.kernels.latent import latent_field
from engine_core.kernels.parallel import side_pool
from engine_core.pipeline.columns import dict_array, ts_array
from engine_core.pipeline.jit import warm_up_kernels
from engine_core.pipeline.progress import ProgressReporter, peak_rss_mb
from engine_core.pipeline.types import ProgressCallback, StateResult
from engine_core.rng.streams import group_stream, stream_keys
from engine_core.timebase import US_PER_S

# Parquet's default row group (what one write of the whole partition gives) and the rows
# computed at a time: a few row groups of whole groups.
ROW_GROUP = 1 << 20
ROWS_PER_CHUNK = 4 * ROW_GROUP


def published_groups(store: DatasetStore, year: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Distinct groups (sorted) with σ and L, as published by S1."""
    t = store.read_dataset("grouping", year, ["group_id", "sigma", "length_scale"])
    ids = t.column("group_id").to_pylist()
    sig = t.column("sigma").to_numpy()
    ls = t.column("length_scale").to_numpy()
    first: dict[str, int] = {}
    for i, gid in enumerate(ids):
        first.setdefault(gid, i)
    order = sorted(first)
    idx = np.array([first[gidx] for gidx in order], dtype=np.int64)
    return order, sig[idx], ls[idx]


def read_factors(ctx: RunContext, store: DatasetStore, year: int
                 ) -> tuple[list[str], np.ndarray]:
    """Dense [group, bucket] factors of a published S2 partition (checked for shape), read a
    row group at a time into one array (never the table besides)."""
    w = ctx.window(year)
    n_rows = store.dataset_rows("latent_intensity", year)
    factor = np.empty(n_rows, dtype=np.float64)
    gids: list[str] = []
    known: dict[str, int] = {}
    k = 0
    for t in store.dataset_batches("latent_intensity", year, ["group_id", "factor"]):
        for chunk in t.column("group_id").chunks:  # the dictionaries, unified in order
            d = chunk.dictionary if isinstance(chunk.type, pa.DictionaryType) else (
                chunk.dictionary_encode().dictionary)
            for g in d.to_pylist():
                if g not in known:
                    known[g] = len(gids)
                    gids.append(g)
        f = t.column("factor").to_numpy()
        if k + len(f) > n_rows:
            break
        factor[k : k + len(f)] = f
        k += len(f)
    n_groups = len(gids)
    if k != n_rows or n_rows != n_groups * w.n_buckets:
        raise EngineError(
            "DOMAIN_ALIGN_FAILED",
            f"latent_intensity has {n_rows} rows, expected {n_groups} groups x "
            f"{w.n_buckets} buckets",
            table="latent_intensity", key=f"{ctx.scenario}|{year}",
        )
    return gids, readonly(factor.reshape(n_groups, w.n_buckets))


def _write_window(ctx: RunContext, w: Window, gids: list[str], keys: np.ndarray,
                  sig: np.ndarray, ls: np.ndarray, path: str) -> int:
    """The factors of one window, computed and written a few row groups of groups at a time
    (memory bounded by two chunks of ROWS_PER_CHUNK, the one written and the one computed,
    not by groups × buckets). Rows go to the writer in whole row groups, so the file is the
    one a single write of the whole table gives."""
    lat = ctx.policy.latent
    B = w.n_buckets
    b = np.arange(w.first_bucket, w.first_bucket + B, dtype=np.int64)
    ts = b * w.bucket_seconds * US_PER_S
    per = max(1, ROWS_PER_CHUNK // max(B, 1))
    rows = 0
    carry: pa.Table | None = None

    def emit(g0: int, g1: int, z: np.ndarray, f: np.ndarray) -> None:
        """Tabulate one chunk of groups and write its whole row groups (the rest carried)."""
        nonlocal rows, carry
        tbl = pa.table(
            {
                "group_id": dict_array(np.repeat(np.arange(g0, g1, dtype=np.int32), B), gids),
                "bucket_start_utc": ts_array(np.tile(ts, g1 - g0)),
                "z": pa.array(z.ravel(), pa.float64()),
                "factor": pa.array(f.ravel(), pa.float64()),
            },
            schema=schemas.LATENT_INTENSITY,
        )
        carry = tbl if carry is None else pa.concat_tables([carry, tbl])
        whole = carry.num_rows // ROW_GROUP * ROW_GROUP
        if whole:
            writer.write_table(carry.slice(0, whole), row_group_size=ROW_GROUP)
            rows += whole
            carry = carry.slice(whole)

    # a chunk is tabulated and written by a thread of its own while the next chunk's field
    # is computed; chunks are written in order, so the file is the same
    with (pq.ParquetWriter(path, schemas.LATENT_INTENSITY, **PARQUET_OPTS) as writer,
          side_pool(1, "s2-writer") as pool):
        pending = None
        for g0 in range(0, len(gids), per):
            g1 = min(len(gids), g0 + per)
            z = np.empty((g1 - g0, B), dtype=np.float64)
            f = np.empty_like(z)
            latent_field(keys[g0:g1], sig[g0:g1], ls[g0:g1], w.first_bucket, B,
                         lat.block_buckets, lat.factor_clip[0], lat.factor_clip[1], z, f)
            if pending is not None:
                pending.result()
            pending = pool.submit(emit, g0, g1, z, f)
            del z, f
        if pending is not None:
            pending.result()
        if (carry is not None and carry.num_rows) or rows == 0:
            last = carry if carry is not None else schemas.LATENT_INTENSITY.empty_table()
            writer.write_table(last, row_group_size=ROW_GROUP)
            rows += last.num_rows
    return rows


def run(ctx: RunContext, store: DatasetStore, progress: ProgressCallback | None = None,
        shard: Shard | None = None) -> StateResult:
    """Publish the factors of every window. Latent groups span merchants, so S2 has no
    shard of its own: it runs whole (``shard`` must be None)."""
    if shard is not None:
        raise ValueError("S2 takes no merchant shard: its latent groups span merchants")
    jit_s = warm_up_kernels()
    t0 = time.perf_counter()
    paths: list[str] = []
    rows = 0
    rep = ProgressReporter(progress, "s2", len(ctx.windows), "partitions")
    for k, w in enumerate(ctx.windows):
        store.withdraw_passed_flag(w.year)
        gids, sig, ls = published_groups(store, w.year)
        keys = stream_keys("S2.latent.v1", ctx.policy.namespace, ctx.seed,
                           (group_stream(g.split("|", 1)[1]) for g in gids))
        with store.publishing("latent_intensity", w.year) as stage:
            rows += _write_window(ctx, w, gids, keys, sig, ls,
                                  os.path.join(stage, "part-00000.parquet"))
        paths.append(f"{store.dataset_path('latent_intensity', w.year)}/part-00000.parquet")
        rep.update(k + 1)
    rep.finish()
    return StateResult(
        jit_compile_s=jit_s,
        state="s2", rows=rows, elapsed_s=time.perf_counter() - t0,
        output_bytes=store.file_bytes(paths), paths=paths,
        metrics={"peak_rss_mb": peak_rss_mb()},
    )
