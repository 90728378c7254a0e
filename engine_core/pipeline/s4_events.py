"""S4: arrival events — µs placement, routing to sites and edges, both clocks, per-merchant
sequence numbers — streamed chunk by chunk into sorted Parquet parts.

Chunks are generated in order on the calling thread (the kernel uses every core) while a
small pool turns each finished chunk into its own part file; part names carry the chunk
number, so the files in name order are the sorted partition. Memory holds a few chunks,
never the partition.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine_core import schemas
from engine_core.context import RunContext, Shard, Window
from engine_core.errors import EngineError
from engine_core.io.memory import chunk_heap, release_memory
from engine_core.io.publish import sync_file, write_json_atomic
from engine_core.io.store import TOTALS, DatasetStore
from engine_core.kernels.arrivals import (
    MAX_GROUP_EVENTS,
    MODE_HYBRID,
    balanced_blocks,
    realise_groups,
)
from engine_core.kernels.parallel import side_pool
from engine_core.pipeline.columns import event_arrays, events_table, write_events
from engine_core.pipeline.jit import warm_up_kernels
from engine_core.pipeline.progress import ProgressReporter, peak_rss_mb
from engine_core.pipeline.types import ProgressCallback, StateResult
from engine_core.schemas import EVENT_COLUMNS
from engine_core.timebase import US_PER_S

EVENTS_PER_CHUNK = 3_000_000
WRITERS = 2
FAMILIES = ("S4.time.v1", "S4.site.v1", "S4.edge.v1", "S4.hybrid.v1")
_COUNT_COLUMNS = ["merchant_id", "legal_country_iso", "zone_tzid", "channel_group",
                  "bucket_start_utc", "count"]


def group_boundary_at_or_after(t: pa.Table, i: int) -> int:
    """The first row index >= i that starts a new (merchant, bucket) group."""
    mid = t.column("merchant_id").to_numpy()
    b = t.column("bucket_start_utc").cast(pa.int64()).to_numpy()
    n = len(mid)
    if i <= 0:
        return 0
    if i >= n:
        return n
    new = (mid[i:] != mid[i - 1 : n - 1]) | (b[i:] != b[i - 1 : n - 1])
    hit = np.flatnonzero(new)
    return i + int(hit[0]) if len(hit) else n


def _row_groups_of(pf: pq.ParquetFile, bounds: tuple[int, int] | None) -> list[int]:
    """The row groups that may hold merchants in ``bounds`` (all without bounds or
    statistics): a shard reads its own merchants' counts, not the whole partition."""
    meta = pf.metadata
    every = list(range(meta.num_row_groups))
    if bounds is None:
        return every
    col = pf.schema_arrow.get_field_index("merchant_id")
    keep = []
    for i in every:
        st = meta.row_group(i).column(col).statistics
        if st is None or not st.has_min_max or (st.max >= bounds[0] and st.min <= bounds[1]):
            keep.append(i)
    return keep


def count_chunks(ctx: RunContext, store: DatasetStore, w: Window, shard: Shard | None
                 ) -> Iterator[pa.Table]:
    """S3 rows in order (of the shard's merchants), cut at (merchant, bucket) boundaries into
    chunks of about EVENTS_PER_CHUNK events (more only when one (merchant, bucket) alone is
    larger)."""
    bounds = ctx.shard_merchants(shard)
    carry: pa.Table | None = None
    for f in store.dataset_files("bucket_counts", w.year):
        pf = pq.ParquetFile(f, filesystem=store.storage.fs)
        groups = _row_groups_of(pf, bounds)
        if not groups:
            continue
        for rb in pf.iter_batches(batch_size=1 << 16, columns=_COUNT_COLUMNS,
                                  row_groups=groups):
            t = pa.Table.from_batches([rb])
            if bounds is not None:
                mid = t.column("merchant_id").to_numpy()
                t = t.filter(pa.array((mid >= bounds[0]) & (mid <= bounds[1])))
                if not t.num_rows:
                    continue
            carry = t if carry is None else pa.concat_tables([carry, t]).combine_chunks()
            while True:
                cum = np.cumsum(carry.column("count").to_numpy())
                if cum[-1] < EVENTS_PER_CHUNK:
                    break
                reach = int(np.searchsorted(cum, EVENTS_PER_CHUNK)) + 1
                cut = group_boundary_at_or_after(carry, reach)
                if cut >= carry.num_rows:
                    break  # the group may continue in the next batch
                yield carry.slice(0, cut)
                carry = carry.slice(cut)
    if carry is not None and carry.num_rows:
        yield carry


