"""The catalogue of validation rules: stable codes, the state each judges, blocking or not.

The Dagster asset checks are generated from this table, S5 reports every rule, and
docs/errors.md lists the same codes. A rule is *blocking* when a failure would corrupt what
downstream states read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RuleSpec:
    code: str
    state: str  # world, s1, s2, s3, s4
    blocking: bool
    description: str


RULES: tuple[RuleSpec, ...] = (
    # world
    RuleSpec("WORLD_VALID", "world", True, "world tables pass every input rule (docs/world.md)"),
    RuleSpec("RNG_KEYS_UNIQUE", "world", True, "no two streams of a family share a Philox key"),
    RuleSpec("TZ_COVERAGE", "world", True, "every tzid has offset rules for the partition's years"),
    # s1
    RuleSpec("GRID_SCHEMA", "s1", True, "time grid has the contract schema"),
    RuleSpec("GRID_CONTIGUOUS", "s1", True, "buckets contiguous, half-open, aligned, complete"),
    RuleSpec("GROUPING_SCHEMA", "s1", True, "grouping has the contract schema"),
    RuleSpec("GROUPING_COMPLETE", "s1", True, "every series in exactly one group, keys unique"),
    RuleSpec("GROUP_SIZE_BOUNDS", "s1", False, "group sizes within the policy's realism bounds"),
    # s2
    RuleSpec("LATENT_SCHEMA", "s2", True, "latent intensity has the contract schema"),
    RuleSpec("LATENT_DOMAIN", "s2", True, "exactly one factor per (group, grid bucket), clipped"),
    RuleSpec("LATENT_MEAN_FACTOR", "s2", False, "mean latent factor close to 1"),
    RuleSpec("RNG_REDERIVE_S2", "s2", True, "sampled factors re-derived bit-exactly from the law"),
    # s3
    RuleSpec("COUNTS_SCHEMA", "s3", True, "bucket counts have the contract schema"),
    RuleSpec("COUNTS_KEY_UNIQUE", "s3", True, "(series, bucket) unique, count > 0"),
    RuleSpec("COUNTS_DOMAIN_ALIGN", "s3", True, "every bucket in the grid, every series routable"),
    RuleSpec("COUNTS_COMPLETENESS", "s3", True, "every series x grid bucket was sampled (totals)"),
    RuleSpec("COUNTS_CAP", "s3", True, "count <= max_count_per_bucket, capped flag consistent"),
    RuleSpec("COUNTS_DISPERSION", "s3", False, "realised counts match NB2/Poisson mean-variance"),
    RuleSpec("RNG_REDERIVE_S3", "s3", True, "sampled bucket counts re-derived bit-exactly"),
    # s4
    RuleSpec("EVENTS_SCHEMA", "s4", True, "arrival events have the contract schema"),
    RuleSpec("EVENTS_ID_UNIQUE", "s4", True, "arrival_id unique"),
    RuleSpec("EVENTS_CONSERVATION", "s4", True, "per (series, bucket) event count equals S3 count"),
    RuleSpec("EVENTS_IN_BUCKET", "s4", True, "every ts_utc inside its bucket [start, end)"),
    RuleSpec("EVENTS_LOCAL_TIME", "s4", True, "ts_local equals an independent tz conversion"),
    RuleSpec("EVENTS_ROUTING_MEMBERSHIP", "s4", True, "site/edge of the merchant, country, zone"),
    RuleSpec("EVENTS_TARGET_EXCLUSIVE", "s4", True, "exactly one of site/edge; is_virtual agrees"),
    RuleSpec("EVENTS_SORTED", "s4", True, "rows sorted by (merchant_id, ts_utc, arrival_seq)"),
    RuleSpec("EVENTS_SEQ", "s4", True, "arrival_seq per merchant is 1..n and chronological"),
    RuleSpec("RNG_REDERIVE_S4", "s4", True, "sampled buckets' events re-derived bit-exactly"),
    RuleSpec("EVENTS_UNIFORMITY", "s4", False, "within-bucket placement uniform"),
    RuleSpec("EVENTS_ROUTING_SHARES", "s4", False, "routing shares match weights"),
    RuleSpec("EVENTS_WEEKEND_SHARE", "s4", False, "weekend share matches the expected share"),
)

RULES_BY_CODE: dict[str, RuleSpec] = {r.code: r for r in RULES}


def rules_for(state: str) -> tuple[RuleSpec, ...]:
    return tuple(r for r in RULES if r.state == state)
