"""Small hand-made inputs for the validation rules: no state runs here.

The world is the ``tiny`` preset (20 merchants, 51 series) over one day, Friday 2026-01-02
(24 hourly buckets; in Asia/Tokyo, Asia/Kolkata and Europe/Berlin the last hours are already
Saturday, so the weekend rule has something to weigh). :func:`law_tables` writes down, for
that day, the rows every state's contract and law call for — computed cell by cell with the
law's own small functions (``build_grouping`` through the context, ``latent_field``,
``count_draw``, ``generate_events``, the stream keys) — so every rule passes on them. A test
takes a copy, changes a few rows and publishes the tables into a :class:`DatasetStore` on
``tmp_path`` (:func:`publish`), then calls the rule.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from engine_core import schemas
from engine_core.checks.verdicts import RuleResult
from engine_core.context import RunConfig, RunContext, open_context
from engine_core.io.store import DatasetStore
from engine_core.kernels.arrivals import MODE_HYBRID, generate_events
from engine_core.kernels.counts import count_draw
from engine_core.kernels.latent import latent_field
from engine_core.rng.streams import group_stream, stream_keys
from engine_core.timebase import US_PER_S

UTC = dt.UTC
START = dt.datetime(2026, 1, 2, tzinfo=UTC)  # a Friday
END = dt.datetime(2026, 1, 3, tzinfo=UTC)
YEAR = 2026
HOUR_US = 3600 * US_PER_S
S4_FAMILIES = ("S4.time.v1", "S4.site.v1", "S4.edge.v1", "S4.hybrid.v1")


def one_day_context(policy_path: str | None = None) -> RunContext:
    return open_context(
        RunConfig(world="tiny", scenario="baseline", start=START, end=END,
                  storage_root="unused", policy_path=policy_path)
    )


@pytest.fixture(scope="session")
def ctx() -> RunContext:
    """The tiny world over one day (built once; tests that change it take a copy)."""
    return one_day_context()


def fresh(ctx: RunContext, **cached: Any) -> RunContext:
    """A copy of ``ctx`` with nothing built yet, or with ``cached`` in place of what its
    cached properties (arrays, grouping, tz) would build."""
    out = dataclasses.replace(ctx)
    out.__dict__.update(cached)
    return out


def dict_col(codes: np.ndarray, vocab: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes, dtype=np.int32), pa.int32()), pa.array(vocab, pa.string())
    )


def ts_col(us: np.ndarray, naive: bool = False) -> pa.Array:
    return pa.array(np.asarray(us, dtype=np.int64), schemas.TS_LOCAL if naive else schemas.TS_UTC)


# ----------------------------------------------------------------------------- the law's rows
@dataclass
class LawTables:
    """One day's datasets (and totals) as the contract and the law have them."""

    tables: dict[str, pa.Table]
    totals: dict[str, dict[str, Any]] = field(default_factory=dict)

    def copy(self) -> LawTables:
        return LawTables(dict(self.tables), copy.deepcopy(self.totals))


def time_grid_table(ctx: RunContext) -> pa.Table:
    w = ctx.window(YEAR)
    b = np.arange(w.first_bucket, w.first_bucket + w.n_buckets, dtype=np.int64)
    D = w.bucket_seconds
    return pa.table(
        {
            "bucket_index": pa.array(b - w.first_bucket, pa.int64()),
            "bucket_abs": pa.array(b, pa.int64()),
            "bucket_start_utc": ts_col(b * D * US_PER_S),
            "bucket_end_utc": ts_col((b + 1) * D * US_PER_S),
            "duration_s": pa.array(np.full(len(b), D), pa.int64()),
        },
        schema=schemas.TIME_GRID,
    )


