"""World rules: the inputs of a run, judged once per run (not per partition).

- WORLD_VALID: the world tables pass every input rule again (docs/world.md), their
  fingerprint is the one the output is filed under, and the engine's world model builds
  (every series routable).
- RNG_KEYS_UNIQUE: within each RNG family the Philox keys of all its streams in this world are
  distinct — S2.latent.v1 over the latent groups, S3/S4 families over the series.
- TZ_COVERAGE: the engine's tz tables are exact for the partitions' years plus one year either
  side (local dates of the first and last bucket), and every tzid the world uses has rules.
"""

from __future__ import annotations

import numpy as np

from engine_core.checks.verdicts import Offences, RuleResult, complete, guarded, verdict
from engine_core.context import RunContext
from engine_core.io.store import DatasetStore
from engine_core.rng.streams import FAMILIES, group_stream, stream_keys
from engine_core.tz import covers, tzdata_version
from engine_core.world.fingerprint import fingerprint_canonical
from engine_core.world.validate import canonical_world_tables


def world_valid(ctx: RunContext) -> RuleResult:
    """WORLD_VALID from the context alone: ``ctx.world`` (its tables, fingerprint, source)
    and ``ctx.arrays`` (built here, so an unroutable series raises)."""
    tables = ctx.world.tables
    figures = {name: t.num_rows for name, t in tables.items()}
    # raises EngineError on the first broken input rule; fingerprinted as world_fingerprint
    # does, without validating and sorting a second time
    fp = fingerprint_canonical(canonical_world_tables(tables))
    m = ctx.arrays  # raises WORLD_SERIES_NO_SITE / WORLD_NO_EDGES
    figures.update(
        {
            "series_routable": m.n_series,
            "tzids": len(m.tzids),
            "fingerprint": fp,
            "source": ctx.world.source,
        }
    )
    examples = []
    if fp != ctx.world_fingerprint:
        examples.append(
            f"world; fingerprint {fp[:12]} differs from the run's {ctx.world_fingerprint[:12]}"
        )
    return verdict("WORLD_VALID", not examples, figures, examples)


def rng_keys_unique(ctx: RunContext) -> RuleResult:
    """RNG_KEYS_UNIQUE from the context alone: the stream names of ``ctx.grouping`` (latent
    groups) and ``ctx.arrays`` (series), keyed with ``ctx.policy.namespace`` and
    ``ctx.seed``."""
    ns = ctx.policy.namespace
    seed = ctx.seed
    g = ctx.grouping
    off = Offences()
    figures: dict[str, dict[str, int]] = {}
    m = ctx.arrays
    group_names = [group_stream(gid.split("|", 1)[1]) for gid in g.group_ids]
    series_names = [m.series_key(i) for i in range(m.n_series)]
    distinct = {"groups": len(set(group_names)), "series": len(set(series_names))}
    for family in FAMILIES:
        kind = "groups" if family == "S2.latent.v1" else "series"
        names = group_names if kind == "groups" else series_names
        keys = stream_keys(family, ns, seed, names)
        uniq, counts = np.unique(keys, return_counts=True)
        figures[family] = {
            "streams": len(keys),
            "distinct_names": distinct[kind],
            "distinct_keys": len(uniq),
        }
        dup_names = len(names) - distinct[kind]
        if dup_names:
            off.add(dup_names, [f"{family}; {dup_names} streams share a stream name"])
        for k in np.flatnonzero(counts > 1):
            same = [names[i] for i in np.flatnonzero(keys == uniq[k])]
            off.add(
                int(counts[k]) - 1,
                [f"{family} key={int(uniq[k]):016x}; shared by {', '.join(same[:3])}"],
            )
    return verdict(
        "RNG_KEYS_UNIQUE", off.ok, {"families": figures, "collisions": off.count}, off.examples
    )


def tz_coverage(ctx: RunContext) -> RuleResult:
    """TZ_COVERAGE from the context alone: ``ctx.tz`` against ``ctx.years`` (± 1) and the
    zones of ``ctx.arrays``."""

    tz = ctx.tz
    lo, hi = min(ctx.years) - 1, max(ctx.years) + 1
    used = list(ctx.arrays.tzids)
    off = Offences()
    if not covers(tz, lo, hi):
        off.add(
            1, [f"tz tables; built for {tz.year_lo}..{tz.year_hi}, the partitions need {lo}..{hi}"]
        )
    have = {name: i for i, name in enumerate(tz.tzids)}
    for name in used:
        i = have.get(name)
        if i is None:
            off.add(1, [f"tzid={name}; not in the tz tables"])
        elif tz.zone_start[i + 1] <= tz.zone_start[i]:
            off.add(1, [f"tzid={name}; no offset rules"])
    figures = {
        "tzids": len(used),
        "years_needed": [lo, hi],
        "years_built": [int(tz.year_lo), int(tz.year_hi)],
        "tzdata_version": tzdata_version(),
        "table_version": tz.tzdata_version,
    }
    if tz.tzdata_version != tzdata_version():
        off.add(
            1, [f"tz tables; built from tzdata {tz.tzdata_version}, installed {tzdata_version()}"]
        )
    return verdict("TZ_COVERAGE", off.ok, figures, off.examples)


def world_rules(ctx: RunContext, store: DatasetStore) -> list[RuleResult]:
    """The world rules of this run, in catalogue order (each fails rather than raises)."""
    results = [
        guarded("WORLD_VALID", lambda: world_valid(ctx)),
        guarded("RNG_KEYS_UNIQUE", lambda: rng_keys_unique(ctx)),
        guarded("TZ_COVERAGE", lambda: tz_coverage(ctx)),
    ]
    return complete("world", results)
