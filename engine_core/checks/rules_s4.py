"""S4 rules: the arrival events of one partition, judged in merchant shards and merged.

Each shard (engine_core/checks/event_shards.py: a range of merchants and the merchant ids it
owns) makes one streaming pass over its own rows (:class:`EventChecks`) and returns a small
:class:`~engine_core.checks.event_shards.ShardPartial`; :func:`merge_partials` turns the
partials of every shard into the verdicts, the same whether the shards ran one after the
other in this process (:func:`s4_rules`) or as tasks on a Dask cluster
(engine_core/cluster/rules.py). Examples are the first offending rows in partition order.

- EVENTS_ID_UNIQUE: no arrival_id twice, across shards too. Each shard appends its ids to
  files by class (id mod P, P chosen so a class fits ``ID_CLASS_BUDGET``); each class of
  every shard is then checked at once (bucketed and hashed in parallel), one class in memory.
- EVENTS_CONSERVATION: for every (series, bucket) cell, the number of events equals the S3
  count — events are tallied per cell over the shard's dense series × bucket grid, S3 counts are
  subtracted, and every non-zero cell is a mismatch (missing on either side included). Events
  whose series or bucket is not on the grid, S3 rows off the grid, and the totals (S3
  Σcount = rows = S4 ``events``) are mismatches too.
- EVENTS_IN_BUCKET: bucket_start_utc ≤ ts_utc < bucket_start_utc + D.
- EVENTS_LOCAL_TIME: ts_local = wall clock of ts_utc in ``tzid``, and ts_local_settlement =
  wall clock in ``tzid_settlement``, by an independent reference
  (engine_core/checks/local_clock.py: polars, zoneinfo over tzdata where polars' bundled
  database disagrees), never the engine's tz tables.
- EVENTS_ROUTING_MEMBERSHIP: merchant and series exist; a site belongs to the event's merchant
  and to the series' country and zone; an edge belongs to the merchant; ``tzid`` is the
  site's zone or the edge's operational zone; ``tzid_settlement`` is the merchant's.
- EVENTS_TARGET_EXCLUSIVE: exactly one of site_id / edge_id; is_virtual ⇔ edge_id set;
  NON_VIRTUAL merchants never virtual, VIRTUAL_ONLY always; the settlement clock present
  exactly on virtual arrivals of merchants with a settlement zone.
- EVENTS_SORTED: rows (across files) ordered by (merchant_id, ts_utc, arrival_seq). A shard
  compares consecutive rows of each run of consecutive partition rows it owns; the merge
  compares the rows on either side of every boundary between runs (a shard's rows not all in
  one block are out of order there).
- EVENTS_SEQ: walking the file, each merchant's arrival_seq is 1, 2, … without gaps and its
  ts_utc never decreases along it.
- RNG_REDERIVE_S4: ``rng_rederive_sample`` S3 rows (evenly spaced, at most
  ``REDERIVE_EVENT_BUDGET`` events) re-generated with ``generate_events`` and compared bit for
  bit (arrival_id, ts_utc, is_virtual, site_id/edge_id, tzid, ts_local, settlement clock);
  and block accounting: S4 totals per family equal the law applied to the file (time = events,
  hybrid = events of HYBRID merchants, edge = virtual events, site = physical events).
- EVENTS_UNIFORMITY: within-bucket offsets (ts_utc − bucket_start)/D in 100 equal-width bins
  against their exact cell probabilities (µs are integers); Pearson X² as
  z = (X² − (k−1)) / √Var with Haldane's exact variance; |z| ≤ ``uniformity_z_max``.
- EVENTS_ROUTING_SHARES: per site set (merchant, country, zone) and per merchant's edge set,
  observed hits against weight shares, X² pooled over sets with the same exact mean and
  variance; plus the HYBRID coin: virtual share of HYBRID merchants' events against
  ``p_virtual_hybrid`` as a binomial z. Every |z| ≤ ``routing_z_max``.
- EVENTS_WEEKEND_SHARE: share of events in buckets whose start is a Saturday or Sunday in the
  series' zone, against Σμ over those cells / Σμ over all cells (μ recomputed for every cell,
  engine_core/checks/law.py); |difference| ≤ ``weekend_share_tolerance``.
"""

from __future__ import annotations

import functools
import os
import socket
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import numba
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine_core.checks.contract import schema_rule
from engine_core.checks.event_scan import (
    COLUMNS,
    F_IN_BUCKET,
    F_LOCAL,
    F_NEED_LOCAL,
    F_NEED_SETTLE,
    F_OFF_GRID,
    F_ROUTING,
    F_SEQ,
    F_SORTED,
    F_TARGET,
    N_STATS,
    ST_HYBRID,
    ST_HYBRID_VIRTUAL,
    ST_PHYSICAL,
    ST_ROWS,
    ST_VIRTUAL,
    UNIFORMITY_BINS,
    all_within,
    duplicate_ids,
    sample_table,
    scan_rows,
    subtract_counts,
    uniformity_edges,
)
from engine_core.checks.event_shards import (
    MAX_RUNS,
    GrowingBuffer,
    RankedOffences,
    RowRun,
    S4Plan,
    ShardIds,
    ShardIndex,
    ShardPartial,
    drop_ids,
    merged_offences,
    plan_s4_rules,
    read_id_class,
    rule_shards,
)
from engine_core.checks.law import law_inputs, law_lambda, weekend_sums
from engine_core.checks.local_clock import LocalClockReference
from engine_core.checks.rules_s2 import evenly_spaced
from engine_core.checks.verdicts import (
    MAX_EXAMPLES,
    RuleResult,
    guarded,
    pearson_z,
    state_rules,
    verdict,
    z_of,
)
from engine_core.checks.world_index import (
    NULL_CODE,
    UNKNOWN_CODE,
    WorldIndex,
    bitmap,
    bits_at,
    dictionary_parts,
    i64,
    u64,
    unpack,
)
from engine_core.io.batches import iter_row_groups, overlapping_row_groups
from engine_core.io.memory import release_memory
from engine_core.kernels.arrivals import generate_events
from engine_core.kernels.parallel import side_pool
from engine_core.rng.streams import stream_keys
from engine_core.timebase import US_PER_S as US
from engine_core.tz import to_local_us

# Work handed every table of rows the S4 rules' pass reads, each row once, beside the rules'
# own (the fidelity report's tallies: engine_core/fidelity/tallies.py). It runs on its own
# thread while the rules check the same rows and must not raise.
Rider = Callable[[pa.Table], None]

Positions = range | np.ndarray  # partition positions of a batch's rows

REDERIVE_EVENT_BUDGET = 1 << 20
INT64_MIN = np.iinfo(np.int64).min
FAMILIES_S4 = ("S4.time.v1", "S4.site.v1", "S4.edge.v1", "S4.hybrid.v1")
# the rules a shard's pass finds offending rows for
SHARD_CODES = (
    "EVENTS_CONSERVATION",
    "EVENTS_IN_BUCKET",
    "EVENTS_LOCAL_TIME",
    "EVENTS_ROUTING_MEMBERSHIP",
    "EVENTS_TARGET_EXCLUSIVE",
    "EVENTS_SORTED",
    "EVENTS_SEQ",
    "RNG_REDERIVE_S4",
)


