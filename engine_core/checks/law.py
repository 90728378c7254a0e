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

import numpy as np

from engine_core.checks.world_index import WorldIndex, dictionary_codes, i64

US = 1_000_000
CELLS_PER_CHUNK = 4_000_000


@dataclass
class PublishedGroups:
    group_ids: list[str]  # sorted distinct group ids of the published grouping
    group_of_series: np.ndarray  # int64 [S]: index into group_ids, -1 if the series is absent


def published_groups(engine, year: int, index: WorldIndex) -> PublishedGroups:
    t = engine.read_dataset(
        "grouping",
        year,
        ["merchant_id", "legal_country_iso", "zone_tzid", "channel_group", "group_id"],
    )
    _, s = index.series_rows(t)
    gids = t.column("group_id").to_pylist()
    distinct = sorted({g for g in gids if g is not None})
    pos = {g: k for k, g in enumerate(distinct)}
    out = np.full(engine.model.n_series, -1, dtype=np.int64)
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
    tally: np.ndarray  # int32 [G, B]: rows per cell (exactly 1 expected)
    rows: int
    stray_rows: int  # rows whose group or bucket is not on the grid
    stray_examples: list[str]


def read_latent(engine, year: int, group_ids: list[str], with_z: bool = False) -> Latent:
    w = engine.window(year)
    t = engine.read_dataset(
        "latent_intensity",
        year,
        ["group_id", "bucket_start_utc", "factor"] + (["z"] if with_z else []),
    )
    gcode = dictionary_codes(t.column("group_id"), {g: k for k, g in enumerate(group_ids)})
    start = i64(t.column("bucket_start_utc"))
    bucket_us = w.bucket_seconds * US
    b = np.floor_divide(start, bucket_us) - w.first_bucket
    ok = (gcode >= 0) & (start % bucket_us == 0) & (b >= 0) & (b < w.n_buckets)
    G, B = len(group_ids), w.n_buckets
    cell = gcode[ok].astype(np.int64) * B + b[ok]
    columns = {"factor": t.column("factor"), "z": t.column("z") if with_z else None}
    dense: dict[str, np.ndarray | None] = {}
    if len(cell) == G * B and np.array_equal(cell, np.arange(G * B)):
        # the layout S2 writes: (group, bucket) order, nothing missing or stray
        tally = np.ones(G * B, dtype=np.int32)
        for name, col in columns.items():
            dense[name] = None if col is None else col.to_numpy().astype(np.float64)
    else:
        tally = np.bincount(cell, minlength=G * B).astype(np.int32)
        for name, col in columns.items():
            if col is None:
                dense[name] = None
                continue
            v = np.full(G * B, np.nan)
            v[cell] = col.to_numpy()[ok]
            dense[name] = v
    factor, z = dense["factor"], dense["z"]
    stray = np.flatnonzero(~ok)
    gnames = t.column("group_id").to_pylist() if len(stray) else []
    examples = [
        f"group={gnames[i]} bucket={WorldIndex.utc_label(start[i])}; not a (group, "
        "grid bucket) of this partition"
        for i in stray[:5]
    ]
    return Latent(
        factor.reshape(G, B),
        None if z is None else z.reshape(G, B),
        tally.reshape(G, B),
        t.num_rows,
        len(stray),
        examples,
    )


def series_chunks(
    n_series: int, n_buckets: int, cells: int = CELLS_PER_CHUNK
) -> list[tuple[int, int]]:
    per = max(1, cells // max(n_buckets, 1))
    return [(lo, min(lo + per, n_series)) for lo in range(0, n_series, per)]


def law_mu(
    engine, year: int, factor: np.ndarray, group_of_series: np.ndarray
) -> Iterator[tuple[int, int, np.ndarray]]:
    """(lo, hi, μ[hi-lo, B]) for consecutive series ranges; NaN where the series has no group
    or its group no factor (those cells fail the rules that use them)."""
    w = engine.window(year)
    # the calendar multipliers by local date, exactly as S3 built them
    day_mult, first_day = engine.day_multipliers(w)
    lam_max = engine.policy.counts.lambda_max
    padded = np.vstack([factor, np.full((1, w.n_buckets), np.nan)])
    for lo, hi in series_chunks(engine.model.n_series, w.n_buckets):
        lam = engine.lambda_chunk(w, lo, hi, day_mult, first_day)
        g = group_of_series[lo:hi]
        f = padded[np.where(g >= 0, g, len(factor))]
        yield lo, hi, np.minimum(lam * f, lam_max)