def grouping_rows(ctx: RunContext) -> pa.Table:
    m, g = ctx.arrays, ctx.grouping
    gi = np.asarray(g.series_group)
    return pa.table(
        {
            "merchant_id": pa.array(m.merchant_id, pa.uint64()),
            "legal_country_iso": dict_col(m.country_idx, list(m.countries)),
            "zone_tzid": dict_col(m.zone_idx, list(m.tzids)),
            "channel_group": dict_col(m.channel_idx, list(m.channels)),
            "demand_class": pa.array(list(m.demand_class)).dictionary_encode(),
            "virtual_band": pa.array(list(g.vband)).dictionary_encode(),
            "zone_group": pa.array(g.zone_group, pa.int32()),
            "hash_bucket": pa.array(g.hash_bucket, pa.int32()),
            "group_id": pa.array([g.group_ids[i] for i in gi], pa.string()),
            "sigma": pa.array(g.sigma[gi], pa.float64()),
            "length_scale": pa.array(g.length_scale[gi], pa.float64()),
            "kappa": pa.array(g.kappa, pa.float64()),
        },
        schema=schemas.GROUPING,
    )


def latent_rows(ctx: RunContext) -> tuple[pa.Table, list[str], np.ndarray]:
    """Every (group, bucket) factor by the law's kernel; also the group ids (sorted, as the
    rules index them) and the factors [G, B]."""
    w, g, lat = ctx.window(YEAR), ctx.grouping, ctx.policy.latent
    gids = sorted(g.group_ids)
    k = np.array([g.group_ids.index(x) for x in gids], dtype=np.int64)
    keys = stream_keys("S2.latent.v1", ctx.policy.namespace, ctx.seed,
                       [group_stream(x.split("|", 1)[1]) for x in gids])
    z = np.empty((len(gids), w.n_buckets))
    f = np.empty_like(z)
    latent_field(keys, g.sigma[k], g.length_scale[k], w.first_bucket, w.n_buckets,
                 lat.block_buckets, lat.factor_clip[0], lat.factor_clip[1], z, f)
    starts = (w.first_bucket + np.arange(w.n_buckets)) * w.bucket_seconds * US_PER_S
    tbl = pa.table(
        {
            "group_id": dict_col(np.repeat(np.arange(len(gids)), w.n_buckets), gids),
            "bucket_start_utc": ts_col(np.tile(starts, len(gids))),
            "z": pa.array(z.ravel(), pa.float64()),
            "factor": pa.array(f.ravel(), pa.float64()),
        },
        schema=schemas.LATENT_INTENSITY,
    )
    return tbl, gids, f


def series_mu(ctx: RunContext, gids: list[str], factor: np.ndarray) -> np.ndarray:
    """μ [series, bucket] = min(λ · factor of the series' group, λ_max), as S3 samples."""
    w = ctx.window(YEAR)
    day_mult, first_day = ctx.day_multipliers(w)
    lam = ctx.lambda_chunk(w, 0, ctx.arrays.n_series, day_mult, first_day)
    g = ctx.grouping
    row = np.array([gids.index(g.group_ids[i]) for i in g.series_group], dtype=np.int64)
    return np.minimum(lam * factor[row], ctx.policy.counts.lambda_max)


def count_rows(ctx: RunContext, mu: np.ndarray) -> tuple[pa.Table, dict[str, Any]]:
    """The N > 0 cells drawn with ``count_draw``, sorted by (merchant, bucket, series)."""
    m, w, cnt = ctx.arrays, ctx.window(YEAR), ctx.policy.counts
    keys = m.series_keys("S3.count.v1", ctx.policy.namespace, ctx.seed)
    kappa = ctx.grouping.kappa
    n = np.zeros(mu.shape, dtype=np.int64)
    capped = np.zeros(mu.shape, dtype=np.bool_)
    drawn = mu > cnt.mu_epsilon
    for s, b in zip(*np.nonzero(drawn), strict=True):
        n[s, b], capped[s, b] = count_draw(keys[s], w.first_bucket + int(b), float(mu[s, b]),
                                           float(kappa[s]), cnt.law == "poisson",
                                           cnt.max_count_per_bucket)
    si, bj = np.nonzero(n)
    order = np.lexsort((si, bj, m.merchant_id[si]))
    si, bj = si[order], bj[order]
    tbl = pa.table(
        {
            "merchant_id": pa.array(m.merchant_id[si], pa.uint64()),
            "legal_country_iso": dict_col(m.country_idx[si], list(m.countries)),
            "zone_tzid": dict_col(m.zone_idx[si], list(m.tzids)),
            "channel_group": dict_col(m.channel_idx[si], list(m.channels)),
            "bucket_start_utc": ts_col((bj + w.first_bucket) * w.bucket_seconds * US_PER_S),
            "mu": pa.array(mu[si, bj], pa.float64()),
            "count": pa.array(n[si, bj], pa.int64()),
            "capped": pa.array(capped[si, bj], pa.bool_()),
        },
        schema=schemas.BUCKET_COUNTS,
    )
    totals = {
        "series": int(m.n_series), "buckets": int(w.n_buckets),
        "cells_sampled": int(mu.size), "blocks": int(drawn.sum()), "rows": tbl.num_rows,
        "sum_count": int(n.sum()), "sum_mu": float(mu[si, bj].sum()),
        "capped": int(capped.sum()), "sum_mu_all": float(mu.sum()),
    }
    return tbl, totals


