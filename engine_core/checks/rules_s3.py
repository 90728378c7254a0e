"""S3 rules: the sparse bucket counts of one partition.

Every row is checked; the cells S3 did not write (N = 0) are covered through the law: μ of
every (series, grid bucket) cell is recomputed (engine_core/checks/law.py).

- COUNTS_KEY_UNIQUE: (series, bucket) unique over all rows; count > 0 on every row.
- COUNTS_DOMAIN_ALIGN: every row's bucket_start_utc is a bucket of the published time grid
  (the previous system's ``bucket_missing``), every row names a series of the world, and every
  series of the world has routing targets in the world tables — a site in its (merchant,
  country, tzid) unless VIRTUAL_ONLY, an edge of its merchant unless NON_VIRTUAL.
- COUNTS_COMPLETENESS: ``_totals.json`` says every series × grid bucket was sampled
  (cells_sampled = series · buckets for the world's series and the window's buckets), and its
  rows, Σcount, Σμ and capped agree with the file.
- COUNTS_CAP: count ≤ max_count_per_bucket on every row; capped ⇒ count = max_count_per_bucket.
- COUNTS_DISPERSION: over every cell with μ > ε that was not capped, two z-scores:
  mean   z₁ = (Σ N − Σ μ) / √(Σ v),           v = μ + μ²/κ  (Poisson: v = μ);
  spread z₂ = Σ [(N − μ)² − v] / √(Σ (k₄ + 2v²)),
  k₄ = μ(1+a)(1+6a+6a²) with a = μ/κ the fourth cumulant of NB2 (Poisson: k₄ = μ), so that
  Var[(N − μ)²] = k₄ + 2v². Cells are independent given μ, so both are ≈ N(0, 1) under the
  law; N = 0 cells enter with (0 − μ)² = μ², which is why μ of every cell is recomputed rather
  than read from the N > 0 rows (a statistic over those rows alone is biased). Passes when
  |z₁| and |z₂| ≤ ``dispersion_z_max``.
- RNG_REDERIVE_S3: μ of every row equals the law's μ bit for bit; no row sits in a cell with
  μ ≤ ε (no draw there); totals' blocks = number of cells with μ > ε (RNG accounting); and
  ``rng_rederive_sample`` cells — half evenly spaced over the rows, half evenly spaced over
  all series × buckets (mostly N = 0 cells) — redrawn with ``count_draw`` (count and capped
  flag) and compared with what was published.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numba as nb
import numpy as np
import pyarrow as pa

from engine_core.checks.contract import schema_rule
from engine_core.checks.law import law_inputs, law_mu, series_chunks
from engine_core.checks.rules_s2 import evenly_spaced
from engine_core.checks.verdicts import Offences, RuleResult, guarded, state_rules, verdict
from engine_core.checks.world_index import WorldIndex, boolean, i64
from engine_core.io.batches import prefetched
from engine_core.kernels.arrivals import MODE_PHYSICAL, MODE_VIRTUAL
from engine_core.kernels.counts import count_draw
from engine_core.kernels.parallel import parallel_for, side_pool
from engine_core.timebase import US_PER_S as US

REL_TOL = 1e-9  # float sums of the same numbers in another order
KEY_COLUMNS = (
    "merchant_id",
    "legal_country_iso",
    "zone_tzid",
    "channel_group",
    "bucket_start_utc",
)
BUCKET_COUNT_COLUMNS = (*KEY_COLUMNS, "mu", "count", "capped")


MOMENT_TASKS = 16  # fixed cut of a chunk's rows: the float sums never depend on the threads


def cell_moments(mu, n, capped, kappa, poisson, eps, out):
    """out += [Σμ_all, cells μ>ε, undefined μ, ΣN, Σμ, Σv, Σ((N-μ)²-v), Σ(k4+2v²)] over the
    chunk; the last five over cells with μ > ε and not capped. Rows in parallel ranges whose
    partial sums are added in range order."""
    for part in parallel_for(
        _moments_rows, mu.shape[0], mu, n, capped, kappa, poisson, eps, tasks=MOMENT_TASKS
    ):
        out += part


@nb.njit(cache=True, nogil=True)
def _moments_rows(lo, hi, mu, n, capped, kappa, poisson, eps):
    out = np.zeros(8)
    s_all = 0.0
    blocks = 0
    undefined = 0
    s_n = 0.0
    s_mu = 0.0
    s_v = 0.0
    s_t = 0.0
    s_var = 0.0
    for i in range(lo, hi):
        k = kappa[i]
        for j in range(mu.shape[1]):
            m = mu[i, j]
            if not math.isfinite(m):
                undefined += 1
                continue
            s_all += m
            if m <= eps:
                continue
            blocks += 1
            if capped[i, j]:
                continue
            a = 0.0 if poisson else m / k
            v = m * (1.0 + a)
            k4 = v * (1.0 + 6.0 * a + 6.0 * a * a)
            d = n[i, j] - m
            s_n += n[i, j]
            s_mu += m
            s_v += v
            s_t += d * d - v
            s_var += k4 + 2.0 * v * v
    out[0] = s_all
    out[1] = blocks
    out[2] = undefined
    out[3] = s_n
    out[4] = s_mu
    out[5] = s_v
    out[6] = s_t
    out[7] = s_var
    return out


def dispersion_verdict(
    sums: np.ndarray, law: str, z_max: float, sum_mu_all_totals: float | None = None
) -> RuleResult:
    """COUNTS_DISPERSION from the eight sums :func:`cell_moments` accumulates over every cell
    (Σμ, cells with μ > ε, cells without a law μ, then over the cells with μ > ε not capped:
    ΣN, Σμ, Σv, Σ((N − μ)² − v), Σ(k₄ + 2v²)) under ``law`` (nb2 or poisson): passes when
    every cell has a μ and |z_mean|, |z_dispersion| ≤ ``z_max``. ``sum_mu_all_totals`` (S3's
    own Σμ, from its totals) is reported beside the law's."""
    s_all, blocks, undefined, s_n, s_mu, s_v, s_t, s_var = np.asarray(sums).tolist()
    z_mean = (s_n - s_mu) / math.sqrt(s_v) if s_v > 0 else 0.0
    z_disp = s_t / math.sqrt(s_var) if s_var > 0 else 0.0
    ok_disp = undefined == 0 and abs(z_mean) <= z_max and abs(z_disp) <= z_max
    return verdict(
        "COUNTS_DISPERSION",
        ok_disp,
        {
            "law": law,
            "z_mean": z_mean,
            "z_dispersion": z_disp,
            "z_max": z_max,
            "sum_count": s_n,
            "sum_mu": s_mu,
            "sum_var": s_v,
            "dispersion_ratio": (s_t + s_v) / s_v if s_v > 0 else None,
            "sum_mu_all_law": s_all,
            "sum_mu_all_totals": sum_mu_all_totals,
            "cells": int(blocks),
            "undefined_mu_cells": int(undefined),
        },
        [f"bucket_counts; mean z={z_mean:.2f}, dispersion z={z_disp:.2f} (|z| ≤ {z_max})"]
        + (
            [f"bucket_counts; {int(undefined)} cells without a law μ (no group or factor)"]
            if undefined
            else []
        ),
    )


