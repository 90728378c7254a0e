"""The S4 rules cut into merchant shards: the plan every shard works from, the world seen from
one shard, a shard's arrival_ids split into classes on disk, and the small partial a shard
hands to the merge (engine_core/checks/rules_s4.py runs the shards and merges).

A shard is a contiguous range of merchant indices, and with it a range of merchant *ids*:
shard k owns every id from its first merchant's up to the next shard's first merchant's
(the first shard from 0, the last to 2⁶⁴−1), so every row — an unknown merchant's too —
belongs to exactly one shard, and a row can never fall between shards. A shard reads the
row groups whose merchant_id statistics meet its ids (files in name order; the position of
every row in the partition is known from the footers), keeps its own rows, and judges them
against the world restricted to its merchants: its per-cell arrays are sized to its series.

The merge needs some facts of the whole partition, gathered into the :class:`S4Plan` before
any shard runs: the files with their row counts (positions), the number of id classes, and
the S3 rows before each shard (the re-derivation sample is evenly spaced over every S3 row of
the partition in cell order, as it was in one pass; cell order is shard order).
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from engine_core.checks.event_scan import split_by_class
from engine_core.checks.verdicts import MAX_EXAMPLES
from engine_core.checks.world_index import WorldIndex, key_table
from engine_core.context import Shard, balanced_shards

# arrival_ids held at once by EVENTS_ID_UNIQUE (x2 while sorting; 64 MB of ids: a year of
# the reference world peaked ≈ 200 MB higher at 128 MB, in the classes read beside the weekend
# law, at no saving of CPU: docs/benchmarks.md)
ID_CLASS_BUDGET = 1 << 23
# Shards of the rules in one process: each holds at most about this many (series, bucket)
# cells (4 bytes each for the event tally; 16 more per S3 row of the shard).
CELLS_PER_RULE_SHARD = 64_000_000
ID_MAX = (1 << 64) - 1
MAX_RUNS = 256  # runs of consecutive rows a shard describes exactly for EVENTS_SORTED
IDS_DATASET = "arrival_ids"  # the shard area of the id classes (beside the datasets' shards)


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``k``: merchant indices ``[lo, hi)`` and the merchant ids ``[id_lo, id_hi]`` it
    owns; ``s3_before`` S3 rows of the partition belong to earlier shards, ``s3_rows`` to it."""

    k: int
    lo: int
    hi: int
    id_lo: int
    id_hi: int
    s3_before: int
    s3_rows: int

    @property
    def name(self) -> str:
        return Shard(self.lo, self.hi).name


@dataclass(frozen=True)
class EventFile:
    path: str
    rows: int
    first_row: int  # position of the file's first row in the partition
    mid_min: int | None  # merchant_id statistics of the file (None: unknown)
    mid_max: int | None


@dataclass(frozen=True)
class S4Plan:
    """What every shard of one partition's S4 rules works from (small, picklable)."""

    year: int
    shards: tuple[ShardSpec, ...]
    files: tuple[EventFile, ...]
    rows: int  # rows of the partition by its footers
    id_classes: int  # P: arrival_ids are checked in classes id mod P
    s3_rows: int  # S3 rows of the partition (the re-derivation sample spreads over them)
    ids_dir: str  # where shards write their id classes (a directory of its own per shard)
    ids_remote: bool  # ids_dir is on the store's object store (else a local path)


def id_class_count(rows: int) -> int:
    """Classes of ids by their low bits, each within ``ID_CLASS_BUDGET`` (a power of two)."""
    budget = ID_CLASS_BUDGET
    return 1 << max(0, math.ceil(math.log2(max(rows, 1) / budget)))


def merchant_cells(ctx, n_buckets: int) -> np.ndarray:
    """(series, bucket) cells per merchant index over one window."""
    rank = np.searchsorted(ctx.merchant_ids, ctx.arrays.merchant_id)
    return np.bincount(rank, minlength=len(ctx.merchant_ids)).astype(np.float64) * n_buckets


