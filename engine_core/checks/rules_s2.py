"""S2 rules: the latent factor field of one partition.

- LATENT_DOMAIN: exactly one row per (group of the published grouping, grid bucket), no row
  outside that grid, z finite and factor inside the policy's ``factor_clip``.
- LATENT_MEAN_FACTOR: the mean factor over all rows against its expectation. The stationary
  Z of a group is N(0, σ²), so before clipping the factor exp(Z − σ²/2) has mean exactly 1;
  clipping to [lo, hi] moves it to m(σ) = lo·Φ(α_lo) + Φ(β_hi) − Φ(β_lo) + hi·(1 − Φ(α_hi))
  with α = (ln c + σ²/2)/σ and β = (ln c − σ²/2)/σ — a tiny bias for the default σ. The rule
  passes when |mean − mean over groups of m(σ_g)| ≤ ``mean_factor_tolerance``; figures hold
  the mean, its expectation, the deviation from 1 and n.
- RNG_REDERIVE_S2: ``rng_rederive_sample`` (group, bucket) cells, evenly spaced over the
  partition in (group, bucket) order, recomputed with the law's kernel ``latent_field`` over
  just the bucket range the sample spans — which starts elsewhere than the partition, so
  this also exercises partition-freeness — and compared bit for bit (z and factor) with the
  published values.
"""

from __future__ import annotations

import math

import numpy as np

from engine_core.checks.contract import schema_rule
from engine_core.checks.law import law_inputs
from engine_core.checks.verdicts import Offences, RuleResult, guarded, state_rules, verdict
from engine_core.checks.world_index import WorldIndex
from engine_core.kernels.latent import latent_field
from engine_core.timebase import US_PER_S as US


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def clipped_lognormal_mean(sigma: float, lo: float, hi: float) -> float:
    """E[clip(exp(σZ − σ²/2), lo, hi)] for Z ~ N(0, 1)."""
    h = 0.5 * sigma * sigma
    a_lo, a_hi = (math.log(lo) + h) / sigma, (math.log(hi) + h) / sigma
    b_lo, b_hi = (math.log(lo) - h) / sigma, (math.log(hi) - h) / sigma
    return lo * _phi(a_lo) + (_phi(b_hi) - _phi(b_lo)) + hi * (1.0 - _phi(a_hi))


def evenly_spaced(n_total: int, n_sample: int) -> np.ndarray:
    """``n_sample`` indices spread evenly over range(n_total) (all of them when fewer)."""
    if n_total <= n_sample:
        return np.arange(n_total, dtype=np.int64)
    k = np.arange(n_sample, dtype=np.float64)
    return np.floor((k + 0.5) * n_total / n_sample).astype(np.int64)


def latent_mean_verdict(
    factor: np.ndarray,
    present: np.ndarray,
    sigma: np.ndarray,
    factor_clip: tuple[float, float],
    tolerance: float,
) -> RuleResult:
    """LATENT_MEAN_FACTOR over the dense [group, bucket] ``factor`` (cells where ``present``):
    its mean against the mean over groups of the clipped log-normal mean m(σ_g)
    (:func:`clipped_lognormal_mean`, σ per group in ``sigma``, NaN for a group the law does
    not know — left out); passes when they differ by at most ``tolerance``."""
    f, sig = factor, sigma
    lo, hi = factor_clip
    G = f.shape[0]
    n_present = int(np.count_nonzero(present))
    mean = float(np.sum(f, where=present)) / n_present if n_present else math.nan
    known = np.isfinite(sig)
    expected = (
        float(np.mean([clipped_lognormal_mean(s, lo, hi) for s in sig[known]]))
        if known.any()
        else 1.0
    )
    tol = tolerance
    ok = n_present > 0 and abs(mean - expected) <= tol
    return verdict(
        "LATENT_MEAN_FACTOR",
        ok,
        {
            "mean": mean,
            "expected_mean": expected,
            "deviation_from_1": mean - 1.0,
            "n": n_present,
            "groups": G,
            "tolerance": tol,
        },
        [f"latent_intensity; mean factor {mean:.4f}, expected {expected:.4f} ± {tol}"],
    )