def s4_rules(ctx, store, year: int, shards: int | None = None, rider: Rider | None = None
             ) -> list[RuleResult]:
    """Every S4 rule over ``year``: the published ``arrival_events`` and its totals against
    the published ``bucket_counts`` (conservation, the re-derivation sample), ``grouping`` and
    ``latent_intensity`` (the weekend rule's μ), the world and the policy. The events are
    judged in merchant shards (at least ``shards``; as many as keep each shard's cells within
    ``CELLS_PER_RULE_SHARD``), one after the other, and merged by :func:`merge_partials` —
    the merge a cluster uses too. The statistical decisions are the functions over arrays
    below (``uniformity_verdict``, ``routing_shares_verdict``, ``weekend_share_verdict``).
    ``rider``, when given, is handed every table of rows the pass reads, each row once
    (:data:`Rider`)."""
    first = [
        guarded(
            "EVENTS_SCHEMA", lambda: schema_rule(store, "EVENTS_SCHEMA", "arrival_events", year)
        )
    ]
    return state_rules("s4", first, lambda: sharded_rules(ctx, store, year, shards, rider))


def sharded_rules(ctx, store, year: int, shards: int | None = None,
                  rider: Rider | None = None) -> list[RuleResult]:
    """The S4 rules but EVENTS_SCHEMA, shard after shard in this process, then merged."""
    plan = plan_s4_rules(ctx, store, year, rule_shards(ctx, year, at_least=shards or 1))
    try:
        world = WorldIndex(ctx)
        ref = clock_reference(ctx, year, world)
        partials = []
        for k in range(len(plan.shards)):
            partials.append(EventChecks(ctx, store, plan, k, world, ref, rider).run())
            release_memory()  # the decoded row groups of one shard are not the next one's
        dirs = [p.ids_dir for p in partials]
        # the law's side of the weekend rule reads no event: it runs beside the id classes
        # (after the shards, so that its arrays do not add to a shard's peak)
        with side_pool(2, "s4-rules") as beside:
            law = beside.submit(weekend_law, ctx, store, year, world)
            classes = id_classes(store, plan, dirs, beside)
            return merge_partials(ctx, store, plan, partials, classes, law.result(), world)
    finally:
        drop_ids(store, plan)


def id_classes(store, plan: S4Plan, dirs: list[str], reader: ThreadPoolExecutor
               ) -> list[tuple[int, list[int]]]:
    """EVENTS_ID_UNIQUE class by class (:func:`id_class_duplicates`), the next class read by
    ``reader`` while the current one is checked."""
    out = []
    # the class being checked, the one being read and the checked one's scatter keep their
    # arrays from class to class
    bufs = (GrowingBuffer(), GrowingBuffer())
    scratch = GrowingBuffer()
    nxt = (reader.submit(read_id_class, store, plan, dirs, 0, bufs[0])
           if plan.id_classes else None)
    for c in range(plan.id_classes):
        arr = nxt.result()
        if c + 1 < plan.id_classes:
            nxt = reader.submit(read_id_class, store, plan, dirs, c + 1, bufs[(c + 1) % 2])
        out.append(class_duplicates(arr, scratch.take(arr.size)))
    return out


def clock_reference(ctx, year: int, world: WorldIndex) -> LocalClockReference:
    """The independent local-clock reference over the window's buckets, every world zone."""
    w = ctx.window(year)
    return LocalClockReference(world.tzids, w.first_bucket, w.n_buckets, w.bucket_seconds)


def weekend_mask(ctx, year: int, n_zones: int) -> np.ndarray:
    """[zone, bucket]: the bucket starts on a Saturday or Sunday in the zone (law tz)."""
    w = ctx.window(year)
    bucket_us = w.bucket_seconds * US
    starts = (w.first_bucket + np.arange(w.n_buckets, dtype=np.int64)) * bucket_us
    zone = np.repeat(np.arange(n_zones, dtype=np.int64), w.n_buckets)
    loc = to_local_us(ctx.tz, zone, np.tile(starts, n_zones))
    weekday = (np.floor_divide(loc, 86400 * US) + 3) % 7  # 1970-01-01 was a Thursday
    return (weekday >= 5).reshape(n_zones, w.n_buckets)


def weekend_law(ctx, store, year: int, world: WorldIndex | None = None) -> tuple[float, float]:
    """(Σμ over weekend cells, Σμ over every cell) of the partition: the law's side of
    EVENTS_WEEKEND_SHARE, from the published grouping and factors (reads no event)."""
    world = world if world is not None else WorldIndex(ctx)
    weekend = weekend_mask(ctx, year, len(world.tzids))
    groups, lat = law_inputs(ctx, store, year, world)
    zone = np.ascontiguousarray(world.series_zone, dtype=np.int64)
    factor = np.ascontiguousarray(lat.factor, dtype=np.float64)
    if factor.shape[0] == 0:  # no group at all: no cell has a law μ
        return 0.0, 0.0
    g = groups.group_of_series
    lam_max = float(ctx.policy.counts.lambda_max)
    sums = np.zeros(2)
    for lo, hi, lam in law_lambda(ctx, year):
        weekend_sums(lam, g[lo:hi], factor, lam_max, weekend, zone[lo:hi], sums)
    return float(sums[0]), float(sums[1])


def id_class_duplicates(store, plan: S4Plan, dirs: list[str], p: int) -> tuple[int, list[int]]:
    """EVENTS_ID_UNIQUE over class ``p`` of every shard's ids (one class in memory): the
    number of ids equal to an earlier one and a few of them."""
    return class_duplicates(read_id_class(store, plan, dirs, p))


def class_duplicates(arr: np.ndarray, scratch: np.ndarray | None = None
                     ) -> tuple[int, list[int]]:
    """The number of ids of one class equal to an earlier one, and a few of them
    (``scratch``: see :func:`duplicate_ids`)."""
    examples = np.zeros(MAX_EXAMPLES, dtype=np.uint64)
    n_dup, m = duplicate_ids(arr, examples, 4 * numba.get_num_threads(), scratch)
    return n_dup, [int(x) for x in examples[:m]]