def rule_shards(ctx, year: int, at_least: int = 1, prefer: list[Shard] | None = None
                ) -> list[Shard]:
    """Merchant shards for the S4 rules of ``year``: ``prefer`` (the shards S4 was computed
    in: each then reads exactly its own files) when each is within ``CELLS_PER_RULE_SHARD``
    cells, else balanced by cells, each within the budget (a merchant is never split), at
    least ``at_least``."""
    cells = merchant_cells(ctx, ctx.window(year).n_buckets)
    if prefer and all(float(cells[s.lo : s.hi].sum()) <= CELLS_PER_RULE_SHARD for s in prefer):
        return [Shard(s.lo, s.hi) for s in prefer]
    n = max(int(at_least), math.ceil(float(cells.sum()) / CELLS_PER_RULE_SHARD), 1)
    return balanced_shards(cells, n)


def _owner_slots(merchant_ids: np.ndarray, mids: np.ndarray) -> np.ndarray:
    """The merchant index whose id range holds each id: the last merchant whose id is at
    most it (ids below the first merchant's go to the first)."""
    return np.maximum(np.searchsorted(merchant_ids, mids, side="right") - 1, 0)


def plan_s4_rules(ctx, store, year: int, shards: list[Shard], ids_dir: str | None = None
                  ) -> S4Plan:
    """The plan of ``year``'s S4 rules over ``shards`` (contiguous, covering every merchant):
    the event files' footers and the S3 rows per shard (one read of S3's merchant_id
    column). ``ids_dir`` None: the id classes go to a private temporary directory (one
    process); else to that directory of the store (a cluster's shard area)."""
    ids = ctx.merchant_ids
    n_m = len(ids)
    ordered = sorted(shards, key=lambda s: s.lo)
    if not ordered or ordered[0].lo != 0 or ordered[-1].hi != n_m or any(
            a.hi != b.lo for a, b in zip(ordered, ordered[1:], strict=False)):
        raise ValueError(f"S4 rule shards must cover merchants [0, {n_m}) contiguously")
    per_slot = np.zeros(max(n_m, 1), dtype=np.int64)
    for t in store.dataset_batches("bucket_counts", year, ["merchant_id"]):
        mid = t.column("merchant_id").to_numpy()
        per_slot += np.bincount(_owner_slots(ids, mid) if n_m else np.zeros(len(mid), np.int64),
                                minlength=len(per_slot))
    specs = []
    before = 0
    for k, s in enumerate(ordered):
        id_lo = 0 if k == 0 else int(ids[s.lo])
        id_hi = ID_MAX if k == len(ordered) - 1 else int(ids[s.hi]) - 1
        n = int(per_slot[s.lo : s.hi].sum()) if n_m else int(per_slot.sum())
        specs.append(ShardSpec(k, s.lo, s.hi, id_lo, id_hi, before, n))
        before += n
    files = []
    pos = 0
    for f in store.dataset_files("arrival_events", year):
        pf = pq.ParquetFile(f, filesystem=store.storage.fs)
        meta = pf.metadata
        lo = hi = None
        col = pf.schema_arrow.get_field_index("merchant_id")
        if col >= 0 and meta.num_row_groups:
            stats = [meta.row_group(g).column(col).statistics for g in range(meta.num_row_groups)]
            if all(st is not None and st.has_min_max for st in stats):
                lo = int(min(st.min for st in stats))
                hi = int(max(st.max for st in stats))
        files.append(EventFile(f, meta.num_rows, pos, lo, hi))
        pos += meta.num_rows
    if ids_dir is None:
        ids_dir, remote = tempfile.mkdtemp(prefix="arrival-ids-"), False
    else:
        remote = not store.storage.is_local
    return S4Plan(year, tuple(specs), tuple(files), pos, id_class_count(pos), before,
                  ids_dir, remote)


# ---------------------------------------------------------------------- the world of a shard
def _targets(merchant: np.ndarray, ids: np.ndarray, info: np.ndarray, m_lo: int, m_hi: int
             ) -> tuple[int, int, tuple[np.ndarray, int], np.ndarray, np.ndarray]:
    """The sites (or edges) of merchants ``[m_lo, m_hi)`` — sorted by merchant in the world
    index — as (first row, count, id table, shard-local merchant, packed info with its
    merchant column made shard-local)."""
    a = int(np.searchsorted(merchant, m_lo))
    b = int(np.searchsorted(merchant, m_hi))
    local_info = np.array(info[a:b])
    local_info[:, 0] -= m_lo
    return (a, b - a, key_table(ids[a:b]), np.ascontiguousarray(merchant[a:b] - m_lo),
            local_info)


