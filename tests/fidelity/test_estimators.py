"""The fidelity estimators recover known parameters from synthetic input.

Every tolerance is a multiple of the estimator's sampling error, stated next to it; the
multiple is 4 (a two-sided normal tail of 6e-5), so with fixed seeds the tests are
deterministic and a failure means a biased estimator, not bad luck.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine_core.fidelity import estimators as est

Z = 4.0


def test_jensen_shannon_bounds():
    p = np.array([1.0, 2.0, 3.0])
    assert est.jensen_shannon_bits(p, 2 * p) == pytest.approx(0.0, abs=1e-12)
    assert est.jensen_shannon_bits([1, 0], [0, 1]) == pytest.approx(1.0)


def test_shares_of_a_known_week():
    week = np.zeros(168)
    week[5 * 24 + 12] = 3.0  # Saturday noon
    week[2] = 1.0  # Monday 02:00
    assert est.weekend_share(week) == pytest.approx(0.75)
    assert est.night_share(week, 0, 6) == pytest.approx(0.25)
    assert est.hour_shares(week, [5])[12] == pytest.approx(1.0)


def test_tail_exponent_of_a_pareto_sample():
    rng = np.random.default_rng(1)
    for zeta in (0.8, 1.0, 1.5):
        x = rng.random(20_000) ** (-1.0 / zeta)  # P(X > x) = x^-zeta
        hat, se, k = est.tail_exponent_mle(x, 0.2)
        assert k == 4000
        # Hill MLE: se = zeta / sqrt(k) = 0.016 zeta
        assert se == pytest.approx(zeta / math.sqrt(k), rel=0.1)
        assert abs(hat - zeta) <= Z * zeta / math.sqrt(k)


def test_tail_exponent_separates_thin_tails():
    x = np.random.default_rng(2).lognormal(0.0, 0.3, 1000)  # thin tail: huge local exponent
    hat, _, _ = est.tail_exponent_mle(x, 0.2)
    assert hat > 3


@pytest.mark.parametrize(("kappa", "mu"), [(20.0, 50.0), (5.0, 40.0), (100.0, 200.0)])
def test_nb2_kappa_moments(kappa, mu):
    rng = np.random.default_rng(3)
    n_rows = 200_000
    mus = rng.uniform(0.5 * mu, 1.5 * mu, n_rows)
    counts = rng.negative_binomial(kappa, kappa / (kappa + mus)).astype(np.float64)
    m = est.Nb2Moments(2)
    group = np.zeros(n_rows, dtype=np.int64)
    m.add(group[:100_000], counts[:100_000], mus[:100_000])  # in two batches
    m.add(group[100_000:], counts[100_000:], mus[100_000:])
    k_hat, rel_se = m.estimate()
    assert m.rows[0] == n_rows and math.isnan(k_hat[1])
    # the ratio estimator's own standard error (delta method), a few per cent here
    assert rel_se[0] < 0.05
    assert abs(k_hat[0] / kappa - 1) <= Z * rel_se[0]


def test_fano_factor_of_poisson_and_nb2_counts():
    rng = np.random.default_rng(4)
    weeks, series, mu, kappa = 52, 40, 8.0, 10.0
    for counts, expected in (
        (rng.poisson(mu, (series, 168, weeks)), 1.0),
        (rng.negative_binomial(kappa, kappa / (kappa + mu), (series, 168, weeks)), 1 + mu / kappa),
    ):
        c = counts.astype(np.float64)
        per_how, overall, used = est.fano_by_hour_of_week(
            c.sum(-1), (c * c).sum(-1), np.full((series, 168), weeks), 2.0
        )
        assert used == series * 168
        # the median of series*168 sample Fano factors, each with sd ~ F*sqrt(2/(W-1)) = 0.2F;
        # the median of N of them has sd ~ 1.25 * 0.2F / sqrt(N) < 0.01F
        assert overall == pytest.approx(expected, rel=Z * 0.01)
        assert np.nanmax(np.abs(per_how / expected - 1)) < Z * 1.25 * 0.2 / math.sqrt(series)


def test_event_uplift_recovers_a_known_effect():
    rng = np.random.default_rng(5)
    cells = 4000
    e0 = rng.uniform(200, 2000, cells)
    event = np.zeros(cells, bool)
    event[:300] = True
    u = 1.2
    e = np.where(event, e0 * u, e0)
    level = 0.97  # the latent factor's level: absorbed by the ordinary days
    noise = rng.lognormal(-0.5 * 0.05**2, 0.05, cells)  # day-level extra variance, sd 5 %
    r = rng.poisson(e * level * noise).astype(np.float64)
    out = est.event_uplift(r, e, e0, event, ~event)
    assert out["configured"] == pytest.approx(u)
    # se from the method-of-moments split of ordinary-day variance; check it is about right:
    # 300 cells with ~5 % noise each -> se ~ 0.05 * 1.2 / sqrt(300) = 0.0035
    assert 0.002 < out["se"] < 0.006
    assert abs(out["realised"] - u) <= Z * out["se"]


def test_comovement_recovers_sigma_and_rho():
    rng = np.random.default_rng(6)
    sigma, phi, hours = 0.3, 0.9, 40_000
    z = np.empty(hours)
    z[0] = rng.normal(0, sigma)
    eps = rng.normal(0, 1, hours)
    for t in range(1, hours):
        z[t] = phi * z[t - 1] + sigma * math.sqrt(1 - phi * phi) * eps[t]
    f = np.exp(z - sigma**2 / 2)
    lam_a = np.full(hours, 400.0)
    lam_b = np.full(hours, 250.0)
    x_a = rng.poisson(lam_a * f)
    x_b = rng.poisson(lam_b * f)
    s_hat, r_hat, rel_se = est.comovement(x_a, x_b, lam_a, lam_b)
    assert rel_se < 0.05
    # effective sample ~ hours (1 - phi) / (1 + phi) = 2100: the variance of f is estimated to
    # ~ sqrt(2/2100) = 3 % relative, sigma to half that; rho to ~ 0.02
    assert abs(s_hat / sigma - 1) <= Z * 0.015
    assert abs(r_hat - phi) <= Z * 0.02