def realise_chunk(ctx: RunContext, chunk: pa.Table, keys: dict[str, np.ndarray],
                  bucket_us: int, seq_next: dict[int, int], blocks: dict[str, int]
                  ) -> dict[str, np.ndarray]:
    """The kernel outputs of one chunk of S3 rows, one array per event column."""
    m = ctx.arrays
    tz = ctx.tz
    row_series = ctx.series_index_of(chunk)
    row_bucket = chunk.column("bucket_start_utc").cast(pa.int64()).to_numpy() // bucket_us
    counts = chunk.column("count").to_numpy().astype(np.int64)
    row_offset = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=row_offset[1:])
    n = int(row_offset[-1])
    # (merchant, bucket) groups: rows are sorted by merchant, bucket, series
    mids = m.merchant_id[row_series]
    new_group = np.ones(len(counts), dtype=np.bool_)
    new_group[1:] = (mids[1:] != mids[:-1]) | (row_bucket[1:] != row_bucket[:-1])
    g_first_row = np.flatnonzero(new_group)
    group_row_lo = np.append(g_first_row, len(counts)).astype(np.int64)
    group_evt_lo = row_offset[group_row_lo]
    if np.any(np.diff(group_evt_lo) >= MAX_GROUP_EVENTS):
        raise EngineError("CAPACITY_EXCEEDED", "a (merchant, bucket) holds more than "
                          f"{MAX_GROUP_EVENTS - 1} events", table="bucket_counts")
    # arrival_seq: 1.. per merchant, continuing across the chunks of the partition
    g_mid = mids[g_first_row]
    m_first = np.ones(len(g_mid), dtype=np.bool_)
    m_first[1:] = g_mid[1:] != g_mid[:-1]
    m_start_group = np.flatnonzero(m_first)
    groups_per_m = np.diff(np.append(m_start_group, len(g_mid)))
    m_evt_lo = group_evt_lo[m_start_group]
    m_evt_hi = group_evt_lo[np.append(m_start_group[1:], len(g_mid))]
    base = np.array([seq_next.get(int(x), 1) for x in g_mid[m_start_group]], dtype=np.int64)
    group_seq0 = (group_evt_lo[:-1] - np.repeat(m_evt_lo, groups_per_m)
                  + np.repeat(base, groups_per_m))
    for k, mid_ in enumerate(g_mid[m_start_group].tolist()):
        seq_next[int(mid_)] = int(base[k] + m_evt_hi[k] - m_evt_lo[k])
    out = event_arrays(n)
    blocks_lo = balanced_blocks(group_evt_lo, 8 * ctx.threads)
    realise_groups(
        blocks_lo, group_row_lo, group_evt_lo, group_seq0, row_series, row_bucket, counts,
        keys["S4.time.v1"], keys["S4.site.v1"], keys["S4.edge.v1"], keys["S4.hybrid.v1"],
        m.mode, m.site_lo, m.site_n, m.edge_lo, m.edge_n, m.settle_zone,
        m.merchant_id, m.country_idx, m.zone_idx, m.channel_idx,
        m.site_prob, m.site_alias, m.site_zone, m.site_id,
        m.edge_prob, m.edge_alias, m.edge_zone, m.edge_id,
        ctx.policy.routing.p_virtual_hybrid, bucket_us,
        tz.zone_start, tz.trans_us, tz.offset_s,
        *(out[c.name] for c in EVENT_COLUMNS),
    )
    n_virtual = int(out["is_virtual"].sum())
    blocks["S4.time.v1"] += n
    blocks["S4.hybrid.v1"] += int(counts[m.mode[row_series] == MODE_HYBRID].sum())
    blocks["S4.edge.v1"] += n_virtual
    blocks["S4.site.v1"] += n - n_virtual
    return out


def _write_chunk(ctx: RunContext, out: dict[str, np.ndarray], path: str, sync: bool) -> None:
    write_events(events_table(out, ctx.arrays), path)
    if sync:
        sync_file(path)


