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

from engine_core.checks.world_index import WorldIndex, dictionary_codes, i64
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
def tally_cells(tally, cells):
    """tally[c] += 1 for every c in cells, saturating at 255."""
    for c in cells:
        if tally[c] < 255:
            tally[c] += 1


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
    for t in store.dataset_batches("latent_intensity", year, columns):
        gcode = dictionary_codes(t.column("group_id"), gindex)
        start = i64(t.column("bucket_start_utc"))
        b = np.floor_divide(start, bucket_us) - w.first_bucket
        ok = (gcode >= 0) & (start % bucket_us == 0) & (b >= 0) & (b < B)
        cell = gcode[ok].astype(np.int64) * B + b[ok]
        tally_cells(tally, cell)
        factor[cell] = t.column("factor").to_numpy()[ok]
        if z is not None:
            z[cell] = t.column("z").to_numpy()[ok]
        bad = np.flatnonzero(~ok)
        if len(bad) and len(examples) < 5:
            names = t.column("group_id").take(pa.array(bad[:5])).to_pylist()
            examples += [
                f"group={g} bucket={WorldIndex.utc_label(start[i])}; not a (group, grid "
                "bucket) of this partition"
                for g, i in zip(names, bad[:5], strict=True)
            ]
        stray += len(bad)
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


def law_mu(
    ctx, store, year: int, factor: np.ndarray, group_of_series: np.ndarray
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(lo, hi, μ[hi-lo, B]) for consecutive series ranges; NaN where the series has no group
    or its group no factor (those cells fail the rules that use them)."""
    w = ctx.window(year)
    # the calendar multipliers by local date, exactly as S3 built them
    day_mult, first_day = ctx.day_multipliers(w)
    lam_max = ctx.policy.counts.lambda_max
    for lo, hi in series_chunks(ctx.arrays.n_series, w.n_buckets):
        lam = ctx.lambda_chunk(w, lo, hi, day_mult, first_day)
        g = group_of_series[lo:hi]
        f = factor[np.where(g >= 0, g, 0)] if len(factor) else np.full_like(lam, np.nan)
        f[g < 0] = np.nan
        np.multiply(lam, f, out=lam)
        yield lo, hi, np.minimum(lam, lam_max, out=lam)
