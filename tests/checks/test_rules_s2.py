"""S2 rules (engine_core/checks/rules_s2.py): the one day's factors of every latent group,
written from the law's kernel ``latent_field`` (conftest.latent_rows), then changed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from engine_core.checks.contract import schema_rule
from engine_core.checks.rules_s2 import clipped_lognormal_mean, latent_mean_verdict, s2_rules
from tests.checks.conftest import YEAR, col, only, replace_column

G, B = 40, 24  # tiny's latent groups, buckets of the day


def test_latent_schema_passes(law, store_of):
    r = schema_rule(store_of(law), "LATENT_SCHEMA", "latent_intensity", YEAR)
    assert r.passed is True, r.examples
    assert r.figures["rows"] == G * B


def test_latent_schema_fails(ctx, law, store_of):
    # group ids as plain strings where the contract has a dictionary
    t = law.tables["latent_intensity"]
    i = t.schema.get_field_index("group_id")
    law.tables["latent_intensity"] = t.set_column(
        i, "group_id", t.column("group_id").cast(pa.string()))
    r = only(s2_rules(ctx, store_of(law), YEAR), "LATENT_SCHEMA")
    assert (r.code, r.passed) == ("LATENT_SCHEMA", False)
    assert "group_id: type string where the contract has dictionary" in r.examples[0]


def test_latent_domain_passes(ctx, law, store_of):
    r = only(s2_rules(ctx, store_of(law), YEAR), "LATENT_DOMAIN")
    assert r.passed is True, r.examples
    assert r.figures["rows"] == r.figures["expected_rows"] == G * B


def test_latent_domain_fails(ctx, law, store_of):
    # a (group, bucket) cell without a row, and a factor beyond the clip
    t = law.tables["latent_intensity"]
    f = col(t, "factor")
    f[30] = 7.5
    t = replace_column(t, "factor", f)
    law.tables["latent_intensity"] = pa.concat_tables([t.slice(0, 10), t.slice(11)])
    r = only(s2_rules(ctx, store_of(law), YEAR), "LATENT_DOMAIN")
    assert (r.code, r.passed) == ("LATENT_DOMAIN", False)
    assert r.figures["cells_not_once"] == 1 and r.figures["outside_clip"] == 1
    gid = t.column("group_id")[10].as_py()
    assert f"group={gid} bucket=2026-01-02T10:00:00Z; 0 rows" in r.examples
    assert any("(7.5) z=" in e and "outside [0.2, 5.0]" in e for e in r.examples)


def test_latent_domain_fails_on_rows_off_the_grid(ctx, law, store_of):
    # a row of a group the grouping does not publish and a row starting 1 µs after its
    # bucket: neither has a (group, bucket) cell, both are stray, and their cells are empty
    t = law.tables["latent_intensity"]
    gid = t.column("group_id").to_pylist()
    gid[3] = "no-such-group"
    start = col(t, "bucket_start_utc")
    start[8] += 1
    t = replace_column(replace_column(t, "group_id", gid), "bucket_start_utc", start)
    law.tables["latent_intensity"] = t
    r = only(s2_rules(ctx, store_of(law), YEAR), "LATENT_DOMAIN")
    assert (r.code, r.passed) == ("LATENT_DOMAIN", False)
    assert r.figures["stray_rows"] == 2 and r.figures["cells_not_once"] == 2
    stray = [e for e in r.examples if e.endswith("not a (group, grid bucket) of this partition")]
    assert len(stray) == 2 and stray[0].startswith("group=no-such-group bucket=")


def test_latent_mean_factor_passes(ctx, law, store_of):
    # 960 factors of 40 groups: their mean is within 0.02 of the clipped log-normal mean
    # (σ ≈ 0.25-0.4, correlated over a day, so ±0.05 is several standard errors)
    r = only(s2_rules(ctx, store_of(law), YEAR), "LATENT_MEAN_FACTOR")
    assert r.passed is True, r.examples
    assert r.figures["n"] == G * B
    assert abs(r.figures["mean"] - r.figures["expected_mean"]) <= 0.05


def test_latent_mean_factor_fails(ctx, law, store_of):
    # every factor doubled (still inside the clip): the mean is ~2, expected ~1
    t = law.tables["latent_intensity"]
    law.tables["latent_intensity"] = replace_column(t, "factor", 2.0 * col(t, "factor"))
    r = only(s2_rules(ctx, store_of(law), YEAR), "LATENT_MEAN_FACTOR")
    assert (r.code, r.passed) == ("LATENT_MEAN_FACTOR", False)
    assert r.figures["mean"] > 1.9
    assert "expected 1.0000 ± 0.05" in r.examples[0]


def test_clipped_lognormal_mean():
    # without a clip the mean is exactly 1; a clip at the median drops it below
    assert abs(clipped_lognormal_mean(0.25, 1e-12, 1e12) - 1.0) < 1e-12
    assert clipped_lognormal_mean(0.25, 0.2, 1.0) < 1.0


def test_rng_rederive_s2_passes(ctx, law, store_of):
    r = only(s2_rules(ctx, store_of(law), YEAR), "RNG_REDERIVE_S2")
    assert r.passed is True, r.examples
    assert r.figures == {"sampled": G * B, "mismatches": 0}  # 2000 asked, all 960 sampled


def test_rng_rederive_s2_fails(ctx, law, store_of):
    # one factor moved by one ulp: bit-exactness finds it
    t = law.tables["latent_intensity"]
    f = col(t, "factor")
    f[100] = np.nextafter(f[100], np.inf)
    law.tables["latent_intensity"] = replace_column(t, "factor", f)
    r = only(s2_rules(ctx, store_of(law), YEAR), "RNG_REDERIVE_S2")
    assert (r.code, r.passed) == ("RNG_REDERIVE_S2", False)
    assert r.figures["mismatches"] == 1
    gid = t.column("group_id")[100].as_py()
    assert r.examples[0].startswith(f"group={gid} bucket=2026-01-02T04:00:00Z; published z=")


# ----------------------------------------------------------------------------- the core alone
def test_latent_mean_core_on_lognormal_draws():
    # 40 groups x 24 buckets of independent exp(σZ − σ²/2), σ = 0.25, clipped to [0.2, 5]:
    # the mean has standard error ≈ 0.25/√960 ≈ 0.008, so it is within 0.05 of m(σ) ≈ 1;
    # scaled by 1.1 it is ~12 standard errors beyond the tolerance's edge
    rng = np.random.default_rng(7)
    sigma = np.full(G, 0.25)
    f = np.clip(np.exp(0.25 * rng.standard_normal((G, B)) - 0.25**2 / 2), 0.2, 5.0)
    present = np.ones((G, B), dtype=bool)
    ok = latent_mean_verdict(f, present, sigma, (0.2, 5.0), 0.05)
    assert ok.passed is True
    assert ok.figures["n"] == G * B and abs(ok.figures["expected_mean"] - 1.0) < 1e-6
    bad = latent_mean_verdict(1.1 * f, present, sigma, (0.2, 5.0), 0.05)
    assert (bad.code, bad.passed) == ("LATENT_MEAN_FACTOR", False)
    assert bad.figures["mean"] > 1.05


def test_latent_mean_core_fails_without_rows():
    none = np.zeros((G, B), dtype=bool)
    r = latent_mean_verdict(np.ones((G, B)), none, np.full(G, 0.25), (0.2, 5.0), 0.05)
    assert r.passed is False and r.figures["n"] == 0