def _realise_window(ctx: RunContext, store: DatasetStore, w: Window, shard: Shard | None,
                    stage: str, sync: bool, rep: ProgressReporter, done: list[int]
                    ) -> tuple[int, list[str]]:
    """One window into ``stage``: part files, then the totals; (events, part names)."""
    m = ctx.arrays
    keys = {f: m.series_keys(f, ctx.policy.namespace, ctx.seed) for f in FAMILIES}
    bucket_us = w.bucket_seconds * US_PER_S
    seq_next: dict[int, int] = {}
    names: list[str] = []
    n_events = 0
    blocks = dict.fromkeys(FAMILIES, 0)
    with side_pool(WRITERS, "s4-writer") as pool:
        pending: list[Future] = []
        for chunk in count_chunks(ctx, store, w, shard):
            out = realise_chunk(ctx, chunk, keys, bucket_us, seq_next, blocks)
            name = f"part-{len(names):05d}.parquet"
            names.append(name)
            # the writer builds the Arrow table too: this thread goes straight on to the
            # next chunk's kernel
            pending.append(pool.submit(_write_chunk, ctx, out, os.path.join(stage, name),
                                       sync))
            n_events += len(out["arrival_id"])
            done[0] += len(out["arrival_id"])
            rep.update(done[0])
            # bound memory: the next chunk is realised while at most WRITERS - 1 chunks are
            # being written (a third chunk in flight bought no speed on two cores and held
            # ~250 MB more: docs/benchmarks.md, "Two chunks in flight")
            while len(pending) >= WRITERS:
                pending.pop(0).result()
        for fut in pending:
            fut.result()
    if not names:  # an empty partition still gets a (typed, empty) file
        names.append("part-00000.parquet")
        write_events(schemas.ARRIVAL_EVENTS.empty_table(), os.path.join(stage, names[0]))
    write_json_atomic(os.path.join(stage, TOTALS),
                      {"events": n_events, "merchants": len(seq_next), "blocks": blocks,
                       "files": len(names)})
    return n_events, names


def merge_totals(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The totals of a partition from its shards' totals (merchants never span shards)."""
    return {
        "events": sum(int(p["events"]) for p in parts),
        "merchants": sum(int(p["merchants"]) for p in parts),
        "blocks": {f: sum(int(p["blocks"][f]) for p in parts) for f in FAMILIES},
        "files": sum(int(p["files"]) for p in parts),
    }


def run(ctx: RunContext, store: DatasetStore, progress: ProgressCallback | None = None,
        shard: Shard | None = None) -> StateResult:
    """Publish the events of every window; over a shard, write the shard's part files (and
    its totals) into the shard's directory instead."""
    jit_s = warm_up_kernels()
    t0 = time.perf_counter()
    paths: list[str] = []
    events_total = 0
    grand = sum(int(store.read_totals("bucket_counts", w.year)["sum_count"])
                for w in ctx.windows)
    rep = ProgressReporter(progress, "s4", grand, "events")
    done = [0]
    with chunk_heap():  # the heap keeps a chunk's pages for the next chunk
        for w in ctx.windows:
            if shard is None:
                store.withdraw_passed_flag(w.year)
                final = store.dataset_path("arrival_events", w.year)
                # the replaced partition (a re-run) is removed while the next state runs:
                # deleting gigabytes is disk work that the publish need not wait for
                with store.publishing("arrival_events", w.year,
                                      discard_in_background=True) as stage:
                    # on an object store the stage is a local copy to upload: no fsync per part
                    n_events, names = _realise_window(ctx, store, w, None, stage,
                                                      store.storage.is_local, rep, done)
                paths += [f"{final}/{n}" for n in names]
            else:
                stage = store.shard_dir("arrival_events", w.year, shard.name)
                n_events, names = _realise_window(ctx, store, w, shard, stage, False, rep, done)
                paths += [os.path.join(stage, n) for n in names]
            events_total += n_events
    release_memory()
    rep.finish()
    elapsed = time.perf_counter() - t0
    return StateResult(
        jit_compile_s=jit_s,
        state="s4", rows=events_total, events=events_total, elapsed_s=elapsed,
        output_bytes=(store.file_bytes(paths) if shard is None
                      else int(sum(os.path.getsize(p) for p in paths))),
        paths=paths,
        metrics={"peak_rss_mb": peak_rss_mb(),
                 "events_per_s": events_total / elapsed if elapsed else 0.0,
                 "threads": ctx.threads},
    )
