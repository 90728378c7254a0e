"""World rules (engine_core/checks/rules_world.py) over the tiny world's context: no store,
no state."""

from __future__ import annotations

import dataclasses

from engine_core.checks.rules_world import rng_keys_unique, tz_coverage, world_rules, world_valid
from engine_core.tz import build_tz_tables
from tests.checks.conftest import fresh, only


def test_world_valid_passes(ctx):
    r = world_valid(ctx)
    assert r.passed is True, r.examples
    assert r.figures["fingerprint"] == ctx.world_fingerprint
    assert r.figures["series_routable"] == 51


def test_world_valid_fails(ctx):
    # output filed under another world: the fingerprint the tables give is not the run's
    world = dataclasses.replace(ctx.world, fingerprint="0" * 64)
    other = dataclasses.replace(fresh(ctx), world=world)
    r = only(world_rules(other, None), "WORLD_VALID")
    assert (r.code, r.passed) == ("WORLD_VALID", False)
    assert "differs from the run's 000000000000" in r.examples[0]


def test_rng_keys_unique_passes(ctx):
    r = rng_keys_unique(ctx)
    assert r.passed is True, r.examples
    assert r.figures["collisions"] == 0
    fam = r.figures["families"]["S2.latent.v1"]
    assert fam["streams"] == fam["distinct_keys"] == len(ctx.grouping.group_ids)


def test_rng_keys_unique_fails(ctx):
    # two latent groups named alike draw from one stream
    g = ctx.grouping
    twin = dataclasses.replace(g, group_ids=[g.group_ids[0], *g.group_ids[:-1]])
    r = only(world_rules(fresh(ctx, grouping=twin), None), "RNG_KEYS_UNIQUE")
    assert (r.code, r.passed) == ("RNG_KEYS_UNIQUE", False)
    assert r.figures["collisions"] >= 1
    assert any("S2.latent.v1" in e and "share" in e for e in r.examples)


def test_tz_coverage_passes(ctx):
    r = tz_coverage(ctx)
    assert r.passed is True, r.examples
    assert r.figures["years_needed"] == [2025, 2027]


def test_tz_coverage_fails(ctx):
    # tables built for other years, and without Europe/London
    zones = [z for z in ctx.arrays.tzids if z != "Europe/London"]
    r = only(world_rules(fresh(ctx, tz=build_tz_tables(zones, 2030, 2031)), None), "TZ_COVERAGE")
    assert (r.code, r.passed) == ("TZ_COVERAGE", False)
    assert r.figures["years_built"] == [2030, 2031]
    assert any("built for 2030..2031, the partitions need 2025..2027" in e for e in r.examples)
    assert "tzid=Europe/London; not in the tz tables" in r.examples