def event_rows(ctx: RunContext, counts: pa.Table) -> tuple[pa.Table, dict[str, Any]]:
    """The events of the S3 rows by the law's reference kernel ``generate_events``, sorted by
    (merchant_id, ts_utc) and numbered 1.. per merchant."""
    m, w, tz = ctx.arrays, ctx.window(YEAR), ctx.tz
    bucket_us = w.bucket_seconds * US_PER_S
    row_series = ctx.series_index_of(counts)
    row_bucket = counts.column("bucket_start_utc").cast(pa.int64()).to_numpy() // bucket_us
    n_row = counts.column("count").to_numpy().astype(np.int64)
    row_offset = np.zeros(len(n_row) + 1, dtype=np.int64)
    np.cumsum(n_row, out=row_offset[1:])
    n = int(row_offset[-1])
    keys = {f: m.series_keys(f, ctx.policy.namespace, ctx.seed) for f in S4_FAMILIES}
    ts, aid = np.empty(n, np.int64), np.empty(n, np.uint64)
    target, virt = np.empty(n, np.int64), np.empty(n, np.bool_)
    zone, local, settle = np.empty(n, np.int32), np.empty(n, np.int64), np.empty(n, np.int64)
    generate_events(
        row_series, row_bucket, row_offset, *(keys[f] for f in S4_FAMILIES), m.mode,
        m.site_lo, m.site_n, m.edge_lo, m.edge_n, m.settle_zone,
        m.site_prob, m.site_alias, m.site_zone, m.edge_prob, m.edge_alias, m.edge_zone,
        ctx.policy.routing.p_virtual_hybrid, bucket_us, tz.zone_start, tz.trans_us,
        tz.offset_s, ts, aid, target, virt, zone, local, settle,
    )
    s = np.repeat(row_series, n_row)
    bstart = np.repeat(row_bucket, n_row) * bucket_us
    mid = m.merchant_id[s]
    order = np.lexsort((aid, ts, mid))
    s, bstart, mid = s[order], bstart[order], mid[order]
    ts, aid, target, virt = ts[order], aid[order], target[order], virt[order]
    zone, local, settle = zone[order], local[order], settle[order]
    first = np.ones(n, dtype=np.bool_)
    first[1:] = mid[1:] != mid[:-1]
    start_of = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    seq = np.arange(n) - start_of + 1
    has_settle = virt & (m.settle_zone[s] >= 0)
    tzids = list(m.tzids)
    tbl = pa.table(
        {
            "arrival_id": pa.array(aid, pa.uint64()),
            "merchant_id": pa.array(mid, pa.uint64()),
            "legal_country_iso": dict_col(m.country_idx[s], list(m.countries)),
            "zone_tzid": dict_col(m.zone_idx[s], tzids),
            "channel_group": dict_col(m.channel_idx[s], list(m.channels)),
            "bucket_start_utc": ts_col(bstart),
            "arrival_seq": pa.array(seq, pa.int64()),
            "ts_utc": ts_col(ts),
            "tzid": dict_col(zone, tzids),
            "ts_local": ts_col(local, naive=True),
            "tzid_settlement": pa.DictionaryArray.from_arrays(
                pa.array(np.where(has_settle, m.settle_zone[s], 0).astype(np.int32),
                         mask=~has_settle),
                pa.array(tzids, pa.string())),
            "ts_local_settlement": pa.array(settle, schemas.TS_LOCAL, mask=~has_settle),
            "site_id": pa.array(np.where(virt, 0, m.site_id[np.where(virt, 0, target)]),
                                pa.uint64(), mask=virt),
            "edge_id": pa.array(np.where(virt, m.edge_id[np.where(virt, target, 0)], 0),
                                pa.uint64(), mask=~virt),
            "is_virtual": pa.array(virt, pa.bool_()),
        },
        schema=schemas.ARRIVAL_EVENTS,
    )
    n_virtual = int(virt.sum())
    totals = {
        "events": n, "merchants": int(len(np.unique(mid))), "files": 1,
        "blocks": {
            "S4.time.v1": n,
            "S4.site.v1": n - n_virtual,
            "S4.edge.v1": n_virtual,
            "S4.hybrid.v1": int(np.count_nonzero(m.mode[s] == MODE_HYBRID)),
        },
    }
    return tbl, totals


