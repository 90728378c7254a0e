"""S1 rules: the time grid and the grouping of one partition.

- GRID_CONTIGUOUS: ``bucket_abs`` runs first_bucket, first_bucket+1, … with exactly the
  window's ``n_buckets`` rows; ``bucket_index`` = 0..n-1; start = bucket_abs · D, aligned to
  D; end = start + duration with duration = D; intervals half-open and touching (end of k =
  start of k+1).
- GROUPING_COMPLETE: one row per world series (no series missing, none twice, none foreign),
  and every derived column — group_id, zone_group, hash_bucket, demand_class, virtual_band,
  σ, L, κ — equal to :func:`engine_core.world.grouping.build_grouping` recomputed from the
  world and the policy.
- GROUP_SIZE_BOUNDS: series per group within the policy's [group_size_min, group_size_max].
"""

from __future__ import annotations

import numpy as np

from engine_core.checks.contract import schema_rule
from engine_core.checks.verdicts import Offences, RuleResult, guarded, state_rules, verdict
from engine_core.checks.world_index import WorldIndex, i64
from engine_core.timebase import US_PER_S as US
from engine_core.world.grouping import build_grouping


def grid_contiguous(ctx, store, year: int) -> RuleResult:
    w = ctx.window(year)
    t = store.read_dataset("time_grid", year)
    D = w.bucket_seconds
    idx = i64(t.column("bucket_index"))
    babs = i64(t.column("bucket_abs"))
    start = i64(t.column("bucket_start_utc"))
    end = i64(t.column("bucket_end_utc"))
    dur = i64(t.column("duration_s"))
    n = t.num_rows
    off = Offences()
    if n != w.n_buckets:
        want = np.arange(w.first_bucket, w.first_bucket + w.n_buckets, dtype=np.int64)
        missing = np.setdiff1d(want, babs)
        extra = np.setdiff1d(babs, want)
        off.add(
            abs(n - w.n_buckets) or 1,
            [
                f"bucket={WorldIndex.utc_label(b * D * US)}; missing from the grid"
                for b in missing[:5]
            ]
            + [f"bucket={WorldIndex.utc_label(b * D * US)}; outside the window" for b in extra[:5]]
            + [f"time_grid; {n} rows, the window has {w.n_buckets} buckets"],
        )
    k = np.arange(n, dtype=np.int64)
    bad = (
        (idx != k)
        | (babs != w.first_bucket + k)
        | (start != babs * D * US)
        | (start % (D * US) != 0)
        | (dur != D)
        | (end != start + dur * US)
    )
    touching = np.zeros(n, dtype=np.bool_)
    if n > 1:
        touching[1:] = end[:-1] != start[1:]
    bad |= touching
    rows = np.flatnonzero(bad)
    off.add(
        len(rows),
        [
            f"bucket_index={int(idx[i])} bucket={WorldIndex.utc_label(start[i])}; "
            f"abs={int(babs[i])} end={WorldIndex.utc_label(end[i])} "
            f"duration={int(dur[i])}s"
            for i in rows[:5]
        ],
    )
    figures = {
        "rows": n,
        "n_buckets": w.n_buckets,
        "first_bucket": w.first_bucket,
        "bucket_seconds": D,
        "bad_rows": len(rows),
    }
    return verdict("GRID_CONTIGUOUS", off.ok, figures, off.examples)


def _grouping_checks(ctx, store, year: int) -> tuple[RuleResult, RuleResult]:
    index = WorldIndex(ctx)
    m = ctx.arrays
    law = build_grouping(m, ctx.policy, ctx.band, ctx.seed)
    t = store.read_dataset("grouping", year)
    _, s = index.series_rows(t)
    off = Offences()
    S = m.n_series
    foreign = np.flatnonzero(s < 0)
    if len(foreign):
        mids = t.column("merchant_id").to_pylist()
        off.add(
            len(foreign),
            [
                f"grouping row {i} merchant={mids[i]}; not a series of the world"
                for i in foreign[:5]
            ],
        )
    known = s[s >= 0]
    seen = np.bincount(known, minlength=S)
    for i in np.flatnonzero(seen > 1)[:5]:
        off.add(0, [f"series={index.series_label(i)}; {int(seen[i])} rows"])
    for i in np.flatnonzero(seen == 0)[:5]:
        off.add(0, [f"series={index.series_label(i)}; no row"])
    off.count += int(np.sum(seen > 1) + np.sum(seen == 0))

    rows = np.flatnonzero(s >= 0)
    si = s[rows]
    want_gid = np.array(law.group_ids, dtype=object)[law.series_group[si]]
    cols = {
        "group_id": (t.column("group_id").to_numpy(zero_copy_only=False)[rows], want_gid),
        "zone_group": (t.column("zone_group").to_numpy()[rows], law.zone_group[si]),
        "hash_bucket": (t.column("hash_bucket").to_numpy()[rows], law.hash_bucket[si]),
        "demand_class": (
            np.array(t.column("demand_class").to_pylist(), dtype=object)[rows],
            np.array(m.demand_class, dtype=object)[si],
        ),
        "virtual_band": (
            np.array(t.column("virtual_band").to_pylist(), dtype=object)[rows],
            np.array(law.vband, dtype=object)[si],
        ),
        "sigma": (t.column("sigma").to_numpy()[rows], law.sigma[law.series_group[si]]),
        "length_scale": (
            t.column("length_scale").to_numpy()[rows],
            law.length_scale[law.series_group[si]],
        ),
        "kappa": (t.column("kappa").to_numpy()[rows], law.kappa[si]),
    }
    differing: dict[str, int] = {}
    for name, (got, want) in cols.items():
        bad = np.flatnonzero(got != want)
        differing[name] = len(bad)
        off.add(
            len(bad),
            [
                f"series={index.series_label(si[i])}; {name}={got[i]!r}, the "
                f"documented construction gives {want[i]!r}"
                for i in bad[:5]
            ],
        )
    complete_r = verdict(
        "GROUPING_COMPLETE",
        off.ok,
        {
            "rows": t.num_rows,
            "series": S,
            "groups": len(law.group_ids),
            "foreign_rows": len(foreign),
            "differing": differing,
        },
        off.examples,
    )

    v = ctx.policy.validation
    gids = t.column("group_id").to_pylist()
    names, sizes = np.unique(np.array(gids, dtype=object), return_counts=True)
    out = np.flatnonzero((sizes < v.group_size_min) | (sizes > v.group_size_max))
    size_r = verdict(
        "GROUP_SIZE_BOUNDS",
        len(out) == 0,
        {
            "groups": len(names),
            "size_min": int(sizes.min()) if len(sizes) else 0,
            "size_max": int(sizes.max()) if len(sizes) else 0,
            "size_mean": float(sizes.mean()) if len(sizes) else 0.0,
            "bounds": [v.group_size_min, v.group_size_max],
            "outside": len(out),
        },
        [
            f"group={names[i]}; {int(sizes[i])} series, bounds [{v.group_size_min}, "
            f"{v.group_size_max}]"
            for i in out[:5]
        ],
    )
    return complete_r, size_r


def s1_rules(ctx, store, year: int) -> list[RuleResult]:
    first = [
        guarded("GRID_SCHEMA", lambda: schema_rule(store, "GRID_SCHEMA", "time_grid", year)),
        guarded("GRID_CONTIGUOUS", lambda: grid_contiguous(ctx, store, year)),
        guarded(
            "GROUPING_SCHEMA", lambda: schema_rule(store, "GROUPING_SCHEMA", "grouping", year)
        ),
    ]
    return state_rules("s1", first, lambda: _grouping_checks(ctx, store, year))