class Batch:
    """One slice of the partition as the arrays the scan kernel takes (views of the Arrow
    buffers, no copies; validity as bitmaps). The kernel's per-row outputs go into ``scratch``
    (:class:`ScanScratch`), reused from batch to batch."""

    def __init__(self, tbl: pa.Table, index: WorldIndex, scratch: ScanScratch | None = None
                 ) -> None:
        self.rb = tbl
        self.n = n = tbl.num_rows
        self.aid = u64(tbl.column("arrival_id"))
        self.mid = u64(tbl.column("merchant_id"))
        self.country = dictionary_parts(tbl.column("legal_country_iso"), index.country_index)
        self.zone = dictionary_parts(tbl.column("zone_tzid"), index.tz_index)
        self.channel = dictionary_parts(tbl.column("channel_group"), index.channel_index)
        self.bstart = i64(tbl.column("bucket_start_utc"))
        self.seq = i64(tbl.column("arrival_seq"))
        self.ts = i64(tbl.column("ts_utc"))
        self.tz = dictionary_parts(tbl.column("tzid"), index.tz_index)
        self.local = i64(tbl.column("ts_local"))
        self.stz = dictionary_parts(
            tbl.column("tzid_settlement"), index.tz_index, with_validity=False
        )
        self.stz_bits = bitmap(tbl.column("tzid_settlement"))
        self.slocal = i64(tbl.column("ts_local_settlement"))
        self.slocal_bits = bitmap(tbl.column("ts_local_settlement"))
        self.site = u64(tbl.column("site_id"))
        self.site_bits = bitmap(tbl.column("site_id"))
        self.edge = u64(tbl.column("edge_id"))
        self.edge_bits = bitmap(tbl.column("edge_id"))
        self.virt_bits = bitmap(tbl.column("is_virtual"), values=True)
        self.virt_valid_bits = bitmap(tbl.column("is_virtual"))
        scratch = scratch if scratch is not None else ScanScratch()
        self.flags, self.hits, self.hit_cells = scratch.take(n)

    def row_args(self) -> tuple:
        """The batch's arguments of :func:`scan_rows`, up to the translation tables."""
        return (
            self.mid,
            self.country[0],
            self.zone[0],
            self.channel[0],
            self.bstart,
            self.seq,
            self.ts,
            self.tz[0],
            self.local,
            self.stz[0],
            *self.stz_bits,
            self.slocal,
            *self.slocal_bits,
            self.site,
            *self.site_bits,
            self.edge,
            *self.edge_bits,
            *self.virt_bits,
            *self.virt_valid_bits,
            self.country[1],
            self.zone[1],
            self.channel[1],
            self.tz[1],
            self.stz[1],
        )

    def out_args(self) -> tuple:
        """The batch's per-row outputs of :func:`scan_rows` (its last arguments)."""
        return self.flags, self.hits, self.hit_cells

    # validity as bool arrays, built only when asked (sampled rows, offences)
    @functools.cached_property
    def slocal_valid(self) -> np.ndarray:
        return unpack(self.slocal_bits, self.n)

    @functools.cached_property
    def site_valid(self) -> np.ndarray:
        return unpack(self.site_bits, self.n)

    @functools.cached_property
    def edge_valid(self) -> np.ndarray:
        return unpack(self.edge_bits, self.n)

    @functools.cached_property
    def virt(self) -> np.ndarray:
        return unpack(self.virt_bits, self.n) & unpack(self.virt_valid_bits, self.n)

    def virt_at(self, rows: np.ndarray) -> np.ndarray:
        return bits_at(self.virt_bits, rows) & bits_at(self.virt_valid_bits, rows)

    @functools.cached_property
    def stz_codes_parts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.stz[0], self.stz[1], unpack(self.stz_bits, self.n)

    @staticmethod
    def codes(parts: tuple[np.ndarray, np.ndarray, np.ndarray], rows: np.ndarray) -> np.ndarray:
        """World codes of ``rows`` of a dictionary column: -1 null, -2 unknown."""
        raw, table, valid = parts
        r = raw[rows].astype(np.int64)
        known = (r >= 0) & (r < len(table))
        out = np.where(
            known, table[np.where(known, r, 0)] if len(table) else NULL_CODE, UNKNOWN_CODE
        )
        if valid is not None:
            out = np.where(valid[rows], out, NULL_CODE)
        return out.astype(np.int32)

    def text(self, column: str, i: int) -> str | None:
        return self.rb.column(column)[int(i)].as_py()

    def label(self, i: int) -> str:
        return (
            f"arrival_id={int(self.aid[i])} merchant={int(self.mid[i])} "
            f"ts_utc={WorldIndex.utc_label(int(self.ts[i]))}"
        )


class ScanScratch:
    """The per-row output arrays of :func:`scan_rows`, kept from batch to batch: a fresh
    20 bytes a row per batch would be page faults and zeroing on every batch."""

    def __init__(self) -> None:
        self._flags = GrowingBuffer(np.int32)
        self._hits = GrowingBuffer(np.int64)
        self._cells = GrowingBuffer(np.int64)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._flags.take(n), self._hits.take(n), self._cells.take(n)