def build_law_tables(ctx: RunContext) -> LawTables:
    latent, gids, factor = latent_rows(ctx)
    counts, count_totals = count_rows(ctx, series_mu(ctx, gids, factor))
    events, event_totals = event_rows(ctx, counts)
    return LawTables(
        {
            "time_grid": time_grid_table(ctx),
            "grouping": grouping_rows(ctx),
            "latent_intensity": latent,
            "bucket_counts": counts,
            "arrival_events": events,
        },
        {"bucket_counts": count_totals, "arrival_events": event_totals},
    )


@pytest.fixture(scope="session")
def law_tables(ctx) -> LawTables:
    return build_law_tables(ctx)


@pytest.fixture
def law(law_tables) -> LawTables:
    """A private copy of the law's tables for one test to change."""
    return law_tables.copy()


# ----------------------------------------------------------------------------- the store
def publish(ctx: RunContext, root: str, law: LawTables) -> DatasetStore:
    """A store on ``root`` holding ``law``'s tables as published partitions of YEAR."""
    store = DatasetStore.open(root, ctx.world_fingerprint, ctx.parameter_hash, ctx.seed,
                              ctx.scenario)
    for name, tbl in law.tables.items():
        store.publish_table(name, YEAR, tbl, law.totals.get(name))
    return store


@pytest.fixture
def store_of(ctx, tmp_path):
    """``store_of(law)``: publish ``law`` into a fresh store on tmp_path."""
    n = [0]

    def make(law: LawTables, context: RunContext | None = None) -> DatasetStore:
        n[0] += 1
        return publish(context or ctx, str(tmp_path / f"data{n[0]}"), law)

    return make


# ----------------------------------------------------------------------------- editing rows
def replace_column(tbl: pa.Table, name: str, values, mask=None) -> pa.Table:
    """``tbl`` with column ``name`` replaced by ``values`` (same type; dictionary columns take
    strings)."""
    i = tbl.schema.get_field_index(name)
    typ = tbl.schema.field(i).type
    if pa.types.is_dictionary(typ):
        arr = pa.array(list(values), pa.string(), mask=mask).dictionary_encode()
    else:
        arr = pa.array(np.asarray(values) if not isinstance(values, list) else values,
                       typ, mask=mask)
    return tbl.set_column(i, tbl.schema.field(i), arr)


def col(tbl: pa.Table, name: str) -> np.ndarray:
    c = tbl.column(name)
    if pa.types.is_timestamp(c.type):
        c = c.cast(pa.int64())
    return c.to_numpy(zero_copy_only=False).copy()


def only(results: list[RuleResult], code: str) -> RuleResult:
    (r,) = [r for r in results if r.code == code]
    return r
