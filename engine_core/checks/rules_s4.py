"""S4 rules: the arrival events of one partition, every row in one streaming pass.

- EVENTS_ID_UNIQUE: no arrival_id twice. Ids are collected in classes (id mod P, P chosen so
  a class fits ``ID_CLASS_BUDGET``) and each class is bucketed and sorted in parallel; P > 1
  re-reads only the arrival_id column.
- EVENTS_CONSERVATION: for every (series, bucket) cell, the number of events equals the S3
  count — events are tallied per cell over the dense series × bucket grid, S3 counts are
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
- EVENTS_SORTED: rows (across files) ordered by (merchant_id, ts_utc, arrival_seq).
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
import math
from collections.abc import Callable

import numba
import numpy as np
import pyarrow as pa

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
    IdClasses,
    duplicate_ids,
    sample_table,
    scan_rows,
    subtract_counts,
    uniformity_edges,
)
from engine_core.checks.law import law_mu, published_groups, read_latent
from engine_core.checks.local_clock import LocalClockReference
from engine_core.checks.rules_s2 import evenly_spaced
from engine_core.checks.verdicts import (
    MAX_EXAMPLES,
    Offences,
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
from engine_core.io import iter_batches
from engine_core.kernels.arrivals import generate_events
from engine_core.timebase import US_PER_S as US
from engine_core.tz import to_local_us

ID_CLASS_BUDGET = 1 << 24  # arrival_ids held at once by EVENTS_ID_UNIQUE (x2 while sorting)
REDERIVE_EVENT_BUDGET = 1 << 20
INT64_MIN = np.iinfo(np.int64).min
FAMILIES_S4 = ("S4.time.v1", "S4.site.v1", "S4.edge.v1", "S4.hybrid.v1")


def s4_rules(ctx, store, year: int) -> list[RuleResult]:
    """Every S4 rule over ``year``: the published ``arrival_events`` and its totals, in one
    pass, against the published ``bucket_counts`` (conservation, the re-derivation sample),
    ``grouping`` and ``latent_intensity`` (the weekend rule's μ), the world and the policy.
    The statistical decisions are the functions over arrays below (``uniformity_verdict``,
    ``routing_shares_verdict``, ``weekend_share_verdict``)."""
    first = [
        guarded(
            "EVENTS_SCHEMA", lambda: schema_rule(store, "EVENTS_SCHEMA", "arrival_events", year)
        )
    ]
    return state_rules("s4", first, lambda: EventChecks(ctx, store, year).run())


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
        self._cap = 0
        self._flags = self._hits = self._cells = np.empty(0, dtype=np.int64)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if n > self._cap:
            self._cap = n
            self._flags = np.empty(n, dtype=np.int32)
            self._hits = np.empty(n, dtype=np.int64)
            self._cells = np.empty(n, dtype=np.int64)
        return self._flags[:n], self._hits[:n], self._cells[:n]


class EventChecks:
    """The S4 rules of one partition: inputs (S3 cells, the re-derivation sample, the local
    clock reference), one pass over the events, then one verdict per rule."""

    def __init__(self, ctx, store, year: int) -> None:
        self.ctx = ctx
        self.store = store
        self.year = year
        self.w = ctx.window(year)
        self.pol = ctx.policy
        self.index = WorldIndex(ctx)
        self.S = ctx.arrays.n_series
        self.B = self.w.n_buckets
        self.D = self.w.bucket_seconds
        self.bucket_us = self.D * US
        self.off = {
            code: Offences()
            for code in (
                "EVENTS_ID_UNIQUE",
                "EVENTS_CONSERVATION",
                "EVENTS_IN_BUCKET",
                "EVENTS_LOCAL_TIME",
                "EVENTS_ROUTING_MEMBERSHIP",
                "EVENTS_TARGET_EXCLUSIVE",
                "EVENTS_SORTED",
                "EVENTS_SEQ",
                "RNG_REDERIVE_S4",
            )
        }
        self.local_examples: list[str] = []
        self.rows_per_row = 0  # rows whose local clocks were converted one by one

    # ------------------------------------------------------------------ inputs
    def _s3_cells(self) -> None:
        """The S3 rows as (cell, count), streamed (a year of the reference world is 16 M
        rows: 16 bytes a row instead of the table)."""
        n_max = self.store.dataset_rows("bucket_counts", self.year)
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
        for t in self.store.dataset_batches("bucket_counts", self.year, columns):
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
            self.s3_rows += t.num_rows
            off_grid = np.flatnonzero(~ok)
            if len(off_grid):
                mids = t.column("merchant_id").to_pylist()
                self.off["EVENTS_CONSERVATION"].add(
                    len(off_grid),
                    [
                        f"bucket_counts row merchant={mids[i]} "
                        f"bucket={WorldIndex.utc_label(int(start[i]))}; not a (series, bucket) "
                        "cell of this partition, its events cannot be matched"
                        for i in off_grid[: self.off["EVENTS_CONSERVATION"].want()]
                    ],
                )
        self.s3_cell = cells[:k]
        self.s3_count = counts[:k]

    def _sample(self) -> None:
        """S3 rows to re-derive: evenly spaced, within the event budget."""
        order = np.argsort(self.s3_cell, kind="stable")
        picks = order[evenly_spaced(len(order), self.pol.validation.rng_rederive_sample)]
        within = np.cumsum(self.s3_count[picks]) <= REDERIVE_EVENT_BUDGET
        picks = picks[within]
        cells, first = np.unique(self.s3_cell[picks], return_index=True)
        self.sample_cells = cells
        self.sample_counts = self.s3_count[picks][first]
        self.hkeys, self.hbits = sample_table(cells)

    # ------------------------------------------------------------------ the pass
    def run(self) -> list[RuleResult]:
        idx = self.index
        self._s3_cells()
        self._sample()
        self.ref = LocalClockReference(idx.tzids, self.w.first_bucket, self.B, self.D)
        files = self.store.dataset_files("arrival_events", self.year)
        if not files:
            raise FileNotFoundError(f"arrival_events year={self.year} has no Parquet file")
        n_rows = self.store.dataset_rows("arrival_events", self.year)
        # classes of ids by their low bits, each small enough to hold (a power of two)
        self.id_classes = 1 << max(0, math.ceil(math.log2(max(n_rows, 1) / ID_CLASS_BUDGET)))
        self.cell_counts = np.zeros(self.S * self.B, dtype=np.int32)
        self.site_hits = np.zeros(len(idx.site_ids), dtype=np.int64)
        self.edge_hits = np.zeros(len(idx.edge_ids), dtype=np.int64)
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
        ids = IdClasses(self.id_classes)
        try:
            self._scan(
                files, ids, hits, carry_mid, carry_ts_seq, carry_valid, bin_edges, last_seq, last_ts
            )
            self.n_rows = int(self.stats[ST_ROWS])
            id_unique = self._id_unique(ids)
        finally:
            ids.close()
        self.merchants_seen = int(np.count_nonzero(last_seq))
        return [
            id_unique,
            self._conservation(),
            self._simple("EVENTS_IN_BUCKET", {"rows": self.n_rows}),
            self._local_time(),
            self._simple("EVENTS_ROUTING_MEMBERSHIP", {"rows": self.n_rows}),
            self._simple(
                "EVENTS_TARGET_EXCLUSIVE",
                {
                    "rows": self.n_rows,
                    "virtual": int(self.stats[ST_VIRTUAL]),
                    "physical": int(self.stats[ST_PHYSICAL]),
                },
            ),
            self._simple("EVENTS_SORTED", {"rows": self.n_rows, "files": len(files)}),
            self._simple("EVENTS_SEQ", {"rows": self.n_rows, "merchants": self.merchants_seen}),
            self._rederive(hits),
            self._uniformity(),
            self._routing_shares(),
            self._weekend_share(),
        ]

    def _scan(
        self, files, ids, hits, carry_mid, carry_ts_seq, carry_valid, bin_edges, last_seq, last_ts
    ) -> None:
        """The one pass over every row: flags, tallies, the sampled cells' events, the ids."""
        idx = self.index
        scratch = ScanScratch()
        for rb in iter_batches(files, self.store.storage.fs, COLUMNS):
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
            flagged = np.flatnonzero(b.flags)
            if len(flagged):
                self._per_row_clocks(b, flagged)
                self._collect_offences(b, flagged)
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

    def _per_row_clocks(self, b: Batch, flagged: np.ndarray) -> None:
        """Rows the reference table cannot judge (a transition inside their bucket, a zone
        outside the table): convert them one by one, zone by zone."""
        o = self.off["EVENTS_LOCAL_TIME"]
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
                for k in np.flatnonzero(bad)[: o.want() - len(self.local_examples)]:
                    want = (
                        "none (no reference knows the zone)"
                        if ref is None
                        else WorldIndex.utc_label(int(ref[k]))[:-1]
                    )
                    self.local_examples.append(
                        f"{b.label(rs[k])}; {zone_col}={name} {clock_col}="
                        f"{WorldIndex.utc_label(int(clock[rs[k]]))[:-1]}, reference {want}"
                    )

    def _collect_offences(self, b: Batch, flagged: np.ndarray) -> None:
        f = b.flags[flagged]

        def add(code: str, bit: int, detail) -> None:
            rows = flagged[(f & bit) != 0]
            o = self.off[code]
            o.add(len(rows), [f"{b.label(i)}; {detail(i)}" for i in rows[: o.want()]])

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
        for i in by_table[: max(0, MAX_EXAMPLES - len(self.local_examples))]:
            bt = int(b.ts[i] // self.bucket_us - self.w.first_bucket)
            z = int(Batch.codes(b.tz, np.array([i]))[0])
            zs = int(Batch.codes(b.stz_codes_parts, np.array([i]))[0])
            ref = int(b.ts[i] + self.ref.offset[z, bt])
            if ref == b.local[i] and zs >= 0:
                ref_s = int(b.ts[i] + self.ref.offset[zs, bt])
                self.local_examples.append(
                    f"{b.label(i)}; tzid_settlement={self.index.tzids[zs]} "
                    f"ts_local_settlement={WorldIndex.utc_label(int(b.slocal[i]))[:-1]}, "
                    f"reference {WorldIndex.utc_label(ref_s)[:-1]}"
                )
            else:
                self.local_examples.append(
                    f"{b.label(i)}; tzid={self.index.tzids[z]} ts_local="
                    f"{WorldIndex.utc_label(int(b.local[i]))[:-1]}, reference "
                    f"{WorldIndex.utc_label(ref)[:-1]}"
                )
        local.add(int(np.count_nonzero(b.flags[flagged] & F_LOCAL)))
        local.examples = self.local_examples[:MAX_EXAMPLES]

    def _simple(self, code: str, figures: dict) -> RuleResult:
        o = self.off[code]
        return verdict(code, o.ok, {**figures, "offending_rows": o.count}, o.examples)

    # ------------------------------------------------------------------ EVENTS_ID_UNIQUE
    def _id_unique(self, ids: IdClasses) -> RuleResult:
        total = 0
        examples = np.zeros(MAX_EXAMPLES, dtype=np.uint64)
        found: list[int] = []
        for arr in ids.classes():
            n_dup = duplicate_ids(arr, examples, 4 * numba.get_num_threads())
            del arr
            total += int(n_dup)
            found += [int(x) for x in examples[: min(int(n_dup), MAX_EXAMPLES)]]
        P = ids.n
        return verdict(
            "EVENTS_ID_UNIQUE",
            total == 0,
            {"rows": self.n_rows, "duplicates": total, "id_classes": P},
            [f"arrival_id={x}; appears more than once" for x in found],
        )

    # ------------------------------------------------------------------ EVENTS_CONSERVATION
    def _conservation(self) -> RuleResult:
        o = self.off["EVENTS_CONSERVATION"]
        totals = self.store.read_totals("arrival_events", self.year)
        self.weekend_realised = self._weekend_events()  # before the counts are consumed
        residual = self.cell_counts
        subtract_counts(residual, self.s3_cell, self.s3_count)
        bad = np.flatnonzero(residual)
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
                    f"{self.index.cell_label(s, self.w.first_bucket + b, self.D)}; "
                    f"S3 count {n3}, S4 events {n3 + int(residual[c])}"
                )
            o.add(len(bad), ex)
        if totals.get("events") != self.n_rows:
            o.add(
                1,
                [
                    f"arrival_events/_totals.json; events={totals.get('events')}, the files "
                    f"hold {self.n_rows} rows"
                ],
            )
        if self.s3_sum != self.n_rows:
            o.add(1, [f"partition; S3 Σcount {self.s3_sum} != S4 rows {self.n_rows}"])
        # the per-cell arrays are done with: free them before the law pass of the weekend rule
        self.cell_counts = residual = None
        self.s3_cell = self.s3_count = None
        return verdict(
            "EVENTS_CONSERVATION",
            o.ok,
            {
                "rows": self.n_rows,
                "s3_rows": self.s3_rows,
                "s3_sum_count": self.s3_sum,
                "cells_mismatched": len(bad),
                "totals_events": totals.get("events"),
            },
            o.examples,
        )

    # ------------------------------------------------------------------ EVENTS_LOCAL_TIME
    def _local_time(self) -> RuleResult:
        o = self.off["EVENTS_LOCAL_TIME"]
        figures = {
            "rows": self.n_rows,
            "offending_rows": o.count,
            "rows_converted_per_row": self.rows_per_row,
            **self.ref.figures(),
        }
        return verdict("EVENTS_LOCAL_TIME", o.ok, figures, o.examples)

    # ------------------------------------------------------------------ RNG_REDERIVE_S4
    def _rederive(self, hits: list[dict[str, np.ndarray]]) -> RuleResult:
        m = self.ctx.arrays
        o = self.off["RNG_REDERIVE_S4"]
        totals = self.store.read_totals("arrival_events", self.year)
        law_blocks = {
            "S4.time.v1": int(self.stats[ST_ROWS]),
            "S4.hybrid.v1": int(self.stats[ST_HYBRID]),
            "S4.edge.v1": int(self.stats[ST_VIRTUAL]),
            "S4.site.v1": int(self.stats[ST_PHYSICAL]),
        }
        got_blocks = totals.get("blocks") or {}
        for fam, n in law_blocks.items():
            if got_blocks.get(fam) != n:
                o.add(
                    1,
                    [
                        f"arrival_events/_totals.json; blocks[{fam}]={got_blocks.get(fam)}, "
                        f"the law over the file gives {n}"
                    ],
                )
        # expected events of the sampled cells
        cells = self.sample_cells
        counts = self.sample_counts.astype(np.int64)
        row_series = (cells // self.B).astype(np.int64)
        row_bucket = (cells % self.B + self.w.first_bucket).astype(np.int64)
        row_offset = np.zeros(len(cells) + 1, dtype=np.int64)
        np.cumsum(counts, out=row_offset[1:])
        n = int(row_offset[-1])
        ns, seed = self.pol.namespace, self.ctx.seed
        keys = {f: m.series_keys(f, ns, seed) for f in FAMILIES_S4}
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
        mismatched = _compare_cells(expected, got, cells)
        o.add(
            len(mismatched),
            [
                f"{self.index.cell_label(c // self.B, self.w.first_bucket + c % self.B, self.D)}; "
                f"{why}"
                for c, why in mismatched[: o.want()]
            ],
        )
        return verdict(
            "RNG_REDERIVE_S4",
            o.ok,
            {
                "sampled_cells": len(cells),
                "sampled_events": n,
                "cells_mismatched": len(mismatched),
                "blocks_law": law_blocks,
                "blocks_totals": got_blocks,
            },
            o.examples,
        )

    # ------------------------------------------------------------------ statistics
    def _uniformity(self) -> RuleResult:
        return uniformity_verdict(self.hist, self.bucket_us, self.pol.validation.uniformity_z_max)

    def _routing_shares(self) -> RuleResult:
        idx = self.index
        return routing_shares_verdict(
            pooled_shares(self.site_hits, idx.site_weight, idx.site_set),
            pooled_shares(self.edge_hits, idx.edge_weight, idx.edge_merchant),
            int(self.stats[ST_HYBRID]),
            int(self.stats[ST_HYBRID_VIRTUAL]),
            self.pol.routing.p_virtual_hybrid,
            self.pol.validation.routing_z_max,
            self._first_site_of_set,
            self._first_edge_of_merchant,
        )

    def _first_site_of_set(self, set_id: int) -> str:
        idx = self.index
        k = int(np.flatnonzero(idx.site_set == set_id)[0])
        return (
            f"merchant={int(idx.m_ids[idx.site_merchant[k]])}|"
            f"{idx.countries[idx.site_country[k]]}|{idx.tzids[idx.site_zone[k]]}"
        )

    def _first_edge_of_merchant(self, m: int) -> str:
        return f"merchant={int(self.index.m_ids[m])}"

    def _weekend_mask(self) -> np.ndarray:
        """[zone, bucket]: the bucket starts on a Saturday or Sunday in the zone (law tz)."""
        tz = self.ctx.tz
        Z = len(self.index.tzids)
        starts = (self.w.first_bucket + np.arange(self.B, dtype=np.int64)) * self.bucket_us
        zone = np.repeat(np.arange(Z, dtype=np.int64), self.B)
        loc = to_local_us(tz, zone, np.tile(starts, Z))
        weekday = (np.floor_divide(loc, 86400 * US) + 3) % 7  # 1970-01-01 was a Thursday
        return (weekday >= 5).reshape(Z, self.B)

    def _weekend_events(self) -> tuple[int, int]:
        self.weekend = self._weekend_mask()
        zone = self.index.series_zone
        counts = self.cell_counts.reshape(self.S, self.B)
        wk = 0
        step = max(1, 4_000_000 // max(self.B, 1))
        for lo in range(0, self.S, step):
            hi = min(lo + step, self.S)
            wk += int((counts[lo:hi] * self.weekend[zone[lo:hi]]).sum())
        return wk, int(counts.sum())

    def _weekend_share(self) -> RuleResult:
        groups = published_groups(self.ctx, self.store, self.year, self.index)
        lat = read_latent(self.ctx, self.store, self.year, groups.group_ids)
        zone = self.index.series_zone
        mu_wk = 0.0
        mu_all = 0.0
        for lo, hi, mu in law_mu(self.ctx, self.store, self.year, lat.factor,
                                 groups.group_of_series):
            mu_all += float(np.nansum(mu))
            mu_wk += float(np.nansum(mu * self.weekend[zone[lo:hi]]))
        wk, total = self.weekend_realised
        return weekend_share_verdict(
            wk, total, mu_wk, mu_all, self.pol.validation.weekend_share_tolerance
        )


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