class ShardIndex:
    """The world index restricted to one shard's merchants, with shard-local merchant,
    series, site and edge indices (the names the scan kernel takes); ``s_lo``, ``site_lo``
    and ``edge_lo`` turn a local index back into the world's."""

    def __init__(self, world: WorldIndex, id_lo: int, id_hi: int) -> None:
        self.world = world
        for name in ("tzids", "countries", "channels", "tz_index", "country_index",
                     "channel_index", "n_c", "n_z", "n_h"):
            setattr(self, name, getattr(world, name))
        lo_id, hi_id = np.uint64(id_lo), np.uint64(id_hi)
        m_lo = int(np.searchsorted(world.m_ids, lo_id))
        m_hi = int(np.searchsorted(world.m_ids, hi_id, side="right"))
        self.m_lo = m_lo
        self.m_ids = np.ascontiguousarray(world.m_ids[m_lo:m_hi])
        self.m_mode = np.ascontiguousarray(world.m_mode[m_lo:m_hi])
        self.m_settle = np.ascontiguousarray(world.m_settle[m_lo:m_hi])
        # series of the shard's merchants (series are sorted by merchant id)
        mids = np.asarray(world.model.merchant_id, dtype=np.uint64)
        s_lo = int(np.searchsorted(mids, lo_id))
        s_hi = int(np.searchsorted(mids, hi_id, side="right"))
        self.s_lo, self.n_series = s_lo, s_hi - s_lo
        m = world.model
        s_m = world.series_merchant[s_lo:s_hi] - m_lo
        keys = (((s_m * self.n_c + m.country_idx[s_lo:s_hi]) * self.n_z
                 + m.zone_idx[s_lo:s_hi]) * self.n_h + m.channel_idx[s_lo:s_hi])
        self.series_table = key_table(keys.astype(np.uint64))  # value = local series index
        self.series_country = np.ascontiguousarray(world.series_country[s_lo:s_hi])
        self.series_zone = np.ascontiguousarray(world.series_zone[s_lo:s_hi])
        self.series_info = np.ascontiguousarray(world.series_info[s_lo:s_hi])
        # sites and edges are sorted by merchant
        (self.site_lo, self.n_sites, self.site_table, self.site_merchant,
         self.site_info) = _targets(world.site_merchant, world.site_ids, world.site_info,
                                    m_lo, m_hi)
        a = self.site_lo
        self.site_country = np.ascontiguousarray(world.site_country[a:a + self.n_sites])
        self.site_zone = np.ascontiguousarray(world.site_zone[a:a + self.n_sites])
        (self.edge_lo, self.n_edges, self.edge_table, self.edge_merchant,
         self.edge_info) = _targets(world.edge_merchant, world.edge_ids, world.edge_info,
                                    m_lo, m_hi)
        a = self.edge_lo
        self.edge_zone = np.ascontiguousarray(world.edge_zone[a:a + self.n_edges])

    scan_args = WorldIndex.scan_args  # the same kernel arguments, over the shard's world

    def series_rows(self, tbl) -> tuple[np.ndarray, np.ndarray]:
        """(world merchant index, local series index or -1) per row."""
        m, s = self.world.series_rows(tbl)
        local = s - self.s_lo
        return m, np.where((s >= 0) & (local < self.n_series) & (local >= 0), local, -1)

    def cell_label(self, s_local: int, bucket_abs: int, bucket_seconds: int) -> str:
        return self.world.cell_label(self.s_lo + s_local, bucket_abs, bucket_seconds)

    @staticmethod
    def utc_label(us: int) -> str:
        return WorldIndex.utc_label(us)


