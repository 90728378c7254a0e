"""The law re-applied for the checks: published groups and factors, μ of every cell.

S3 and S4 rules compare what was published with what the law gives for *every* series-bucket
cell, including the cells S3 did not write (N = 0). μ(s, B) = min(λ(s, B) · factor(g(s), B),
λ_max) is recomputed chunk by chunk over series from the world, the published S1 grouping and
the published S2 factors — the inputs S3 read — with the engine's own λ kernel, so the values
are bit-identical to what S3 sampled from. Memory is bounded by the chunk size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numba as nb
import numpy as np
import pyarrow as pa

from engine_core.checks.world_index import WorldIndex, dictionary_codes, f64, i64
from engine_core.timebase import US_PER_S as US

CELLS_PER_CHUNK = 4_000_000


@dataclass
class PublishedGroups:
    group_ids: list[str]  # sorted distinct group ids of the published grouping
    group_of_series: np.ndarray  # int64 [S]: index into group_ids, -1 if the series is absent


def published_groups(ctx, store, year: int, index: WorldIndex) -> PublishedGroups:
    t = store.read_dataset(
        "grouping",
        year,
        ["merchant_id", "legal_country_iso", "zone_tzid", "channel_group", "group_id"],
    )
    _, s = index.series_rows(t)
    gids = t.column("group_id").to_pylist()
    distinct = sorted({g for g in gids if g is not None})
    pos = {g: k for k, g in enumerate(distinct)}
    out = np.full(ctx.arrays.n_series, -1, dtype=np.int64)
    ok = s >= 0
    out[s[ok]] = np.array(
        [pos.get(g, -1) for g, k in zip(gids, ok, strict=True) if k], dtype=np.int64
    )
    return PublishedGroups(distinct, out)


@dataclass
class Latent:
    """The published S2 partition on the dense (group, bucket) grid."""

    factor: np.ndarray  # float64 [G, B], NaN where no row
    z: np.ndarray | None  # float64 [G, B], NaN where no row (only when asked for)
    tally: np.ndarray  # uint8 [G, B]: rows per cell, saturating at 255 (exactly 1 expected)
    rows: int
    stray_rows: int  # rows whose group or bucket is not on the grid
    stray_examples: list[str]


@nb.njit(cache=True, nogil=True)
def place_latent(gcode, start, f_rows, z_rows, bucket_us, first_bucket, n_b, factor, z, tally,
                 bad):
    """S2 rows into the dense (group, bucket) arrays: row i (group code ``gcode[i]``, −1/−2
    for a null or unknown group; bucket start ``start[i]`` µs) sets its cell's factor (and z
    when ``z`` is not empty) and counts in ``tally`` (saturating at 255). Rows off the grid
    — no group, a start not on a bucket boundary, a bucket outside the window — are
    counted, the first ``len(bad)`` positions written to ``bad``; returns their number."""
    n_bad = 0
    with_z = z.shape[0] > 0
    for i in range(gcode.shape[0]):
        g = gcode[i]
        s = start[i]
        b = s // bucket_us - first_bucket
        if g < 0 or s % bucket_us != 0 or b < 0 or b >= n_b:
            if n_bad < bad.shape[0]:
                bad[n_bad] = i
            n_bad += 1
            continue
        cell = np.int64(g) * n_b + b
        if tally[cell] < 255:
            tally[cell] += 1
        factor[cell] = f_rows[i]
        if with_z:
            z[cell] = z_rows[i]
    return n_bad


def law_inputs(ctx, store, year: int, index: WorldIndex, with_z: bool = False
               ) -> tuple[PublishedGroups, Latent]:
    """The published grouping and S2 factors (and z) the law's μ is computed from."""
    groups = published_groups(ctx, store, year, index)
    return groups, read_latent(ctx, store, year, groups.group_ids, with_z=with_z)


