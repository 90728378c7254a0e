"""Estimators of the fidelity report: pure functions over numpy arrays (docs/calibration.md).

Each takes aggregates that a streaming scan can build in bounded memory (counts per class
and hour of week, sums per series and hour of week, totals per merchant, per location-day)
and returns plain numbers. None reads files or knows Dagster.
"""

from __future__ import annotations

import math

import numpy as np

HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7
HOURS_PER_WEEK = HOURS_PER_DAY * DAYS_PER_WEEK


# ----------------------------------------------------------------------------- profiles
def jensen_shannon_bits(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen–Shannon divergence in bits (0 = same, 1 = disjoint) of two histograms,
    each normalised to sum 1 first."""
    p = np.asarray(p, dtype=np.float64).ravel()
    q = np.asarray(q, dtype=np.float64).ravel()
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / m[nz])))

    return 0.5 * kl(p) + 0.5 * kl(q)


def day_hour(week: np.ndarray) -> np.ndarray:
    """A 168-hour histogram (Monday 00:00 first) as [7 days, 24 hours]."""
    return np.asarray(week, dtype=np.float64).reshape(DAYS_PER_WEEK, HOURS_PER_DAY)


def hour_shares(week: np.ndarray, days: list[int]) -> np.ndarray:
    """Share of each local hour of day within the given weekdays (24 values, sum 1)."""
    rows = day_hour(week)[days].sum(axis=0)
    total = rows.sum()
    return rows / total if total > 0 else rows


def night_share(week: np.ndarray, start_hour: int, end_hour: int) -> float:
    """Share of arrivals with a local hour in [start_hour, end_hour)."""
    dh = day_hour(week)
    total = dh.sum()
    return float(dh[:, start_hour:end_hour].sum() / total) if total > 0 else math.nan


def weekend_share(week: np.ndarray) -> float:
    """Share of arrivals on local Saturday and Sunday."""
    dh = day_hour(week)
    total = dh.sum()
    return float(dh[5:].sum() / total) if total > 0 else math.nan


# ----------------------------------------------------------------------------- dispersion
def fano_by_hour_of_week(
    sum_n: np.ndarray, sum_n2: np.ndarray, weeks: np.ndarray, min_mean: float
) -> tuple[np.ndarray, float, int]:
    """Fano factor (variance / mean) of counts of the same hour of week across weeks.

    ``sum_n``, ``sum_n2`` [series, 168]: Σ n and Σ n² over the buckets of each local hour of
    week; ``weeks`` [series, 168]: how many buckets there were (zeros count). Returns the
    median Fano per hour of week over series-hours with mean ≥ ``min_mean`` (NaN where none),
    the median over all of them, and how many series-hours were used. Unbiased variance
    (ddof = 1); cells with fewer than two buckets are left out."""
    w = np.asarray(weeks, dtype=np.float64)
    ok = w >= 2
    mean = np.divide(sum_n, w, out=np.zeros_like(w), where=ok)
    var = np.divide(sum_n2 - w * mean * mean, w - 1, out=np.zeros_like(w), where=ok)
    use = ok & (mean >= min_mean)
    fano = np.divide(var, mean, out=np.full_like(w, np.nan), where=use)
    per_how = np.full(HOURS_PER_WEEK, np.nan)
    for h in range(HOURS_PER_WEEK):
        col = fano[:, h][use[:, h]]
        if col.size:
            per_how[h] = float(np.median(col))
    used = int(use.sum())
    overall = float(np.median(fano[use])) if used else math.nan
    return per_how, overall, used


class Nb2Moments:
    """Moment estimator of the NB2 dispersion κ given each count's mean μ.

    E[(n − μ)² − μ] = μ²/κ, so 1/κ̂ = Σ((n − μ)² − μ) / Σ μ² (a ratio estimator). Its
    standard error is √Σ(a − θ b)² / Σ b with a = (n − μ)² − μ, b = μ², θ = 1/κ̂, kept in
    running sums so rows can be added in batches."""

    def __init__(self, n_groups: int) -> None:
        self.sa = np.zeros(n_groups)
        self.sb = np.zeros(n_groups)
        self.saa = np.zeros(n_groups)
        self.sab = np.zeros(n_groups)
        self.sbb = np.zeros(n_groups)
        self.rows = np.zeros(n_groups, dtype=np.int64)

    def add(self, group: np.ndarray, n: np.ndarray, mu: np.ndarray) -> None:
        a = (n - mu) ** 2 - mu
        b = mu * mu
        k = self.sa.size
        self.sa += np.bincount(group, a, k)
        self.sb += np.bincount(group, b, k)
        self.saa += np.bincount(group, a * a, k)
        self.sab += np.bincount(group, a * b, k)
        self.sbb += np.bincount(group, b * b, k)
        self.rows += np.bincount(group, minlength=k)

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """(κ̂, relative standard error of κ̂) per group; NaN where there are no rows or
        the estimate of 1/κ is not positive."""
        theta = np.divide(self.sa, self.sb, out=np.full_like(self.sa, np.nan), where=self.sb > 0)
        resid = np.maximum(self.saa - 2 * theta * self.sab + theta * theta * self.sbb, 0.0)
        se_theta = np.divide(np.sqrt(resid), self.sb, out=np.full_like(self.sa, np.nan),
                             where=self.sb > 0)
        positive = theta > 0
        kappa = np.where(positive, 1.0 / np.where(positive, theta, 1.0), np.nan)
        rel_se = np.where(positive, se_theta / np.where(positive, theta, 1.0), np.nan)
        return kappa, rel_se


# ----------------------------------------------------------------------------- sizes
def tail_exponent_mle(sizes: np.ndarray, tail_fraction: float) -> tuple[float, float, int]:
    """Maximum-likelihood (Hill) exponent ζ of P(S > s) ∝ s^-ζ over the largest
    ``tail_fraction`` of the positive ``sizes``, with x_min the smallest size of the tail:
    ζ̂ = (k − 1) / Σ ln(x_i / x_min) (the unbiased form). Returns (ζ̂, its standard error
    ζ̂/√k, k)."""
    x = np.sort(np.asarray(sizes, dtype=np.float64)[np.asarray(sizes) > 0])[::-1]
    k = max(2, int(math.ceil(tail_fraction * x.size)))
    if x.size < 3:
        return math.nan, math.nan, int(x.size)
    k = min(k, x.size)
    tail = x[:k]
    logs = np.log(tail / tail[-1])
    denom = float(logs.sum())
    if denom <= 0:
        return math.inf, math.nan, k
    zeta = (k - 1) / denom
    return zeta, zeta / math.sqrt(k), k


def top_share(sizes: np.ndarray, fraction: float) -> float:
    """Share of the total carried by the largest ``fraction`` of the entries."""
    x = np.sort(np.asarray(sizes, dtype=np.float64))[::-1]
    k = max(1, int(math.ceil(fraction * x.size)))
    total = x.sum()
    return float(x[:k].sum() / total) if total > 0 else math.nan


# ----------------------------------------------------------------------------- event studies
def event_uplift(
    realised: np.ndarray,
    expected: np.ndarray,
    expected_plain: np.ndarray,
    event: np.ndarray,
    ordinary: np.ndarray,
) -> dict[str, float]:
    """Uplift of a kind of day, realised and configured, over cells (location, local day).

    ``realised`` R: arrivals; ``expected`` E: target arrivals with calendar effects;
    ``expected_plain`` E0: the same without them; ``event``/``ordinary``: boolean masks.
    Realised uplift = (ΣR/ΣE0 over event cells) / (ΣR/ΣE0 over ordinary cells), the
    ordinary days absorbing the level of the latent factor; configured uplift = ΣE/ΣE0 over
    the event cells. The standard error treats each event cell's ratio R/E0 as independent
    with the variance seen on ordinary cells, split into a Poisson part q/E0 and an extra
    part s² estimated from them (method of moments)."""
    r, e, e0 = (np.asarray(a, dtype=np.float64) for a in (realised, expected, expected_plain))
    ev = np.asarray(event, bool) & (e0 > 0)
    od = np.asarray(ordinary, bool) & (e0 > 0)
    out = {"cells": int(ev.sum()), "ordinary_cells": int(od.sum())}
    if not ev.any() or not od.any():
        return out | {"realised": math.nan, "configured": math.nan, "se": math.nan}
    level = r[od].sum() / e0[od].sum()
    realised_uplift = (r[ev].sum() / e0[ev].sum()) / level
    configured = e[ev].sum() / e0[ev].sum()
    q = r[od] / e0[od] / level
    extra = float(np.mean((q - 1.0) ** 2 - 1.0 / (level * e0[od])))
    extra = max(extra, 0.0)
    w = e0[ev]
    var = float(np.sum(w * w * (extra + 1.0 / (level * w))) / w.sum() ** 2)
    return out | {
        "realised": float(realised_uplift),
        "configured": float(configured),
        "se": math.sqrt(var) * float(realised_uplift),
    }


# ----------------------------------------------------------------------------- latent
def comovement(
    x_a: np.ndarray, x_b: np.ndarray, lam_a: np.ndarray, lam_b: np.ndarray
) -> tuple[float, float, float]:
    """σ̂, lag-1 ρ̂ and the relative standard error of the lag-0 covariance, for a latent
    factor shared by two disjoint halves of a group.

    r_h(t) = X_h(t)/Λ_h(t) is the factor f(t) times independent count noise, so the cross
    covariance of r_A and r_B is Var f = e^{σ²} − 1 for f = exp(Z − σ²/2), Z Gaussian with
    variance σ², and at lag 1 it is e^{σ²ρ} − 1. Hours with Λ = 0 in a half are dropped. The
    standard error treats hours as independent (√(Var r_A · Var r_B / T)), which holds for
    the count noise that dominates small groups."""
    with np.errstate(invalid="ignore", divide="ignore"):  # a silent half: NaN, judged below
        return _comovement(x_a, x_b, lam_a, lam_b)


def _comovement(x_a: np.ndarray, x_b: np.ndarray, lam_a: np.ndarray, lam_b: np.ndarray
                ) -> tuple[float, float, float]:
    ok = (np.asarray(lam_a) > 0) & (np.asarray(lam_b) > 0)
    ra = np.where(ok, np.divide(x_a, lam_a, out=np.zeros(len(ok)), where=ok), np.nan)
    rb = np.where(ok, np.divide(x_b, lam_b, out=np.zeros(len(ok)), where=ok), np.nan)
    ma, mb = np.nanmean(ra), np.nanmean(rb)
    da, db = ra - ma, rb - mb
    c0 = float(np.nanmean(da * db)) / (ma * mb)
    c1 = 0.5 * (float(np.nanmean(da[:-1] * db[1:])) + float(np.nanmean(db[:-1] * da[1:])))
    c1 /= ma * mb
    t = int(ok.sum())
    se = math.sqrt(float(np.nanmean(da * da)) * float(np.nanmean(db * db)) / max(t, 1))
    se /= ma * mb
    if c0 <= -1 or not math.isfinite(c0):
        return math.nan, math.nan, math.nan
    rel_se = se / c0 if c0 > 0 else math.inf
    s2 = math.log1p(c0)
    if s2 <= 0:
        return 0.0, math.nan, rel_se
    rho = math.log1p(c1) / s2 if c1 > -1 else math.nan
    return math.sqrt(s2), rho, rel_se