class EventChecks:
    """The S4 rules' pass over one merchant shard of a partition (``plan.shards[k]``): the
    shard's S3 cells and re-derivation sample, one streaming pass over the shard's rows
    (row groups whose merchant_id statistics meet its ids), then a :class:`ShardPartial`."""

    def __init__(self, ctx, store, plan: S4Plan, k: int, world: WorldIndex | None = None,
                 ref: LocalClockReference | None = None, rider: Rider | None = None) -> None:
        self.ctx = ctx
        self.store = store
        self.plan = plan
        self.spec = plan.shards[k]
        self.year = plan.year
        self.w = ctx.window(self.year)
        self.pol = ctx.policy
        self.world = world if world is not None else WorldIndex(ctx)
        self.index = ShardIndex(self.world, self.spec.id_lo, self.spec.id_hi)
        self.S = self.index.n_series
        self.B = self.w.n_buckets
        self.D = self.w.bucket_seconds
        self.bucket_us = self.D * US
        self.ref = ref
        self.rider = rider
        self.off = {code: RankedOffences() for code in SHARD_CODES}
        self.local_examples: list[tuple[tuple, str]] = []
        self.rows_per_row = 0  # rows whose local clocks were converted one by one
        self.part = ShardPartial(k)
        self.runs: list[RowRun] = []
        self.open_run: RowRun | None = None
        self.last_pos = -2  # position of the shard's previous row (-2: none yet)

    # ------------------------------------------------------------------ inputs
    def _parts(self, files: list[tuple[str, int]]) -> list[tuple[str, int, list[int]]]:
        """(file, position of its first row, row groups that may hold the shard's ids)."""
        out = []
        for f, first in files:
            pf = pq.ParquetFile(f, filesystem=self.store.storage.fs)
            groups = overlapping_row_groups(pf, "merchant_id", self.spec.id_lo, self.spec.id_hi)
            if groups:
                out.append((f, first, groups))
        return out

    def _own(self, tbl: pa.Table, pos0: int) -> tuple[pa.Table, Positions]:
        """The rows of ``tbl`` whose merchant_id the shard owns, and their positions (a
        ``range`` when the shard owns the whole batch)."""
        mid = u64(tbl.column("merchant_id"))
        lo, hi = np.uint64(self.spec.id_lo), np.uint64(self.spec.id_hi)
        if tbl.num_rows and all_within(mid, lo, hi):
            return tbl, range(pos0, pos0 + tbl.num_rows)
        own = (mid >= lo) & (mid <= hi)
        rows = np.flatnonzero(own)
        return tbl.filter(pa.array(own)), pos0 + rows

    def _s3_cells(self) -> None:
        """The shard's S3 rows as (local cell, count), streamed."""
        files = self.store.dataset_files("bucket_counts", self.year)
        parts = self._parts([(f, 0) for f in files])
        fs = self.store.storage.fs
        n_max = sum(
            pq.ParquetFile(f, filesystem=fs).metadata.row_group(g).num_rows
            for f, _, groups in parts
            for g in groups
        )
        cells = np.empty(n_max, dtype=np.int64)
        counts = np.empty(n_max, dtype=np.int64)
        k = 0
        self.s3_sum = 0
        self.s3_rows = 0
        columns = [
            "merchant_id",
            "legal_country_iso",
            "zone_tzid",
            "channel_group",
            "bucket_start_utc",
            "count",
        ]
        o = self.off["EVENTS_CONSERVATION"]
        for _, t in iter_row_groups(parts, fs, columns):
            t, _ = self._own(t, 0)
            if not t.num_rows:
                continue
            _, s = self.index.series_rows(t)
            start = i64(t.column("bucket_start_utc"))
            count = i64(t.column("count"))
            b = np.floor_divide(start, self.bucket_us) - self.w.first_bucket
            ok = (s >= 0) & (start % self.bucket_us == 0) & (b >= 0) & (b < self.B)
            m = int(np.count_nonzero(ok))
            cells[k : k + m] = s[ok] * self.B + b[ok]
            counts[k : k + m] = count[ok]
            k += m
            self.s3_sum += int(count.sum())
            off_grid = np.flatnonzero(~ok)
            if len(off_grid):
                mids = t.column("merchant_id").to_pylist()
                o.add(
                    len(off_grid),
                    [
                        (
                            (0, self.spec.k, self.s3_rows + int(i)),
                            f"bucket_counts row merchant={mids[i]} "
                            f"bucket={WorldIndex.utc_label(int(start[i]))}; not a (series, "
                            "bucket) cell of this partition, its events cannot be matched",
                        )
                        for i in off_grid[: o.want()]
                    ],
                )
            self.s3_rows += t.num_rows
        self.s3_cell = cells[:k]
        self.s3_count = counts[:k]

    def _sample(self) -> None:
        """The shard's part of the re-derivation sample: S3 rows evenly spaced over the whole
        partition in cell order (the shard's rows are the plan's ``s3_before`` onwards),
        within the event budget (the merge applies the budget over every shard)."""
        order = np.argsort(self.s3_cell, kind="stable")
        spec = self.spec
        picks = evenly_spaced(self.plan.s3_rows, self.pol.validation.rng_rederive_sample)
        j = np.flatnonzero((picks >= spec.s3_before) & (picks < spec.s3_before + spec.s3_rows))
        local = picks[j] - spec.s3_before
        j, local = j[local < len(order)], local[local < len(order)]
        rows = order[local]
        within = np.cumsum(self.s3_count[rows]) <= REDERIVE_EVENT_BUDGET
        j, rows = j[within], rows[within]
        base = self.index.s_lo * self.B
        self.part.picks = [
            (int(a), int(self.s3_cell[r]) + base, int(self.s3_count[r]))
            for a, r in zip(j, rows, strict=True)
        ]
        cells, first = np.unique(self.s3_cell[rows], return_index=True)
        self.sample_cells = cells
        self.sample_counts = self.s3_count[rows][first]
        self.hkeys, self.hbits = sample_table(cells)

    # ------------------------------------------------------------------ the pass
    def run(self) -> ShardPartial:
        t0 = time.perf_counter()
        idx = self.index
        self._s3_cells()
        self._sample()
        if self.ref is None:
            self.ref = clock_reference(self.ctx, self.year, self.world)
        parts = self._parts([(f.path, f.first_row) for f in self.plan.files
                             if f.mid_min is None or f.mid_max is None
                             or (f.mid_max >= self.spec.id_lo and f.mid_min <= self.spec.id_hi)])
        self.cell_counts = np.zeros(self.S * self.B, dtype=np.int32)
        self.site_hits = np.zeros(idx.n_sites, dtype=np.int64)
        self.edge_hits = np.zeros(idx.n_edges, dtype=np.int64)
        self.hist = np.zeros(UNIFORMITY_BINS, dtype=np.int64)
        self.stats = np.zeros(N_STATS, dtype=np.int64)
        carry_mid = np.zeros(1, dtype=np.uint64)
        carry_ts_seq = np.zeros(2, dtype=np.int64)
        carry_valid = np.zeros(1, dtype=np.bool_)
        bin_edges = uniformity_edges(self.bucket_us)
        n_m = len(idx.m_ids)
        last_seq = np.zeros(n_m, dtype=np.int64)
        last_ts = np.full(n_m, INT64_MIN, dtype=np.int64)
        hits: list[dict[str, np.ndarray]] = []
        ids = ShardIds(self.store, self.plan, f"{self.spec.name}.{uuid.uuid4().hex[:8]}")
        try:
            self._scan(
                parts, ids, hits, carry_mid, carry_ts_seq, carry_valid, bin_edges, last_seq, last_ts
            )
            self.part.ids_dir = ids.finish()
        finally:
            ids.close()
        p = self.part
        p.rows = int(self.stats[ST_ROWS])
        p.stats = [int(x) for x in self.stats]
        p.hist = [int(x) for x in self.hist]
        p.site_lo, p.site_hits = idx.site_lo, self.site_hits
        p.edge_lo, p.edge_hits = idx.edge_lo, self.edge_hits
        p.merchants_seen = int(np.count_nonzero(last_seq))
        p.rows_converted_per_row = self.rows_per_row
        p.reference = self.ref.figures()
        p.s3_rows, p.s3_sum = self.s3_rows, self.s3_sum
        p.weekend_events, p.grid_events = self._weekend_events()
        self._conservation()
        self._rederive(hits)
        self.off["EVENTS_LOCAL_TIME"].examples = self.local_examples[:MAX_EXAMPLES]
        p.offences = self.off
        p.runs = self.runs
        p.worker = f"{socket.gethostname()}:{os.getpid()}"
        p.seconds = time.perf_counter() - t0
        return p

    def _scan(
        self, parts, ids, hits, carry_mid, carry_ts_seq, carry_valid, bin_edges, last_seq, last_ts
    ) -> None:
        """The one pass over the shard's rows: flags, tallies, the sampled cells' events, the
        ids, the runs of consecutive rows."""
        scratch = ScanScratch()
        with side_pool(1, "s4-rider") if self.rider is not None else nullcontext() as beside:
            riding = None
            for pos0, tbl in iter_row_groups(parts, self.store.storage.fs, COLUMNS):
                rb, pos = self._own(tbl, pos0)
                if not rb.num_rows:
                    continue
                if self.rider is not None:
                    # beside the kernel, on these rows; done before the next table is taken,
                    # so that no more rows are held than without a rider
                    riding = beside.submit(self.rider, rb)
                self._batch(rb, pos, ids, hits, scratch, carry_mid, carry_ts_seq, carry_valid,
                            bin_edges, last_seq, last_ts)
                if riding is not None:
                    riding.result()
                    riding = None

    def _batch(self, rb: pa.Table, pos: Positions, ids, hits, scratch: ScanScratch, carry_mid,
               carry_ts_seq, carry_valid, bin_edges, last_seq, last_ts) -> None:
        """The rules' work on one table of the shard's rows."""
        idx = self.index
        b = Batch(rb, idx, scratch)
        n_hits = scan_rows(
            *b.row_args(),
            *idx.scan_args(),
            self.w.first_bucket,
            self.B,
            self.bucket_us,
            self.ref.offset,
            self.hkeys,
            self.hbits,
            bin_edges,
            self.cell_counts,
            self.site_hits,
            self.edge_hits,
            self.hist,
            self.stats,
            carry_mid,
            carry_ts_seq,
            carry_valid,
            last_seq,
            last_ts,
            *b.out_args(),
        )
        self._runs(b, pos)
        flagged = np.flatnonzero(b.flags)
        if len(flagged):
            self._per_row_clocks(b, pos, flagged)
            self._collect_offences(b, pos, flagged)
        if n_hits:
            r = b.hits[:n_hits]
            hits.append(
                {
                    "cell": b.hit_cells[:n_hits].copy(),
                    "aid": b.aid[r],
                    "ts": b.ts[r],
                    "virt": b.virt_at(r),
                    "site": np.where(bits_at(b.site_bits, r), b.site[r], 0),
                    "edge": np.where(bits_at(b.edge_bits, r), b.edge[r], 0),
                    "zone": Batch.codes(b.tz, r),
                    "local": b.local[r],
                    "settle": np.where(bits_at(b.slocal_bits, r), b.slocal[r], 0),
                    "settle_valid": bits_at(b.slocal_bits, r),
                }
            )
        ids.add(b.aid)

    def _runs(self, b: Batch, pos: Positions) -> None:
        """Runs of consecutive partition rows. A row that starts a run follows, in the
        partition, a row of another shard: its comparison with the shard's previous row says
        nothing about the partition's order (the merge compares the runs' ends instead)."""
        n = len(pos)
        if pos[-1] - pos[0] == n - 1:  # positions ascend: consecutive rows, one run at most
            starts_at = [0] if pos[0] != self.last_pos + 1 else []
        else:
            starts = np.empty(n, dtype=np.bool_)
            starts[0] = pos[0] != self.last_pos + 1
            starts[1:] = np.diff(pos) != 1
            starts_at = np.flatnonzero(starts).tolist()
        for i in starts_at:
            b.flags[i] &= ~F_SORTED
            if self.open_run is not None and i > 0:
                self._close_run(self.open_run, b, pos, i - 1)
            if len(self.runs) < MAX_RUNS:
                key = (int(b.mid[i]), int(b.ts[i]), int(b.seq[i]))
                self.open_run = RowRun(int(pos[i]), int(pos[i]), key, key, b.label(i))
                self.runs.append(self.open_run)
            else:
                self.part.runs_overflow += 1
                self.open_run = None
        if self.open_run is not None:
            self._close_run(self.open_run, b, pos, n - 1)
        self.last_pos = int(pos[-1])

    @staticmethod
    def _close_run(run: RowRun, b: Batch, pos: Positions, i: int) -> None:
        run.end = int(pos[i])
        run.last = (int(b.mid[i]), int(b.ts[i]), int(b.seq[i]))

    def _per_row_clocks(self, b: Batch, pos: Positions, flagged: np.ndarray) -> None:
        """Rows the reference table cannot judge (a transition inside their bucket, a zone
        outside the table): convert them one by one, zone by zone."""
        found: list[tuple[tuple, str]] = []
        for bit, zone_col, clock_col, clock in (
            (F_NEED_LOCAL, "tzid", "ts_local", b.local),
            (F_NEED_SETTLE, "tzid_settlement", "ts_local_settlement", b.slocal),
        ):
            rows = flagged[(b.flags[flagged] & bit) != 0]
            if not len(rows):
                continue
            self.rows_per_row += len(rows)
            names = np.array(b.rb.column(zone_col).take(pa.array(rows)).to_pylist(), dtype=object)
            for name in dict.fromkeys(names.tolist()):
                rs = rows[names == name]
                ref = self.ref.convert(b.ts[rs], name) if name is not None else None
                bad = np.ones(len(rs), dtype=np.bool_) if ref is None else ref != clock[rs]
                b.flags[rs[bad]] |= F_LOCAL
                if len(self.local_examples) >= MAX_EXAMPLES:
                    continue
                for k in np.flatnonzero(bad)[:MAX_EXAMPLES]:
                    want = (
                        "none (no reference knows the zone)"
                        if ref is None
                        else WorldIndex.utc_label(int(ref[k]))[:-1]
                    )
                    found.append(
                        (
                            (1, int(pos[rs[k]])),
                            f"{b.label(rs[k])}; {zone_col}={name} {clock_col}="
                            f"{WorldIndex.utc_label(int(clock[rs[k]]))[:-1]}, reference {want}",
                        )
                    )
        self.local_examples = sorted(self.local_examples + found, key=lambda e: e[0])
        self.local_examples = self.local_examples[:MAX_EXAMPLES]

    def _collect_offences(self, b: Batch, pos: Positions, flagged: np.ndarray) -> None:
        f = b.flags[flagged]

        def add(code: str, bit: int, detail) -> None:
            rows = flagged[(f & bit) != 0]
            o = self.off[code]
            o.add(
                len(rows),
                [((1, int(pos[i])), f"{b.label(i)}; {detail(i)}") for i in rows[: o.want()]],
            )

        add(
            "EVENTS_IN_BUCKET",
            F_IN_BUCKET,
            lambda i: (
                f"bucket_start_utc={WorldIndex.utc_label(int(b.bstart[i]))}, outside "
                f"[start, start + {self.D}s)"
            ),
        )
        add(
            "EVENTS_SORTED",
            F_SORTED,
            lambda i: (
                f"arrival_seq={int(b.seq[i])} is out of (merchant_id, ts_utc, arrival_seq) order"
            ),
        )
        add(
            "EVENTS_SEQ",
            F_SEQ,
            lambda i: (
                f"arrival_seq={int(b.seq[i])} breaks the merchant's 1, 2, … chronological numbering"
            ),
        )
        add(
            "EVENTS_TARGET_EXCLUSIVE",
            F_TARGET,
            lambda i: (
                f"site_id={b.text('site_id', i)} edge_id={b.text('edge_id', i)} "
                f"is_virtual={bool(b.virt[i])} tzid_settlement="
                f"{b.text('tzid_settlement', i)} ts_local_settlement "
                f"{'set' if b.slocal_valid[i] else 'null'}"
            ),
        )
        add(
            "EVENTS_ROUTING_MEMBERSHIP",
            F_ROUTING,
            lambda i: (
                f"series={b.text('legal_country_iso', i)}|{b.text('zone_tzid', i)}|"
                f"{b.text('channel_group', i)} site_id={b.text('site_id', i)} "
                f"edge_id={b.text('edge_id', i)} tzid={b.text('tzid', i)}"
            ),
        )
        add(
            "EVENTS_CONSERVATION",
            F_OFF_GRID,
            lambda i: (
                f"series={b.text('legal_country_iso', i)}|{b.text('zone_tzid', i)}|"
                f"{b.text('channel_group', i)} bucket="
                f"{WorldIndex.utc_label(int(b.bstart[i]))} is not a cell of S3's grid"
            ),
        )
        # ts_local judged by the reference table: name the reference value
        local = self.off["EVENTS_LOCAL_TIME"]
        by_table = flagged[((f & F_LOCAL) != 0) & ((f & (F_NEED_LOCAL | F_NEED_SETTLE)) == 0)]
        found: list[tuple[tuple, str]] = []
        for i in by_table[: max(0, MAX_EXAMPLES - len(self.local_examples))]:
            bt = int(b.ts[i] // self.bucket_us - self.w.first_bucket)
            z = int(Batch.codes(b.tz, np.array([i]))[0])
            zs = int(Batch.codes(b.stz_codes_parts, np.array([i]))[0])
            ref = int(b.ts[i] + self.ref.offset[z, bt])
            if ref == b.local[i] and zs >= 0:
                ref_s = int(b.ts[i] + self.ref.offset[zs, bt])
                text = (
                    f"{b.label(i)}; tzid_settlement={self.index.tzids[zs]} "
                    f"ts_local_settlement={WorldIndex.utc_label(int(b.slocal[i]))[:-1]}, "
                    f"reference {WorldIndex.utc_label(ref_s)[:-1]}"
                )
            else:
                text = (
                    f"{b.label(i)}; tzid={self.index.tzids[z]} ts_local="
                    f"{WorldIndex.utc_label(int(b.local[i]))[:-1]}, reference "
                    f"{WorldIndex.utc_label(ref)[:-1]}"
                )
            found.append(((1, int(pos[i])), text))
        if found:
            self.local_examples = sorted(self.local_examples + found, key=lambda e: e[0])
            self.local_examples = self.local_examples[:MAX_EXAMPLES]
        local.add(int(np.count_nonzero(b.flags[flagged] & F_LOCAL)))

    # ------------------------------------------------------------------ per-cell rules
    def _weekend_events(self) -> tuple[int, int]:
        """(events in weekend cells, events on the grid) of the shard."""
        weekend = weekend_mask(self.ctx, self.year, len(self.index.tzids))
        zone = self.index.series_zone
        counts = self.cell_counts.reshape(self.S, self.B)
        wk = 0
        step = max(1, 4_000_000 // max(self.B, 1))
        for lo in range(0, self.S, step):
            hi = min(lo + step, self.S)
            wk += int((counts[lo:hi] * weekend[zone[lo:hi]]).sum())
        return wk, int(counts.sum())

    def _conservation(self) -> None:
        """Cells of the shard whose events differ from the S3 count (the totals are the
        merge's)."""
        o = self.off["EVENTS_CONSERVATION"]
        residual = self.cell_counts
        subtract_counts(residual, self.s3_cell, self.s3_count)
        bad = np.flatnonzero(residual)
        base = self.index.s_lo * self.B
        if len(bad):
            s3_sorted = np.sort(self.s3_cell)
            ex = []
            for c in bad[: o.want()]:
                s, b = divmod(int(c), self.B)
                n3 = (
                    int(self.s3_count[self.s3_cell == c].sum())
                    if np.searchsorted(s3_sorted, c) < len(s3_sorted)
                    and s3_sorted[np.searchsorted(s3_sorted, c)] == c
                    else 0
                )
                ex.append(
                    (
                        (2, base + int(c)),
                        f"{self.index.cell_label(s, self.w.first_bucket + b, self.D)}; "
                        f"S3 count {n3}, S4 events {n3 + int(residual[c])}",
                    )
                )
            o.add(len(bad), ex)
        self.part.cells_mismatched = len(bad)
        # the per-cell arrays are done with
        self.cell_counts = residual = None
        self.s3_cell = self.s3_count = None

    def _rederive(self, hits: list[dict[str, np.ndarray]]) -> None:
        """The sampled cells' published events against the law's (``generate_events``)."""
        m = self.ctx.arrays
        cells = self.sample_cells
        counts = self.sample_counts.astype(np.int64)
        row_series = (cells // self.B + self.index.s_lo).astype(np.int64)
        row_bucket = (cells % self.B + self.w.first_bucket).astype(np.int64)
        row_offset = np.zeros(len(cells) + 1, dtype=np.int64)
        np.cumsum(counts, out=row_offset[1:])
        n = int(row_offset[-1])
        # the stream keys of the sampled series only (a SHA-256 each): the kernel reads no
        # other series' keys
        ns, seed = self.pol.namespace, self.ctx.seed
        need = np.unique(row_series)
        keys = {}
        for f in FAMILIES_S4:
            keys[f] = np.zeros(m.n_series, dtype=np.uint64)
            keys[f][need] = stream_keys(f, ns, seed, (m.series_key(int(i)) for i in need))
        tz = self.ctx.tz
        ts = np.empty(n, dtype=np.int64)
        aid = np.empty(n, dtype=np.uint64)
        target = np.empty(n, dtype=np.int64)
        virt = np.empty(n, dtype=np.bool_)
        zone = np.empty(n, dtype=np.int32)
        local = np.empty(n, dtype=np.int64)
        settle = np.empty(n, dtype=np.int64)
        if n:
            generate_events(
                row_series,
                row_bucket,
                row_offset,
                keys["S4.time.v1"],
                keys["S4.site.v1"],
                keys["S4.edge.v1"],
                keys["S4.hybrid.v1"],
                m.mode,
                m.site_lo,
                m.site_n,
                m.edge_lo,
                m.edge_n,
                m.settle_zone,
                m.site_prob,
                m.site_alias,
                m.site_zone,
                m.edge_prob,
                m.edge_alias,
                m.edge_zone,
                self.pol.routing.p_virtual_hybrid,
                self.bucket_us,
                tz.zone_start,
                tz.trans_us,
                tz.offset_s,
                ts,
                aid,
                target,
                virt,
                zone,
                local,
                settle,
            )
        e_cell = np.repeat(cells, counts)
        e_series = np.repeat(row_series, counts)
        has_settle = virt & (m.settle_zone[e_series] >= 0)
        expected = {
            "cell": e_cell,
            "aid": aid,
            "ts": ts,
            "virt": virt,
            "site": np.where(
                virt, 0, m.site_id[np.where(virt, 0, target)] if len(m.site_id) else 0
            ).astype(np.uint64),
            "edge": np.where(
                virt, m.edge_id[np.where(virt, target, 0)] if len(m.edge_id) else 0, 0
            ).astype(np.uint64),
            "zone": zone.astype(np.int32),
            "local": local,
            "settle": np.where(has_settle, settle, 0),
            "settle_valid": has_settle,
        }
        got = {
            k: np.concatenate([h[k] for h in hits]) if hits else expected[k][:0] for k in expected
        }
        base = self.index.s_lo * self.B
        self.part.rederive_mismatch = {
            base + int(c): (
                f"{self.index.cell_label(c // self.B, self.w.first_bucket + c % self.B, self.D)}"
                f"; {why}"
            )
            for c, why in _compare_cells(expected, got, cells)
        }


# ---------------------------------------------------------------------- the merge
def merge_partials(
    ctx,
    store,
    plan: S4Plan,
    partials: list[ShardPartial],
    id_classes: list[tuple[int, list[int]]],
    law: tuple[float, float],
    world: WorldIndex | None = None,
) -> list[RuleResult]:
    """The S4 verdicts (all but EVENTS_SCHEMA) from every shard's partial, the duplicate
    count of every id class (:func:`id_class_duplicates`) and the law's weekend sums
    (:func:`weekend_law`): tallies add up, examples are the first in partition order, the
    whole-partition facts (totals, row order between shards, the sample's event budget) are
    judged here. Reads only the partition's ``_totals.json``."""
    world = world if world is not None else WorldIndex(ctx)
    parts = sorted(partials, key=lambda p: p.k)
    if [p.k for p in parts] != list(range(len(plan.shards))):
        raise ValueError(f"partials of shards {[p.k for p in parts]}, the plan has "
                         f"{len(plan.shards)}")
    year = plan.year
    w = ctx.window(year)
    D = w.bucket_seconds
    pol = ctx.policy
    stats = np.sum([p.stats for p in parts], axis=0, dtype=np.int64)
    n_rows = int(stats[ST_ROWS])
    totals = store.read_totals("arrival_events", year)

    def offences(code: str, extra: RankedOffences | None = None) -> tuple[int, list[str]]:
        return merged_offences([p.offences[code] for p in parts] + ([extra] if extra else []))

    def simple(code: str, figures: dict, extra: RankedOffences | None = None) -> RuleResult:
        n, ex = offences(code, extra)
        return verdict(code, n == 0, {**figures, "offending_rows": n}, ex)

    # EVENTS_ID_UNIQUE: the classes in order
    dup = sum(n for n, _ in id_classes)
    found = [x for _, xs in id_classes for x in xs]
    id_unique = verdict(
        "EVENTS_ID_UNIQUE",
        dup == 0,
        {"rows": n_rows, "duplicates": dup, "id_classes": plan.id_classes},
        [f"arrival_id={x}; appears more than once" for x in found],
    )

    # EVENTS_CONSERVATION: the shards' cells, then the partition's totals
    s3_sum = sum(p.s3_sum for p in parts)
    whole = RankedOffences()
    if n_rows != plan.rows:
        whole.add(1, [((3, 0), f"arrival_events; the files' footers hold {plan.rows} rows, "
                               f"the shards read {n_rows}: merchant_id statistics that do not "
                               "hold the rows")])
    if totals.get("events") != n_rows:
        whole.add(1, [((3, 1), f"arrival_events/_totals.json; events={totals.get('events')}, "
                               f"the files hold {n_rows} rows")])
    if s3_sum != n_rows:
        whole.add(1, [((3, 2), f"partition; S3 Σcount {s3_sum} != S4 rows {n_rows}")])
    n_cons, ex_cons = offences("EVENTS_CONSERVATION", whole)
    conservation = verdict(
        "EVENTS_CONSERVATION",
        n_cons == 0,
        {
            "rows": n_rows,
            "s3_rows": sum(p.s3_rows for p in parts),
            "s3_sum_count": s3_sum,
            "cells_mismatched": sum(p.cells_mismatched for p in parts),
            "totals_events": totals.get("events"),
        },
        ex_cons,
    )

    # EVENTS_LOCAL_TIME
    n_local, ex_local = offences("EVENTS_LOCAL_TIME")
    local_time = verdict(
        "EVENTS_LOCAL_TIME",
        n_local == 0,
        {
            "rows": n_rows,
            "offending_rows": n_local,
            "rows_converted_per_row": sum(p.rows_converted_per_row for p in parts),
            **(parts[0].reference if parts else {}),
        },
        ex_local,
    )

    # EVENTS_SORTED: within runs by the shards; between runs, the row before against the
    # row after in the partition
    between = RankedOffences()
    runs = sorted((r for p in parts for r in p.runs), key=lambda r: r.start)
    for a, b in zip(runs, runs[1:], strict=False):
        if a.end + 1 == b.start and a.last > b.first:
            between.add(1, [((1, b.start), f"{b.first_label}; arrival_seq={b.first[2]} is out "
                                           "of (merchant_id, ts_utc, arrival_seq) order")])
    overflow = sum(p.runs_overflow for p in parts)
    if overflow:
        between.add(overflow, [((1, -1), f"arrival_events; {overflow} more runs of rows "
                                         "interleaved with other merchants' rows")])

    # RNG_REDERIVE_S4: block accounting, then the sample within the event budget
    o = RankedOffences()
    law_blocks = {
        "S4.time.v1": int(stats[ST_ROWS]),
        "S4.hybrid.v1": int(stats[ST_HYBRID]),
        "S4.edge.v1": int(stats[ST_VIRTUAL]),
        "S4.site.v1": int(stats[ST_PHYSICAL]),
    }
    got_blocks = totals.get("blocks") or {}
    for i, (fam, n) in enumerate(law_blocks.items()):
        if got_blocks.get(fam) != n:
            o.add(1, [((0, i), f"arrival_events/_totals.json; blocks[{fam}]="
                               f"{got_blocks.get(fam)}, the law over the file gives {n}")])
    picks = sorted(x for p in parts for x in p.picks)
    kept = [x for x, c in zip(picks, np.cumsum([x[2] for x in picks]), strict=True)
            if c <= REDERIVE_EVENT_BUDGET]
    first_count: dict[int, int] = {}
    for _, cell, count in kept:
        first_count.setdefault(cell, count)
    cells = sorted(first_count)
    why = {c: t for p in parts for c, t in p.rederive_mismatch.items()}
    mismatched = [c for c in cells if c in why]
    o.add(len(mismatched), [((2, c), why[c]) for c in mismatched[:MAX_EXAMPLES]])
    n_re, ex_re = merged_offences([o, *(p.offences["RNG_REDERIVE_S4"] for p in parts)])
    rederive = verdict(
        "RNG_REDERIVE_S4",
        n_re == 0,
        {
            "sampled_cells": len(cells),
            "sampled_events": int(sum(first_count.values())),
            "cells_mismatched": len(mismatched),
            "blocks_law": law_blocks,
            "blocks_totals": got_blocks,
        },
        ex_re,
    )

    # the statistics
    hist = np.sum([p.hist for p in parts], axis=0, dtype=np.int64)
    site_hits = np.zeros(len(world.site_ids), dtype=np.int64)
    edge_hits = np.zeros(len(world.edge_ids), dtype=np.int64)
    for p in parts:
        site_hits[p.site_lo : p.site_lo + len(p.site_hits)] += p.site_hits
        edge_hits[p.edge_lo : p.edge_lo + len(p.edge_hits)] += p.edge_hits

    def first_site_of_set(set_id: int) -> str:
        k = int(np.flatnonzero(world.site_set == set_id)[0])
        return (
            f"merchant={int(world.m_ids[world.site_merchant[k]])}|"
            f"{world.countries[world.site_country[k]]}|{world.tzids[world.site_zone[k]]}"
        )

    mu_wk, mu_all = law
    return [
        id_unique,
        conservation,
        simple("EVENTS_IN_BUCKET", {"rows": n_rows}),
        local_time,
        simple("EVENTS_ROUTING_MEMBERSHIP", {"rows": n_rows}),
        simple(
            "EVENTS_TARGET_EXCLUSIVE",
            {
                "rows": n_rows,
                "virtual": int(stats[ST_VIRTUAL]),
                "physical": int(stats[ST_PHYSICAL]),
            },
        ),
        simple("EVENTS_SORTED", {"rows": n_rows, "files": len(plan.files)}, between),
        simple("EVENTS_SEQ", {"rows": n_rows, "merchants": sum(p.merchants_seen for p in parts)}),
        rederive,
        uniformity_verdict(hist, D * US, pol.validation.uniformity_z_max),
        routing_shares_verdict(
            pooled_shares(site_hits, world.site_weight, world.site_set),
            pooled_shares(edge_hits, world.edge_weight, world.edge_merchant),
            int(stats[ST_HYBRID]),
            int(stats[ST_HYBRID_VIRTUAL]),
            pol.routing.p_virtual_hybrid,
            pol.validation.routing_z_max,
            first_site_of_set,
            lambda m: f"merchant={int(world.m_ids[m])}",
        ),
        weekend_share_verdict(
            sum(p.weekend_events for p in parts),
            sum(p.grid_events for p in parts),
            mu_wk,
            mu_all,
            pol.validation.weekend_share_tolerance,
        ),
    ]


# ---------------------------------------------------------------------- statistical decisions
def uniformity_verdict(hist: np.ndarray, bucket_us: int, z_max: float) -> RuleResult:
    """EVENTS_UNIFORMITY from the histogram of within-bucket offsets: ``hist[k]`` events whose
    integer offset x = ts_utc − bucket_start (µs, in [0, D)) has ⌊x·K/D⌋ = k, K = len(hist),
    D = ``bucket_us``. Passes when Pearson's X² against the exact bin probabilities gives
    |z| ≤ ``z_max``."""
    K = len(hist)
    D = bucket_us
    # integer offsets x in [0, D) fall in bin ⌊xK/D⌋: bin k holds ⌈(k+1)D/K⌉ − ⌈kD/K⌉ of them
    probs = np.diff(uniformity_edges(D, K)) / D
    x2, mean, var, n = pearson_z(hist, probs)
    z = z_of(x2, mean, var)
    worst = int(np.argmax(np.abs(hist - n * probs))) if n else 0
    return verdict(
        "EVENTS_UNIFORMITY",
        abs(z) <= z_max,
        {"n": n, "bins": K, "chi2": x2, "z": z, "z_max": z_max},
        [
            f"arrival_events; within-bucket offsets X²={x2:.1f} on {K - 1} df, "
            f"z={z:.2f}; bin {worst} holds {int(hist[worst])} of n={n}"
        ],
    )


def routing_shares_verdict(
    sites: dict,
    edges: dict,
    hybrid_events: int,
    hybrid_virtual: int,
    p_virtual_hybrid: float,
    z_max: float,
    site_set_label: Callable[[int], str],
    edge_set_label: Callable[[int], str],
) -> RuleResult:
    """EVENTS_ROUTING_SHARES from the pooled X² of site hits per site set and of edge hits per
    merchant (each a :func:`pooled_shares` result) and the HYBRID coin: ``hybrid_virtual`` of
    ``hybrid_events`` routed to an edge against ``p_virtual_hybrid`` (binomial z). Passes when
    every |z| ≤ ``z_max``; the labels name the worst set in the examples."""
    n_h, v_h, p = hybrid_events, hybrid_virtual, p_virtual_hybrid
    z_h = z_of(float(v_h), n_h * p, n_h * p * (1.0 - p)) if n_h else 0.0
    examples = []
    for what, shares, first_of_set in (
        ("site set", sites, site_set_label),
        ("edge set", edges, edge_set_label),
    ):
        if abs(shares["z"]) > z_max and shares["worst_set"] is not None:
            examples.append(
                f"{what} {first_of_set(shares['worst_set'])}; pooled "
                f"z={shares['z']:.2f}, this set z={shares['worst_z']:.1f} over "
                f"{shares['worst_events']} events"
            )
    if abs(z_h) > z_max:
        examples.append(
            f"HYBRID merchants; {v_h} of {n_h} events virtual, expected share {p}, z={z_h:.2f}"
        )
    ok = abs(sites["z"]) <= z_max and abs(edges["z"]) <= z_max and abs(z_h) <= z_max
    summary = {k: v for k, v in sites.items() if not k.startswith("worst")}
    e_summary = {k: v for k, v in edges.items() if not k.startswith("worst")}
    return verdict(
        "EVENTS_ROUTING_SHARES",
        ok,
        {
            "z_sites": sites["z"],
            "z_edges": edges["z"],
            "z_hybrid": z_h,
            "z_max": z_max,
            "sites": summary,
            "edges": e_summary,
            "hybrid_events": n_h,
            "hybrid_virtual": v_h,
            "p_virtual_hybrid": p,
        },
        examples,
    )


def weekend_share_verdict(
    weekend_events: int, events: int, mu_weekend: float, mu_all: float, tolerance: float
) -> RuleResult:
    """EVENTS_WEEKEND_SHARE: the realised share ``weekend_events / events`` (events in buckets
    that start on a Saturday or Sunday in the series' zone) against the law's share
    ``mu_weekend / mu_all`` (Σμ over those cells / Σμ over all cells); passes when they
    differ by at most ``tolerance``."""
    wk, total, mu_wk = weekend_events, events, mu_weekend
    realised = wk / total if total else 0.0
    expected = mu_wk / mu_all if mu_all > 0 else 0.0
    tol = tolerance
    ok = abs(realised - expected) <= tol
    return verdict(
        "EVENTS_WEEKEND_SHARE",
        ok,
        {
            "realised": realised,
            "expected": expected,
            "difference": realised - expected,
            "tolerance": tol,
            "weekend_events": wk,
            "events": total,
            "sum_mu_weekend": mu_wk,
            "sum_mu": mu_all,
        },
        [f"arrival_events; weekend share {realised:.4f}, expected {expected:.4f} ± {tol}"],
    )


def pooled_shares(hits: np.ndarray, weight: np.ndarray, set_id: np.ndarray) -> dict:
    """Pearson X² of hits against weight shares within each set, pooled over the sets with at
    least one hit and two targets: z = (ΣX² − Σ(k−1)) / √(Σ Var), Var per set by Haldane's
    exact formula (see verdicts.pearson_z). Also the set that deviates most."""
    set_id = np.asarray(set_id, dtype=np.int64)
    n_sets = int(set_id.max()) + 1 if len(set_id) else 0
    n = np.bincount(set_id, weights=hits, minlength=n_sets)
    w_tot = np.bincount(set_id, weights=weight, minlength=n_sets)
    k = np.bincount(set_id, minlength=n_sets).astype(np.float64)
    p = weight / w_tot[set_id]
    e = n[set_id] * p
    contrib = np.where(e > 0, (hits - e) ** 2 / np.where(e > 0, e, 1.0), 0.0)
    x2 = np.bincount(set_id, weights=contrib, minlength=n_sets)
    inv_p = np.bincount(set_id, weights=1.0 / p, minlength=n_sets)
    use = (n > 0) & (k >= 2)
    var = np.maximum(
        2.0 * (k - 1.0) + (inv_p - k * k - 2.0 * k + 2.0) / np.where(n > 0, n, 1.0), 0.0
    )
    stat = float(x2[use].sum())
    df = float((k[use] - 1.0).sum())
    z = z_of(stat, df, float(var[use].sum()))
    per_set = np.where(use, (x2 - (k - 1.0)) / np.sqrt(np.where(var > 0, var, 1.0)), 0.0)
    worst = int(np.argmax(np.abs(per_set))) if use.any() else None
    return {
        "z": z,
        "chi2": stat,
        "df": df,
        "sets_tested": int(use.sum()),
        "events": int(n.sum()),
        "worst_set": worst,
        "worst_z": None if worst is None else float(per_set[worst]),
        "worst_events": None if worst is None else int(n[worst]),
    }


def _compare_cells(
    expected: dict[str, np.ndarray], got: dict[str, np.ndarray], cells: np.ndarray
) -> list[tuple[int, str]]:
    """Cells whose published events differ from the law's (compared sorted by arrival_id)."""
    fields = ("ts", "virt", "site", "edge", "zone", "local", "settle", "settle_valid")
    eo = np.lexsort((expected["aid"], expected["cell"]))
    go = np.lexsort((got["aid"], got["cell"]))
    e = {k: v[eo] for k, v in expected.items()}
    g = {k: v[go] for k, v in got.items()}
    e_n = np.searchsorted(e["cell"], cells, side="right") - np.searchsorted(e["cell"], cells)
    g_n = np.searchsorted(g["cell"], cells, side="right") - np.searchsorted(g["cell"], cells)
    out: list[tuple[int, str]] = []
    e_lo = np.searchsorted(e["cell"], cells)
    g_lo = np.searchsorted(g["cell"], cells)
    for k, c in enumerate(cells.tolist()):
        if e_n[k] != g_n[k]:
            out.append((c, f"{g_n[k]} events published, the law generates {e_n[k]}"))
            continue
        a, b = e_lo[k], g_lo[k]
        m = e_n[k]
        if not np.array_equal(e["aid"][a : a + m], g["aid"][b : b + m]):
            out.append((c, "arrival_ids differ from the law's"))
            continue
        for f in fields:
            if not np.array_equal(e[f][a : a + m], g[f][b : b + m]):
                j = int(np.flatnonzero(e[f][a : a + m] != g[f][b : b + m])[0])
                out.append(
                    (
                        c,
                        f"arrival_id={int(e['aid'][a + j])}: {f} published "
                        f"{g[f][b + j]!r}, the law gives {e[f][a + j]!r}",
                    )
                )
                break
    return out