def routable_series(index: WorldIndex) -> tuple[np.ndarray, np.ndarray]:
    """(sites in the series' (merchant, country, tzid), edges of its merchant) per series,
    counted from the world tables."""
    site_key = (index.site_merchant * index.n_c + index.site_country) * index.n_z + index.site_zone
    series_key = (
        index.series_merchant * index.n_c + index.series_country
    ) * index.n_z + index.series_zone
    sk = np.sort(site_key)
    n_sites = np.searchsorted(sk, series_key, side="right") - np.searchsorted(sk, series_key)
    n_edges = (index.m_edge_hi - index.m_edge_lo)[index.series_merchant]
    return n_sites, n_edges


def s3_rules(ctx, store, year: int) -> list[RuleResult]:
    """Every S3 rule over ``year``: the published ``bucket_counts`` and its totals, read
    against the published ``time_grid``, ``grouping`` and ``latent_intensity`` (the law's μ
    of every cell, engine_core/checks/law.py), the world and the policy."""
    first = [
        guarded(
            "COUNTS_SCHEMA", lambda: schema_rule(store, "COUNTS_SCHEMA", "bucket_counts", year)
        )
    ]
    return state_rules("s3", first, lambda: _counts_checks(ctx, store, year))


class CountRows:
    """Two streaming passes over the S3 partition. The first (the constructor) judges the
    per-row rules (domain, cap, count > 0), adds up the totals and counts the rows on the
    (series, grid bucket) grid that fall in each series chunk of ``chunks``; the second
    (:meth:`by_chunk`) hands over those rows chunk by chunk, sorted by cell. S3 writes its
    rows in merchant order, so a chunk is complete soon after it starts and memory holds
    about one chunk's rows, never the partition (a large-world quarter is 44 M rows); rows
    out of order are held until their chunk is complete."""

    def __init__(self, ctx, store, year: int, index: WorldIndex,
                 chunks: list[tuple[int, int]]) -> None:
        w = ctx.window(year)
        self.store, self.year = store, year
        self.index = index
        self.B, self.D = w.n_buckets, w.bucket_seconds
        self.first = w.first_bucket
        self.max_count = ctx.policy.counts.max_count_per_bucket
        self.grid = i64(
            store.read_dataset("time_grid", year, ["bucket_start_utc"]).column("bucket_start_utc")
        )
        # on_grid[b]: the grid publishes bucket b of the window (a row's start is in the grid
        # iff it is aligned, inside the window and its bucket is published)
        g = np.floor_divide(self.grid, self.D * US) - self.first
        g = g[(self.grid % (self.D * US) == 0) & (g >= 0) & (g < self.B)]
        self.on_grid = np.zeros(self.B, dtype=np.bool_)
        self.on_grid[g] = True
        self.chunks = chunks
        self.chunk_lo = np.array([lo for lo, _ in chunks], dtype=np.int64)
        self.rows = 0
        self.sum_count = 0
        self.sum_mu = 0.0
        self.capped = 0
        self.missing_bucket = Offences()
        self.foreign = Offences()
        self.nonpos = Offences()
        self.over = Offences()
        self.wrong_flag = Offences()
        self.outside_dups = Offences()
        self._seen_outside: set[tuple] = set()
        self.per_chunk = np.zeros(len(chunks), dtype=np.int64)
        for t in store.dataset_batches("bucket_counts", year, list(BUCKET_COUNT_COLUMNS)):
            cells, *_ = self._batch(t)
            self.per_chunk += np.bincount(self._chunk_of(cells), minlength=len(chunks))
        # index of a chunk's first row among all grid rows sorted by cell
        self.chunk_start = np.concatenate([[0], np.cumsum(self.per_chunk)]).astype(np.int64)
        self.grid_rows = int(self.chunk_start[-1])

    def _chunk_of(self, cells: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.chunk_lo, cells // self.B, side="right") - 1

    def by_chunk(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """(cell, count, mu, capped) of the grid rows of each chunk in turn, sorted by cell
        (stable: duplicates keep file order) — together, the grid rows sorted by cell."""
        pending: dict[int, list[tuple[np.ndarray, ...]]] = {}
        got = np.zeros(len(self.chunks), dtype=np.int64)
        nxt = 0
        for t in self.store.dataset_batches("bucket_counts", self.year,
                                            list(BUCKET_COUNT_COLUMNS)):
            cells, rows, n_row, mu_row, cap_row = self._batch(t, judge=False)
            k = self._chunk_of(cells)
            parts = (cells, n_row[rows], mu_row[rows], cap_row[rows])
            for kk in np.flatnonzero(np.bincount(k, minlength=len(self.chunks))).tolist():
                sel = k == kk
                pending.setdefault(kk, []).append(tuple(x[sel] for x in parts))
                got[kk] += int(np.count_nonzero(sel))
            while nxt < len(self.chunks) and got[nxt] >= self.per_chunk[nxt]:
                yield self._sorted(pending.pop(nxt, []))
                nxt += 1
        while nxt < len(self.chunks):
            yield self._sorted(pending.pop(nxt, []))
            nxt += 1

    @staticmethod
    def _sorted(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
        if not parts:
            return (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64),
                    np.empty(0, np.bool_))
        cell, count, mu, cap = (np.concatenate(x) for x in zip(*parts, strict=True))
        order = np.argsort(cell, kind="stable")
        return cell[order], count[order], mu[order], cap[order]

    def _batch(self, t: pa.Table, judge: bool = True) -> tuple[np.ndarray, ...]:
        """Judge one batch's rows (unless not ``judge``); return (cells of the rows on the
        grid, those rows, count, mu, capped)."""
        index = self.index
        bucket_us = self.D * US
        _, s = index.series_rows(t)
        start = i64(t.column("bucket_start_utc"))
        n_row = i64(t.column("count"))
        mu_row = t.column("mu").to_numpy(zero_copy_only=False).astype(np.float64)
        cap_row = boolean(t.column("capped"))
        b = np.floor_divide(start, bucket_us) - self.first
        in_grid = (start % bucket_us == 0) & (b >= 0) & (b < self.B)
        in_grid[in_grid] = self.on_grid[b[in_grid]]
        known = s >= 0
        ok = known & in_grid
        if not judge:
            rows = np.flatnonzero(ok)
            return s[rows] * self.B + b[rows], rows, n_row, mu_row, cap_row

        def label(i: int) -> str:
            if known[i]:
                return (
                    f"series={index.series_label(int(s[i]))} "
                    f"bucket={WorldIndex.utc_label(int(start[i]))}"
                )
            r = t.slice(int(i), 1).to_pylist()[0]
            return (
                f"series={r['merchant_id']}|{r['legal_country_iso']}|{r['zone_tzid']}|"
                f"{r['channel_group']} bucket={WorldIndex.utc_label(int(start[i]))}"
            )

        def judge(off: Offences, rows: np.ndarray, detail) -> None:
            off.add(len(rows), [f"{label(i)}; {detail(i)}" for i in rows[: off.want()]])

        mx = self.max_count
        judge(
            self.missing_bucket,
            np.flatnonzero(~in_grid),
            lambda i: "bucket_missing: not a bucket of the published time grid",
        )
        judge(self.foreign, np.flatnonzero(~known), lambda i: "not a series of the world")
        judge(
            self.nonpos,
            np.flatnonzero(n_row <= 0),
            lambda i: f"count={int(n_row[i])} (only N > 0 is written)",
        )
        judge(self.over, np.flatnonzero(n_row > mx), lambda i: f"count={int(n_row[i])} > max {mx}")
        judge(
            self.wrong_flag,
            np.flatnonzero(cap_row & (n_row != mx)),
            lambda i: f"capped but count={int(n_row[i])} != {mx}",
        )
        outside = np.flatnonzero(~ok)
        if len(outside):  # off-grid rows have no cell: compare their raw keys
            raw = t.select(list(KEY_COLUMNS)).take(outside).to_pylist()
            for j, r in enumerate(raw):
                key = tuple(r.values())
                if key in self._seen_outside:
                    self.outside_dups.add(1, [f"{label(outside[j])}; duplicate (series, bucket)"])
                self._seen_outside.add(key)
        self.rows += t.num_rows
        self.sum_count += int(n_row.sum())
        self.sum_mu += float(mu_row.sum())
        self.capped += int(np.count_nonzero(cap_row))
        rows = np.flatnonzero(ok)
        return s[rows] * self.B + b[rows], rows, n_row, mu_row, cap_row

    def cell_text(self, c: int) -> str:
        s, b = divmod(int(c), self.B)
        return self.index.cell_label(s, self.first + b, self.D)


def _counts_checks(ctx, store, year: int) -> list[RuleResult]:
    w = ctx.window(year)
    pol = ctx.policy
    cnt = pol.counts
    index = WorldIndex(ctx)
    S, B, D = ctx.arrays.n_series, w.n_buckets, w.bucket_seconds
    label = index.cell_label
    chunks = series_chunks(S, B)  # the chunks law_mu computes μ in
    # the law's published inputs are read beside the first pass over the rows
    with side_pool(1, "s3-law") as beside:
        inputs = beside.submit(law_inputs, ctx, store, year, index)
        rows = CountRows(ctx, store, year, index, chunks)
        groups, lat = inputs.result()
    R = rows.rows

    # ---------------------------------------------------------------- COUNTS_DOMAIN_ALIGN
    off = Offences()
    off.add(rows.missing_bucket.count, rows.missing_bucket.examples)
    off.add(rows.foreign.count, rows.foreign.examples)
    n_sites, n_edges = routable_series(index)
    mode = index.series_mode
    unroutable = np.flatnonzero(
        ((mode != MODE_VIRTUAL) & (n_sites == 0)) | ((mode != MODE_PHYSICAL) & (n_edges == 0))
    )
    off.add(
        len(unroutable),
        [
            f"series={index.series_label(int(i))}; no routing target "
            f"(sites {int(n_sites[i])}, edges {int(n_edges[i])})"
            for i in unroutable[:5]
        ],
    )
    domain = verdict(
        "COUNTS_DOMAIN_ALIGN",
        off.ok,
        {
            "rows": R,
            "bucket_missing": rows.missing_bucket.count,
            "unknown_series": rows.foreign.count,
            "unroutable_series": len(unroutable),
            "grid_buckets": len(rows.grid),
        },
        off.examples,
    )

    # ---------------------------------------------------------------- COUNTS_CAP
    mx = cnt.max_count_per_bucket
    off = Offences()
    off.add(rows.over.count, rows.over.examples)
    off.add(rows.wrong_flag.count, rows.wrong_flag.examples)
    cap = verdict(
        "COUNTS_CAP",
        off.ok,
        {
            "rows": R,
            "capped": rows.capped,
            "over_max": rows.over.count,
            "capped_not_at_max": rows.wrong_flag.count,
            "max_count_per_bucket": mx,
        },
        off.examples,
    )

    # ---------------------------------------------------------------- COUNTS_COMPLETENESS
    totals = store.read_totals("bucket_counts", year)
    want = {
        "series": S,
        "buckets": B,
        "cells_sampled": S * B,
        "rows": R,
        "sum_count": rows.sum_count,
        "capped": rows.capped,
    }
    off = Offences()
    for key, value in want.items():
        got = totals.get(key)
        if got != value:
            off.add(1, [f"_totals.json; {key}={got}, expected {value}"])
    sum_mu = rows.sum_mu
    if not math.isclose(
        float(totals.get("sum_mu", math.nan)), sum_mu, rel_tol=REL_TOL, abs_tol=1e-9
    ):
        off.add(1, [f"_totals.json; sum_mu={totals.get('sum_mu')}, the rows sum to {sum_mu}"])
    completeness = verdict(
        "COUNTS_COMPLETENESS",
        off.ok,
        {
            "totals": totals,
            "file_rows": R,
            "file_sum_count": want["sum_count"],
            "expected_cells": S * B,
        },
        off.examples,
    )

    # ---------------------------------------------------------------- the law over all cells
    kappa = np.ascontiguousarray(ctx.grouping.kappa, dtype=np.float64)
    poisson = cnt.law == "poisson"
    eps = cnt.mu_epsilon
    sums = np.zeros(8)
    n_samp = pol.validation.rng_rederive_sample
    # half the sample evenly over the grid rows in cell order, half over every cell
    pick_rows = evenly_spaced(rows.grid_rows, n_samp // 2)
    pick_cells = evenly_spaced(S * B, n_samp - len(pick_rows))
    samples: list[tuple[np.ndarray, ...]] = []  # (cell, law μ, has row, count, capped)
    dups = Offences()
    mu_bad = Offences()
    no_draw = Offences()
    # the law's μ and the rows of the next chunk are made in threads of their own while
    # this one is judged (the λ kernel, Arrow and numpy let go of the GIL)
    row_chunks = prefetched(rows.by_chunk())
    for k, (lo, hi, mu) in enumerate(prefetched(law_mu(ctx, store, year, lat.factor,
                                                       groups.group_of_series))):
        assert (lo, hi) == chunks[k]
        cell_k, n_rows, mu_rows, cap_k = next(row_chunks)
        dup = np.flatnonzero(cell_k[1:] == cell_k[:-1]) + 1
        dups.add(
            len(dup),
            [f"{rows.cell_text(cell_k[i])}; duplicate (series, bucket)"
             for i in dup[: dups.want()]],
        )
        local = cell_k - lo * B
        n_dense = np.bincount(local, weights=n_rows, minlength=(hi - lo) * B)
        cap_dense = np.zeros((hi - lo) * B, dtype=np.bool_)
        cap_dense[local[cap_k]] = True
        flat = mu.reshape(-1)
        law_row_mu = flat[local]
        bad = np.flatnonzero(~(law_row_mu == mu_rows))
        mu_bad.add(
            len(bad),
            [
                f"{rows.cell_text(cell_k[i])}; mu={mu_rows[i]!r}, the law gives "
                f"{law_row_mu[i]!r}"
                for i in bad[: mu_bad.want()]
            ],
        )
        nd = np.flatnonzero(law_row_mu <= eps)
        no_draw.add(
            len(nd),
            [
                f"{rows.cell_text(cell_k[i])}; count={int(n_rows[i])} where "
                f"μ={law_row_mu[i]!r} ≤ ε (no draw)"
                for i in nd[: no_draw.want()]
            ],
        )
        cell_moments(
            mu,
            n_dense.reshape(hi - lo, B),
            cap_dense.reshape(hi - lo, B),
            kappa[lo:hi],
            poisson,
            eps,
            sums,
        )
        first = rows.chunk_start[k]
        ra, rz = np.searchsorted(pick_rows, [first, first + len(cell_k)])
        ca, cz = np.searchsorted(pick_cells, [lo * B, hi * B])
        sc = np.unique(np.concatenate([cell_k[pick_rows[ra:rz] - first], pick_cells[ca:cz]]))
        pos = np.minimum(np.searchsorted(cell_k, sc), max(len(cell_k) - 1, 0))
        has = (cell_k[pos] == sc) if len(cell_k) else np.zeros(len(sc), dtype=np.bool_)
        samples.append((sc, flat[sc - lo * B], has,
                        np.where(has, n_rows[pos] if len(cell_k) else 0, 0),
                        has & (cap_k[pos] if len(cell_k) else False)))

    # ---------------------------------------------------------------- COUNTS_KEY_UNIQUE
    off = Offences()
    off.add(dups.count, dups.examples)
    off.add(rows.outside_dups.count, rows.outside_dups.examples)
    off.add(rows.nonpos.count, rows.nonpos.examples)
    unique = verdict(
        "COUNTS_KEY_UNIQUE",
        off.ok,
        {
            "rows": R,
            "duplicates": off.count - rows.nonpos.count,
            "count_not_positive": rows.nonpos.count,
        },
        off.examples,
    )

    # ---------------------------------------------------------------- COUNTS_DISPERSION
    blocks, undefined = sums[1:3].tolist()  # cells with μ > ε, cells without a law μ
    dispersion = dispersion_verdict(
        sums, cnt.law, pol.validation.dispersion_z_max, totals.get("sum_mu_all")
    )

    # ---------------------------------------------------------------- RNG_REDERIVE_S3
    off = Offences()
    off.add(mu_bad.count, mu_bad.examples)
    off.add(no_draw.count, no_draw.examples)
    if undefined:
        off.add(int(undefined), [f"bucket_counts; {int(undefined)} cells without a law μ"])
    if totals.get("blocks") != int(blocks):
        off.add(
            1,
            [
                f"_totals.json; blocks={totals.get('blocks')}, the law draws {int(blocks)}"
                " (cells with μ > ε)"
            ],
        )
    keys = ctx.arrays.series_keys("S3.count.v1", pol.namespace, ctx.seed)
    if samples:
        sample_cells, sample_mu, has_row, pub_count, pub_cap = (
            np.concatenate(x) for x in zip(*samples, strict=True))
    else:
        sample_cells = np.empty(0, np.int64)
        sample_mu = np.empty(0)
        has_row = pub_cap = np.empty(0, np.bool_)
        pub_count = np.empty(0, np.int64)
    redrawn = 0
    for k, c in enumerate(sample_cells.tolist()):
        si, bi = divmod(c, B)
        m = float(sample_mu[k])
        if m > eps:
            n_law, cap_law = count_draw(
                keys[si], w.first_bucket + bi, m, kappa[si], poisson, cnt.max_count_per_bucket
            )
        else:
            n_law, cap_law = 0, False
        redrawn += 1
        n_pub = int(pub_count[k]) if has_row[k] else 0
        c_pub = bool(pub_cap[k]) if has_row[k] else False
        if not math.isfinite(m) or n_pub != int(n_law) or c_pub != bool(cap_law):
            off.add(
                1,
                [
                    f"{label(si, w.first_bucket + bi, D)}; published count={n_pub} "
                    f"capped={c_pub}, the law draws {int(n_law)} capped={bool(cap_law)} "
                    f"(μ={m!r})"
                ],
            )
    rederive = verdict(
        "RNG_REDERIVE_S3",
        off.ok,
        {
            "sampled_cells": redrawn,
            "sampled_rows": len(pick_rows),
            "mu_mismatch_rows": mu_bad.count,
            "rows_without_draw": no_draw.count,
            "blocks_law": int(blocks),
            "blocks_totals": totals.get("blocks"),
            "mismatches": off.count,
        },
        off.examples,
    )
    return [unique, domain, completeness, cap, dispersion, rederive]