def s2_rules(ctx, store, year: int) -> list[RuleResult]:
    """Every S2 rule over ``year``: the published ``latent_intensity`` (and the ``grouping``
    it is indexed by) against ``ctx.window(year)``, ``ctx.grouping`` and the policy."""
    first = [
        guarded(
            "LATENT_SCHEMA", lambda: schema_rule(store, "LATENT_SCHEMA", "latent_intensity", year)
        )
    ]
    return state_rules("s2", first, lambda: _latent_checks(ctx, store, year))


def _latent_checks(ctx, store, year: int) -> list[RuleResult]:
    w = ctx.window(year)
    index = WorldIndex(ctx)
    groups, lat = law_inputs(ctx, store, year, index, with_z=True)
    pol = ctx.policy
    lo, hi = pol.latent.factor_clip
    G, B = lat.tally.shape
    D = w.bucket_seconds

    def cell(g: int, b: int) -> str:
        start = WorldIndex.utc_label((w.first_bucket + b) * D * US)
        return f"group={groups.group_ids[g]} bucket={start}"

    # ---------------------------------------------------------------- LATENT_DOMAIN
    off = Offences()
    off.add(lat.stray_rows, lat.stray_examples)
    bad_tally = np.argwhere(lat.tally != 1)
    off.add(
        len(bad_tally),
        [
            f"{cell(g, b)}; {int(lat.tally[g, b])}{'+' if lat.tally[g, b] == 255 else ''} rows"
            for g, b in bad_tally[:5]
        ],
    )
    present = lat.tally > 0
    f = lat.factor
    out_clip = np.argwhere(present & ~((f >= lo) & (f <= hi) & np.isfinite(lat.z)))
    off.add(
        len(out_clip),
        [
            f"{cell(g, b)}; factor={f[g, b]!r} z={lat.z[g, b]!r} outside [{lo}, {hi}]"
            for g, b in out_clip[:5]
        ],
    )
    domain = verdict(
        "LATENT_DOMAIN",
        off.ok,
        {
            "rows": lat.rows,
            "groups": G,
            "buckets": B,
            "expected_rows": G * B,
            "cells_not_once": len(bad_tally),
            "stray_rows": lat.stray_rows,
            "outside_clip": len(out_clip),
            "factor_clip": [lo, hi],
        },
        off.examples,
    )

    # ---------------------------------------------------------------- LATENT_MEAN_FACTOR
    law = ctx.grouping
    law_pos = {g: k for k, g in enumerate(law.group_ids)}
    sig = np.array([law.sigma[law_pos[g]] if g in law_pos else np.nan for g in groups.group_ids])
    mean_r = latent_mean_verdict(f, present, sig, (lo, hi), pol.validation.mean_factor_tolerance)

    # ---------------------------------------------------------------- RNG_REDERIVE_S2
    picks = evenly_spaced(G * B, pol.validation.rng_rederive_sample)
    off = Offences()
    pick_g, pick_b = np.divmod(picks, B)
    law_k = np.array([law_pos.get(g, -1) for g in groups.group_ids], dtype=np.int64)
    # the law at each picked cell alone: the field is partition-free (a bucket's value does
    # not depend on where the computed range starts), so one bucket costs one block's chain
    # instead of every block of the partition
    z_one = np.empty((1, 1))
    f_one = np.empty((1, 1))
    for g, b in zip(pick_g.tolist(), pick_b.tolist(), strict=True):
        label = cell(g, b)
        k = int(law_k[g])
        if k < 0:
            off.add(1, [f"{label}; group is not in the documented grouping"])
            continue
        latent_field(law.keys[k : k + 1], law.sigma[k : k + 1], law.length_scale[k : k + 1],
                     w.first_bucket + b, 1, pol.latent.block_buckets, lo, hi, z_one, f_one)
        zl, fl = z_one[0, 0], f_one[0, 0]
        if not (zl == lat.z[g, b] and fl == f[g, b]):
            off.add(
                1,
                [
                    f"{label}; published z={lat.z[g, b]!r} factor={f[g, b]!r}, law "
                    f"z={zl!r} factor={fl!r}"
                ],
            )
    rederive = verdict(
        "RNG_REDERIVE_S2", off.ok, {"sampled": len(picks), "mismatches": off.count}, off.examples
    )
    return [domain, mean_r, rederive]