# ---------------------------------------------------------------------- arrival_ids by class
class ShardIds:
    """One shard's arrival_ids split by class (id mod P) into ``class-<p>.u64`` files of its
    own directory, appended batch by batch (8 bytes an event). On an object store the files
    are written locally and uploaded by :meth:`finish`."""

    def __init__(self, store, plan: S4Plan, name: str) -> None:
        self.store = store
        self.plan = plan
        self.n = plan.id_classes
        self.mask = np.uint64(self.n - 1)
        if plan.ids_remote:
            self.remote: str | None = f"{plan.ids_dir}/{name}"
            self.local = tempfile.mkdtemp(prefix="arrival-ids-")
        else:
            self.remote = None
            self.local = os.path.join(plan.ids_dir, name)
            shutil.rmtree(self.local, ignore_errors=True)
            os.makedirs(self.local)
        self._files = [open(os.path.join(self.local, f"class-{p:05d}.u64"), "wb")  # noqa: SIM115
                       for p in range(self.n)]
        # split and written in a thread of their own (the kernel and the writes release the
        # GIL), beside the scan: at most two batches' ids wait
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._error: list[BaseException] = []
        self._writer = threading.Thread(target=self._write_all, name="shard-ids", daemon=True)
        self._writer.start()

    def add(self, ids: np.ndarray) -> None:
        """Queue one batch's ids (the array is only read, never kept past its write)."""
        if self._error:
            raise self._error[0]
        self._queue.put(ids)

    def _write_all(self) -> None:
        out = np.empty(0, dtype=np.uint64)
        bounds = np.empty(self.n + 1, dtype=np.int64)
        while (ids := self._queue.get()) is not None:
            if self._error:
                continue  # drain: the scan is told at its next add or at finish
            try:
                if self.n == 1:
                    self._files[0].write(memoryview(np.ascontiguousarray(ids)))
                    continue
                if out.size < ids.size:
                    out = np.empty(ids.size, dtype=np.uint64)
                split_by_class(ids, self.mask, out, bounds)
                for p, f in enumerate(self._files):
                    f.write(memoryview(out[bounds[p] : bounds[p + 1]]))
            except BaseException as exc:  # handed to the scan
                self._error.append(exc)

    def _stop_writer(self) -> None:
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()

    def finish(self) -> str:
        """Write what is queued and close the files; the directory as the class checks read
        it."""
        self._stop_writer()
        if self._error:
            raise self._error[0]
        for f in self._files:
            f.close()
        self._files = []
        if self.remote is None:
            return self.local
        fs = self.store.storage.fs
        try:
            fs.create_dir(self.remote, recursive=True)
            for p in range(self.n):
                name = f"class-{p:05d}.u64"
                with (open(os.path.join(self.local, name), "rb") as src,
                      fs.open_output_stream(f"{self.remote}/{name}") as dst):
                    shutil.copyfileobj(src, dst, 8 << 20)
        finally:
            shutil.rmtree(self.local, ignore_errors=True)
        return self.remote

    def close(self) -> None:
        """Close the files (after :meth:`finish`, or instead of it when the pass failed: a
        local copy meant for an object store is then removed)."""
        self._stop_writer()
        for f in self._files:
            f.close()
        self._files = []
        if self.remote is not None:
            shutil.rmtree(self.local, ignore_errors=True)


