"""The S4 floor: a bare Philox time+site kernel building the same columns and writing them
as zstd Parquet (same settings as S4) from two threads.

It reads the published S3 partition of a run, draws one time block and one site block per
arrival (no hybrid coin, no tz lookup, no sort, no arrival_seq bookkeeping) and writes the
15 contract columns in chunks of the S4 chunk size. S4 / floor is the engine's overhead.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
import pyarrow as pa

from engine_core import schemas
from engine_core.io.memory import chunk_heap
from engine_core.pipeline.columns import dict_array as _dict_array
from engine_core.pipeline.columns import ts_array as _ts_array
from engine_core.pipeline.columns import write_events
from engine_core.pipeline.run import Run
from engine_core.pipeline.s4_events import EVENTS_PER_CHUNK as S4_EVENTS_PER_CHUNK
from engine_core.pipeline.s4_events import WRITERS as S4_WRITERS
from engine_core.pipeline.s4_events import count_chunks
from engine_core.rng.philox import philox_block, to_uniform
from engine_core.rng.samplers import alias_pick, place_us
from engine_core.timebase import US_PER_S


@nb.njit(cache=True, nogil=True, parallel=True)
def bare_time_site(row_series, row_bucket, row_offset, key_time, key_site, site_lo, site_n,
                   site_prob, site_alias, bucket_us, ts_out, aid_out, site_out):
    for r in nb.prange(row_series.shape[0]):
        s = row_series[r]
        b = row_bucket[r]
        for j in range(row_offset[r + 1] - row_offset[r]):
            e = row_offset[r] + j
            t0, t1 = philox_block(np.uint64(j), np.uint64(b), key_time[s])
            ts_out[e] = place_us(b * bucket_us, bucket_us, to_uniform(t0))
            aid_out[e] = t1
            x0, _ = philox_block(np.uint64(j), np.uint64(b), key_site[s])
            site_out[e] = site_lo[s] + alias_pick(site_prob, site_alias, site_lo[s], site_n[s],
                                                  to_uniform(x0))


class FloorChunks:
    """The floor's work on one chunk of S3 rows, in its two parts: the bare kernel
    (:meth:`kernel`) and the contract table built from its arrays (:meth:`table`).
    :func:`run_floor` chains them over a partition; ``bench_floor_phases.py`` times each."""

    def __init__(self, engine: Run, year: int) -> None:
        self.ctx = engine.ctx
        m = self.m = engine.ctx.arrays
        self.keys_t = m.series_keys("S4.time.v1", engine.ctx.policy.namespace, engine.ctx.seed)
        self.keys_s = m.series_keys("S4.site.v1", engine.ctx.policy.namespace, engine.ctx.seed)
        self.bucket_us = engine.ctx.window(year).bucket_seconds * US_PER_S
        self.site_n = np.maximum(m.site_n, 1)  # virtual series route to their first site here

    def kernel(self, chunk: pa.Table) -> dict[str, np.ndarray]:
        """Time and site of every arrival of ``chunk``'s rows, laid out row after row."""
        m = self.m
        rs = self.ctx.series_index_of(chunk)
        rb = chunk.column("bucket_start_utc").cast(pa.int64()).to_numpy() // self.bucket_us
        counts = chunk.column("count").to_numpy().astype(np.int64)
        ro = np.zeros(len(counts) + 1, np.int64)
        np.cumsum(counts, out=ro[1:])
        n = int(ro[-1])
        ts = np.empty(n, np.int64)
        aid = np.empty(n, np.uint64)
        site = np.empty(n, np.int64)
        bare_time_site(rs, rb, ro, self.keys_t, self.keys_s, m.site_lo, self.site_n,
                       m.site_prob, m.site_alias, self.bucket_us, ts, aid, site)
        return {"series": rs, "bucket": rb, "counts": counts, "ts": ts, "aid": aid,
                "site": site}

    def table(self, k: dict[str, np.ndarray]) -> pa.Table:
        """The 15 contract columns of the kernel's arrays (nothing virtual, nothing settled)."""
        m = self.m
        ts, site, counts = k["ts"], k["site"], k["counts"]
        n = len(ts)
        ser = np.repeat(k["series"], counts)
        none = np.ones(n, np.bool_)
        return pa.table(
            {
                "arrival_id": pa.array(k["aid"], pa.uint64()),
                "merchant_id": pa.array(m.merchant_id[ser], pa.uint64()),
                "legal_country_iso": _dict_array(m.country_idx[ser], m.countries),
                "zone_tzid": _dict_array(m.zone_idx[ser], m.tzids),
                "channel_group": _dict_array(m.channel_idx[ser], m.channels),
                "bucket_start_utc": _ts_array(np.repeat(k["bucket"], counts) * self.bucket_us),
                "arrival_seq": pa.array(np.arange(1, n + 1, dtype=np.int64), pa.int64()),
                "ts_utc": _ts_array(ts),
                "tzid": _dict_array(m.site_zone[site], m.tzids),
                "ts_local": _ts_array(ts, schemas.TS_LOCAL),
                "tzid_settlement": _dict_array(np.zeros(n, np.int32), m.tzids, mask=none),
                "ts_local_settlement": pa.array(ts, pa.int64(), mask=none).view(
                    schemas.TS_LOCAL),
                "site_id": pa.array(m.site_id[site], pa.uint64()),
                "edge_id": pa.array(np.zeros(n, np.uint64), pa.uint64(), mask=none),
                "is_virtual": pa.array(np.zeros(n, np.bool_), pa.bool_()),
            },
            schema=schemas.ARRIVAL_EVENTS,
        )


def run_floor(engine: Run, year: int, out_dir: str) -> dict:
    """Time the floor over the published S3 partition ``year``; returns events and seconds."""
    floor = FloorChunks(engine, year)
    w = engine.ctx.window(year)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    events = 0
    # the allocator as S4 has it: a chunk's pages kept for the next chunk
    with chunk_heap(), ThreadPoolExecutor(max_workers=S4_WRITERS) as pool:
        pending = []
        for k, chunk in enumerate(count_chunks(engine.ctx, engine.store, w, None)):
            tbl = floor.table(floor.kernel(chunk))
            path = os.path.join(out_dir, f"part-{k:05d}.parquet")
            pending.append(pool.submit(write_events, tbl, path))  # S4's Parquet settings
            while len(pending) >= S4_WRITERS:  # S4's bound on the chunks in flight
                pending.pop(0).result()
            events += tbl.num_rows
        for f in pending:
            f.result()
    return {"events": events, "elapsed_s": time.perf_counter() - t0,
            "chunk_events": S4_EVENTS_PER_CHUNK}