def read_latent(ctx, store, year: int, group_ids: list[str], with_z: bool = False) -> Latent:
    """Stream the S2 partition into dense [G, B] arrays: memory is the arrays plus two row
    groups, never the table (a year of the reference world is 34 M rows)."""
    w = ctx.window(year)
    G, B = len(group_ids), w.n_buckets
    bucket_us = w.bucket_seconds * US
    gindex = {g: k for k, g in enumerate(group_ids)}
    factor = np.full(G * B, np.nan)
    z = np.full(G * B, np.nan) if with_z else None
    tally = np.zeros(G * B, dtype=np.uint8)
    rows = 0
    stray = 0
    examples: list[str] = []
    columns = ["group_id", "bucket_start_utc", "factor"] + (["z"] if with_z else [])
    first_bad = np.empty(5, dtype=np.int64)  # positions of a batch's first stray rows
    no_z = np.empty(0)
    for t in store.dataset_batches("latent_intensity", year, columns):
        gcode = dictionary_codes(t.column("group_id"), gindex)
        start = i64(t.column("bucket_start_utc"))
        n_bad = place_latent(gcode, start, f64(t.column("factor")),
                             f64(t.column("z")) if z is not None else no_z, bucket_us,
                             w.first_bucket, B, factor, no_z if z is None else z, tally,
                             first_bad)
        bad = first_bad[: min(n_bad, len(first_bad))]
        if len(bad) and len(examples) < 5:
            names = t.column("group_id").take(pa.array(bad[:5])).to_pylist()
            examples += [
                f"group={g} bucket={WorldIndex.utc_label(start[i])}; not a (group, grid "
                "bucket) of this partition"
                for g, i in zip(names, bad[:5], strict=True)
            ]
        stray += n_bad
        rows += t.num_rows
    return Latent(
        factor.reshape(G, B),
        None if z is None else z.reshape(G, B),
        tally.reshape(G, B),
        rows,
        stray,
        examples[:5],
    )


def series_chunks(
    n_series: int, n_buckets: int, cells: int = CELLS_PER_CHUNK
) -> list[tuple[int, int]]:
    per = max(1, cells // max(n_buckets, 1))
    return [(lo, min(lo + per, n_series)) for lo in range(0, n_series, per)]


def law_lambda(ctx, year: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(lo, hi, λ[hi-lo, B]) of the window for consecutive series ranges
    (:func:`series_chunks`), with the calendar multipliers by local date exactly as S3 built
    them."""
    w = ctx.window(year)
    day_mult, first_day = ctx.day_multipliers(w)
    for lo, hi in series_chunks(ctx.arrays.n_series, w.n_buckets):
        yield lo, hi, ctx.lambda_chunk(w, lo, hi, day_mult, first_day)


def law_mu(
    ctx, store, year: int, factor: np.ndarray, group_of_series: np.ndarray
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(lo, hi, μ[hi-lo, B]) for consecutive series ranges; NaN where the series has no group
    or its group no factor (those cells fail the rules that use them)."""
    lam_max = ctx.policy.counts.lambda_max
    for lo, hi, lam in law_lambda(ctx, year):
        g = group_of_series[lo:hi]
        f = factor[np.where(g >= 0, g, 0)] if len(factor) else np.full_like(lam, np.nan)
        f[g < 0] = np.nan
        np.multiply(lam, f, out=lam)
        yield lo, hi, np.minimum(lam, lam_max, out=lam)


@nb.njit(cache=True, nogil=True)
def weekend_sums(lam, group, factor, lam_max, weekend, zone, out):
    """out[0] += Σμ over the weekend cells, out[1] += Σμ over every cell of series chunk
    ``lam`` [series, bucket] — μ = min(λ · factor[group, bucket], λ_max) as :func:`law_mu`
    gives it, in one pass without its [series, bucket] temporaries. Cells without a law μ
    (no group, NaN factor) are left out, as ``np.nansum`` leaves them out. ``weekend``
    [zone, bucket] marks the weekend buckets of each zone; ``zone`` is each series' zone.
    Summed row by row in bucket order, so the result does not depend on the threads."""
    n, n_b = lam.shape
    for i in range(n):
        g = group[i]
        if g < 0:
            continue
        f = factor[g]
        wk = weekend[zone[i]]
        s_all = 0.0
        s_wk = 0.0
        for b in range(n_b):
            mu = lam[i, b] * f[b]
            if mu != mu:  # NaN: no law μ
                continue
            if mu > lam_max:
                mu = lam_max
            s_all += mu
            if wk[b]:
                s_wk += mu
        out[0] += s_wk
        out[1] += s_all