class GrowingBuffer:
    """An array handed out again and again (its first ``n`` elements), grown with some slack
    when a request is larger: large arrays taken fresh each time are page faults and zeroing
    for the kernel on every use."""

    def __init__(self, dtype: type = np.uint64) -> None:
        self._buf = np.empty(0, dtype=dtype)

    def take(self, n: int) -> np.ndarray:
        if self._buf.size < n:
            self._buf = np.empty(n + n // 16, dtype=self._buf.dtype)
        return self._buf[:n]


def read_id_class(store, plan: S4Plan, dirs: list[str], p: int,
                  into: GrowingBuffer | None = None) -> np.ndarray:
    """Class ``p``'s ids of every shard, in shard order (read-only). Read from several local
    files, they go into ``into`` when given (valid until its next use), else a fresh array."""
    name = f"class-{p:05d}.u64"
    if plan.ids_remote:
        parts = []
        for d in dirs:
            with store.storage.fs.open_input_stream(f"{d}/{name}") as fh:
                parts.append(np.frombuffer(fh.read(), dtype=np.uint64))
        joined = np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64)
        joined.setflags(write=False)  # read-only, as below: one kernel specialisation
        return joined
    paths = [os.path.join(d, name) for d in dirs]
    sizes = [os.path.getsize(f) // 8 for f in paths]
    if len(paths) == 1 and sizes[0]:  # one shard: its file, mapped (read-only), not copied
        return np.memmap(paths[0], dtype=np.uint64, mode="r", shape=(sizes[0],))
    total = sum(sizes)  # several: each file read into its place
    out = into.take(total) if into is not None else np.empty(total, dtype=np.uint64)
    at = 0
    for f, n in zip(paths, sizes, strict=True):
        with open(f, "rb") as fh:
            fh.readinto(memoryview(out[at : at + n]).cast("B"))
        at += n
    out.setflags(write=False)  # read-only like a mapped class: one kernel specialisation
    return out


def drop_ids(store, plan: S4Plan) -> None:
    """Remove the id classes of every shard of the plan."""
    if plan.ids_remote:
        try:
            store.storage.fs.delete_dir(plan.ids_dir)
        except OSError:
            pass
    else:
        shutil.rmtree(plan.ids_dir, ignore_errors=True)


def cluster_ids_dir(store, year: int, tag: str) -> str:
    """The shard area where a cluster's shards leave their id classes for one evaluation."""
    if store.storage.is_local:
        return store.shard_path(IDS_DATASET, year, tag)
    return store.shard_object_dir(IDS_DATASET, year, tag)


# ---------------------------------------------------------------------- a shard's findings
class RankedOffences:
    """Offending rows of one rule in one shard: the count and the first examples, each with
    the key that orders examples as one pass over the partition would meet them
    ((0, …) S3 rows, (1, position) event rows, (2, cell) cells, (3, …) whole-partition)."""

    def __init__(self) -> None:
        self.count = 0
        self.examples: list[tuple[tuple, str]] = []

    def add(self, n: int, examples: list[tuple[tuple, str]] = ()) -> None:
        self.count += int(n)
        for e in examples:
            if len(self.examples) >= MAX_EXAMPLES:
                break
            self.examples.append(e)

    def want(self) -> int:
        return MAX_EXAMPLES - len(self.examples)


def merged_offences(parts: list[RankedOffences]) -> tuple[int, list[str]]:
    """Count and first examples of one rule over every shard (and the merge's own)."""
    ex = sorted((e for p in parts for e in p.examples), key=lambda e: e[0])
    return sum(p.count for p in parts), [text for _, text in ex[:MAX_EXAMPLES]]


@dataclass
class RowRun:
    """Consecutive rows (positions ``start``..``end`` of the partition) of one shard, with
    the sort keys (merchant_id, ts_utc, arrival_seq) and labels of its first and last row."""

    start: int
    end: int
    first: tuple[int, int, int]
    last: tuple[int, int, int]
    first_label: str


@dataclass
class ShardPartial:
    """What one shard's pass found: small, picklable, merged by ``rules_s4.merge_partials``."""

    k: int
    rows: int = 0
    stats: list[int] = field(default_factory=list)
    hist: list[int] = field(default_factory=list)
    site_lo: int = 0
    site_hits: np.ndarray | None = None
    edge_lo: int = 0
    edge_hits: np.ndarray | None = None
    offences: dict[str, RankedOffences] = field(default_factory=dict)
    runs: list[RowRun] = field(default_factory=list)
    runs_overflow: int = 0  # runs beyond MAX_RUNS (each a break of the partition's order)
    merchants_seen: int = 0
    rows_converted_per_row: int = 0
    reference: dict[str, Any] = field(default_factory=dict)
    s3_rows: int = 0
    s3_sum: int = 0
    cells_mismatched: int = 0
    weekend_events: int = 0
    grid_events: int = 0
    # the re-derivation: (pick number, world cell, S3 count) of the shard's sampled S3
    # rows, and why a cell's published events differ from the law's
    picks: list[tuple[int, int, int]] = field(default_factory=list)
    rederive_mismatch: dict[int, str] = field(default_factory=dict)
    ids_dir: str = ""
    worker: str = ""
    seconds: float = 0.0

