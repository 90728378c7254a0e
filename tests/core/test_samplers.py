"""Samplers: Box–Muller, NB2/Poisson inversion, Walker alias, µs placement.

Statistical tests use fixed keys, so they are deterministic; each tolerance is a multiple of
the sampling error of the statistic, derived next to it. With 5 sd a correct sampler would
fail a given check with probability ~6e-7 for a fresh seed, so a failure means a defect.
"""

from __future__ import annotations

import decimal
import math
from fractions import Fraction

import numba as nb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from engine_core.kernels.counts import count_draw
from engine_core.rng.philox import philox_block, to_uniform
from engine_core.rng.samplers import (
    SEQ_U_MAX,
    SMALL_MU,
    _guided_inverse,
    alias_build,
    alias_build_ranges,
    alias_pick,
    betainc_reg,
    box_muller,
    count_inverse,
    gammainc_upper_reg,
    place_us,
)
from engine_core.rng.streams import stream_key

BUCKET = 490896  # 2026-01-01T00:00Z in hours since the epoch
ONE_BELOW = 1.0 - 2.0**-53  # the largest double below 1.0
U_MIN = 2.0**-65  # the smallest uniform the law produces (x = 0)
BIG_CAP = 10**12  # "no cap" for the pure inverse
SEVERAL_SD = 5.0


def key_of(family: str, stream: str) -> np.uint64:
    return np.uint64(stream_key(family, "default", 42, stream))


# ----------------------------------------------------------------------------- njit drivers
@nb.njit
def _normals(key, n):
    out = np.empty(n, np.float64)
    for t in range(n):
        o0, o1 = philox_block(np.uint64(0), np.uint64(BUCKET + t), key)
        out[t] = box_muller(to_uniform(o0), to_uniform(o1))
    return out


@nb.njit(parallel=True)
def _counts_from_philox(key, n, mu, kappa, poisson):
    """n counts through the real path: block (j, BUCKET), u = U(out0), N = F^-1(u)."""
    out = np.empty(n, np.int64)
    for j in nb.prange(n):
        o0, _ = philox_block(np.uint64(j), np.uint64(BUCKET), key)
        out[j] = count_inverse(to_uniform(o0), mu, kappa, poisson, BIG_CAP)
    return out


@nb.njit(parallel=True)
def _inverse_many(u, mu, kappa, poisson, cap):
    out = np.empty(u.shape[0], np.int64)
    for i in nb.prange(u.shape[0]):
        out[i] = count_inverse(u[i], mu, kappa, poisson, cap)
    return out


@nb.njit(parallel=True)
def _guided_many(u, mu, kappa, poisson, cap):
    out = np.empty(u.shape[0], np.int64)
    for i in nb.prange(u.shape[0]):
        out[i] = _guided_inverse(u[i], mu, kappa, poisson, cap)
    return out


@nb.njit
def _count_draw(key, bucket, mu, kappa, poisson, max_count):
    return count_draw(key, bucket, mu, kappa, poisson, max_count)


@nb.njit
def _alias_picks(prob, alias, key, n_draws):
    n = prob.shape[0]
    out = np.empty(n_draws, np.int64)
    for j in range(n_draws):
        o0, _ = philox_block(np.uint64(j), np.uint64(BUCKET), key)
        out[j] = alias_pick(prob, alias, 0, n, to_uniform(o0))
    return out


@nb.njit
def _alias_pick_one(prob, alias, start, n, u):
    return alias_pick(prob, alias, start, n, u)


@nb.njit
def _place_one(start, duration, u):
    return place_us(start, duration, u)


@nb.njit
def _placements(key, n, start, duration):
    out = np.empty(n, np.int64)
    for j in range(n):
        o0, _ = philox_block(np.uint64(j), np.uint64(BUCKET), key)
        out[j] = place_us(start, duration, to_uniform(o0))
    return out


@nb.njit
def _box_muller_one(u1, u2):
    return box_muller(u1, u2)


# ----------------------------------------------------------------------------- Box–Muller
def test_box_muller_standard_normal():
    n = 200_000
    z = _normals(key_of("S2.latent.v1", "group=test|box_muller"), n)
    # mean of n N(0,1): sd 1/sqrt(n); sample variance: sd ≈ sqrt(2/n) (μ4 − σ⁴ = 2 for N(0,1))
    assert abs(z.mean()) < SEVERAL_SD * math.sqrt(1.0 / n)
    assert abs(z.var(ddof=1) - 1.0) < SEVERAL_SD * math.sqrt(2.0 / n)
    # KS against N(0, 1): a fixed key, so the p-value is a fixed number; 1e-4 is the bar
    assert stats.kstest(z, "norm").pvalue > 1e-4
    # the tails exist and are not cut: P(|Z| > 4) = 6.3e-5, about 13 expected
    assert 1 <= int(np.sum(np.abs(z) > 4.0)) <= 40


def test_box_muller_formula_and_extremes():
    assert _box_muller_one(0.5, 0.0) == pytest.approx(math.sqrt(2.0 * math.log(2.0)))
    # the smallest u1 of the law gives the largest |z|: finite, about 9.4
    z = _box_muller_one(U_MIN, 0.0)
    assert math.isfinite(z) and 9.0 < z < 10.0
    assert math.isfinite(_box_muller_one(ONE_BELOW, ONE_BELOW))


# ----------------------------------------------------------------------------- count moments
MOMENT_MUS = [0.01, 0.5, 3.0, 40.0, 500.0, 20000.0]
LAWS = [("nb2", 30.0), ("nb2", 2.0), ("poisson", 0.0)]


def _law(name: str, mu: float, kappa: float):
    if name == "poisson":
        return stats.poisson(mu)
    return stats.nbinom(kappa, kappa / (kappa + mu))


@pytest.mark.parametrize(("law", "kappa"), LAWS)
@pytest.mark.parametrize("mu", MOMENT_MUS)
def test_count_mean_and_variance(mu, law, kappa):
    n = 100_000
    key = key_of("S3.count.v1", f"series=1|GB|Europe/London|{law}{kappa}|{mu}")
    x = _counts_from_philox(key, n, mu, kappa, law == "poisson").astype(np.float64)
    var = mu if law == "poisson" else mu + mu * mu / kappa
    excess_kurtosis = float(_law(law, mu, kappa).stats(moments="k"))
    # sample mean: sd = sqrt(Var/n). Unbiased sample variance: sd = sqrt((μ4 − σ⁴)/n) with
    # μ4 = (γ2 + 3)σ⁴, i.e. σ² sqrt((γ2 + 2)/n), γ2 the excess kurtosis of the law.
    tol_mean = SEVERAL_SD * math.sqrt(var / n)
    tol_var = SEVERAL_SD * var * math.sqrt((excess_kurtosis + 2.0) / n)
    assert abs(x.mean() - mu) < tol_mean
    assert abs(x.var(ddof=1) - var) < tol_var


# ----------------------------------------------------------------------------- exact inversion
PPF_MUS = [0.01, 0.5, 3.0, 10.0, 40.0, 63.9, 64.0, 64.1, 100.0, 500.0, 5000.0, 20000.0, 200000.0]
PPF_LAWS = [("nb2", 2.0), ("nb2", 30.0), ("nb2", 200.0), ("poisson", 0.0)]


@pytest.mark.parametrize(("law", "kappa"), PPF_LAWS)
@pytest.mark.parametrize("mu", PPF_MUS)
def test_inverse_equals_scipy_ppf(mu, law, kappa):
    u = np.random.default_rng(int(mu * 1000) + int(kappa)).random(2_000)
    u = np.concatenate([u, [1e-3, 0.25, 0.5, 0.75, 0.999]])
    got = _inverse_many(u, mu, kappa, law == "poisson", BIG_CAP)
    expected = _law(law, mu, kappa).ppf(u)
    np.testing.assert_array_equal(got, expected.astype(np.int64))


@pytest.mark.parametrize(("law", "kappa"), [("nb2", 2.0), ("nb2", 30.0), ("poisson", 0.0)])
@pytest.mark.parametrize("mu", [0.01, 0.5, 3.0, 40.0, 63.9, 64.0])
def test_sequential_and_guided_methods_agree(mu, law, kappa):
    # Below the switch both methods apply; both are exact, so they must agree everywhere.
    u = np.random.default_rng(11).random(20_000)
    seq = _inverse_many(u, mu, kappa, law == "poisson", BIG_CAP)
    guided = _guided_many(u, mu, kappa, law == "poisson", BIG_CAP)
    np.testing.assert_array_equal(seq, guided)
    assert mu <= SMALL_MU


# High-precision oracle for the far tails, where a double-precision CDF (scipy's included)
# cannot resolve 1 − u: NB2 with integer κ has S(k) = P(N > k) = P(Bin(k+κ, p) ≤ κ−1); Poisson
# tails are summed outward from the pmf at k. All arithmetic at 60 significant digits.
_CTX = decimal.Context(prec=60)
D = decimal.Decimal
PI = D("3.14159265358979323846264338327950288419716939937510582097494459")
# ln Γ(z) Stirling series, 8 Bernoulli terms: error < z^-17 for z > 1000
_STIRLING = [
    Fraction(1, 12),
    Fraction(-1, 360),
    Fraction(1, 1260),
    Fraction(-1, 1680),
    Fraction(1, 1188),
    Fraction(-691, 360360),
    Fraction(1, 156),
    Fraction(-3617, 122400),
]


def _dec(x: float) -> decimal.Decimal:
    """The exact value of a double (its binary fraction, to 60 digits)."""
    f = Fraction(x)
    return D(f.numerator) / D(f.denominator)


def _ln_factorial(n: int) -> decimal.Decimal:
    if n < 1000:
        return D(math.factorial(n)).ln()
    z = D(n + 1)
    s = (z - D("0.5")) * z.ln() - z + (2 * PI).ln() / 2
    zp = z
    for c in _STIRLING:
        s += D(c.numerator) / D(c.denominator) / zp
        zp *= z * z
    return s


def _tails_nb2(k: int, mu: float, kappa: int) -> tuple[decimal.Decimal, decimal.Decimal]:
    """(F(k), S(k)) of NB2(μ, κ) for integer κ."""
    p = D(kappa) / (D(kappa) + _dec(mu))
    q = 1 - p
    n = k + kappa
    sf = sum((D(math.comb(n, i)) * p**i * ((n - i) * q.ln()).exp() for i in range(kappa)), D(0))
    return 1 - sf, sf


def _pmf_poisson(k: int, mu: decimal.Decimal) -> decimal.Decimal:
    return (-mu + k * mu.ln() - _ln_factorial(k)).exp()


def _tails_poisson(k: int, mu: float, upper: bool) -> decimal.Decimal:
    """F(k) (upper=False) or S(k) (upper=True), summing away from k until negligible."""
    m = _dec(mu)
    term = _pmf_poisson(k, m)
    if upper:
        j, term, total = k + 1, term * m / (k + 1), D(0)
        while True:
            total += term
            if j > mu and term < total * D("1e-45"):
                return total
            j += 1
            term = term * m / j
    total, j = D(0), k
    while j >= 0:
        total += term
        if j < mu and term < total * D("1e-45"):
            break
        term = term * j / m
        j -= 1
    return total


TAIL_US = [U_MIN, 1e-12, 1e-6, 1 - 1e-6, 1 - 1e-9, 1 - 1e-12, 1 - 2.0**-52, ONE_BELOW]


@pytest.mark.parametrize("kappa", [2, 30])
@pytest.mark.parametrize("mu", [0.5, 40.0, 63.9, 64.1, 500.0, 20000.0])
def test_inverse_is_exact_in_the_far_tails_nb2(mu, kappa):
    got = _inverse_many(np.array(TAIL_US), mu, float(kappa), False, BIG_CAP)
    with decimal.localcontext(_CTX):
        for u, k in zip(TAIL_US, got, strict=True):
            k = int(k)
            target = _dec(u)
            cdf, _ = _tails_nb2(k, mu, kappa)
            assert cdf >= target, (u, k)
            if k > 0:
                cdf_prev, _ = _tails_nb2(k - 1, mu, kappa)
                assert cdf_prev < target, (u, k)


@pytest.mark.parametrize("mu", [0.5, 40.0, 63.9, 64.1, 500.0, 20000.0])
def test_inverse_is_exact_in_the_far_tails_poisson(mu):
    got = _inverse_many(np.array(TAIL_US), mu, 0.0, True, BIG_CAP)
    with decimal.localcontext(_CTX):
        m = _dec(mu)
        for u, k in zip(TAIL_US, got, strict=True):
            k = int(k)
            if u < 0.5:
                target = _dec(u)
                cdf = _tails_poisson(k, mu, upper=False)
                assert cdf >= target, (u, k)
                assert k == 0 or cdf - _pmf_poisson(k, m) < target, (u, k)
            else:
                t = 1 - _dec(u)
                sf = _tails_poisson(k, mu, upper=True)
                assert sf <= t, (u, k)
                assert k == 0 or sf + _pmf_poisson(k, m) > t, (u, k)


def test_sequential_search_hands_the_extreme_upper_tail_to_the_guided_search():
    # Before SEQ_U_MAX the running sum is used; above, the survival function. Both give the
    # exact inverse on either side of the threshold.
    for mu, kappa, poisson in ((3.0, 30.0, False), (40.0, 2.0, False), (40.0, 0.0, True)):
        law = stats.poisson(mu) if poisson else stats.nbinom(kappa, kappa / (kappa + mu))
        for u in (np.nextafter(SEQ_U_MAX, 0.0), SEQ_U_MAX, np.nextafter(SEQ_U_MAX, 1.0)):
            k = count_inverse(float(u), mu, kappa, poisson, BIG_CAP)
            assert law.sf(k) <= (1.0 - u) * (1 + 1e-9)
            assert law.sf(k - 1) > (1.0 - u) * (1 - 1e-9)


def test_zero_mean_and_cap():
    assert count_inverse(0.999, 0.0, 30.0, False, 100) == 0
    assert count_inverse(ONE_BELOW, 1e-300, 30.0, True, 100) == 0
    # the cap bounds the answer from above and is returned when F(cap - 1) < u
    assert count_inverse(0.5, 20000.0, 30.0, False, 1000) == 1000
    assert count_inverse(0.5, 20.0, 30.0, True, 5) == 5
    assert count_inverse(0.5, 20.0, 30.0, True, 100) == 20


SERIES_CAP = "series=7|IN|Asia/Kolkata|mixed"


def test_count_draw_flags_the_cap():
    key = key_of("S3.count.v1", SERIES_CAP)
    n, capped = _count_draw(key, BUCKET, 200000.0, 30.0, False, 50000)
    assert (n, capped) == (50000, True)
    n, capped = _count_draw(key, BUCKET, 3.0, 30.0, False, 50000)
    assert not capped and 0 <= n < 50


SERIES_CAP = "series=7|IN|Asia/Kolkata|mixed"


def test_inverse_monotone_in_u():
    u = np.sort(np.random.default_rng(3).random(20_000))
    for mu, kappa, poisson in (
        (0.5, 30.0, False),
        (63.9, 2.0, False),
        (64.1, 2.0, False),
        (5000.0, 12.0, False),
        (300.0, 0.0, True),
    ):
        k = _inverse_many(u, mu, kappa, poisson, BIG_CAP)
        assert np.all(np.diff(k) >= 0)


uniform_floats = st.floats(min_value=U_MIN, max_value=ONE_BELOW)
mus = st.floats(min_value=1e-6, max_value=3e5, allow_nan=False)
kappas = st.floats(min_value=2.0, max_value=200.0)


@settings(max_examples=400, deadline=None)
@given(u=uniform_floats, mu_a=mus, mu_b=mus, kappa=kappas, poisson=st.booleans())
def test_inverse_monotone_in_mu(u, mu_a, mu_b, kappa, poisson):
    # Common random numbers: for the same u and κ a higher μ never gives a lower count.
    lo, hi = min(mu_a, mu_b), max(mu_a, mu_b)
    assert count_inverse(u, lo, kappa, poisson, BIG_CAP) <= count_inverse(
        u, hi, kappa, poisson, BIG_CAP
    )


@settings(max_examples=200, deadline=None)
@given(
    u=uniform_floats,
    kappa=kappas,
    poisson=st.booleans(),
    delta=st.floats(min_value=1e-9, max_value=1.0),
)
def test_inverse_monotone_across_the_method_switch(u, kappa, poisson, delta):
    below = count_inverse(u, SMALL_MU - delta, kappa, poisson, BIG_CAP)
    at = count_inverse(u, SMALL_MU, kappa, poisson, BIG_CAP)
    above = count_inverse(u, SMALL_MU + delta, kappa, poisson, BIG_CAP)
    assert below <= at <= above


def test_special_functions_against_scipy():
    from scipy import special

    for a, b, x in [
        (2.0, 3e5, 1e-5),
        (30.0, 100.0, 0.2),
        (200.0, 5.0, 0.99),
        (0.5, 0.5, 0.3),
        (2.0, 275228.0, 2.0 / 200002.0),
        (30.0, 1.0, 0.9),
    ]:
        assert betainc_reg(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-9)
    for a, x in [(1.0, 5.0), (5.0, 1.0), (2e5, 2e5 + 300.0), (100.5, 90.0), (3.0, 0.0)]:
        assert gammainc_upper_reg(a, x) == pytest.approx(special.gammaincc(a, x), rel=1e-9)


# ----------------------------------------------------------------------------- alias method
def _build(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    prob = np.empty(weights.shape[0], np.float64)
    alias = np.empty(weights.shape[0], np.int64)
    alias_build(weights, prob, alias)
    return prob, alias


def test_alias_frequencies_match_weights():
    weights = np.array([1.0, 2.0, 3.0, 0.5, 10.0, 0.01, 7.0, 1.0])
    prob, alias = _build(weights)
    n_draws = 400_000
    picks = _alias_picks(
        prob, alias, key_of("S4.site.v1", "series=3|DE|Europe/Berlin|mixed"), n_draws
    )
    observed = np.bincount(picks, minlength=weights.size)
    expected = n_draws * weights / weights.sum()
    assert stats.chisquare(observed, expected).pvalue > 1e-4


positive_weights = st.lists(
    st.floats(min_value=1e-9, max_value=1e9, allow_nan=False, allow_infinity=False),
    min_size=1,
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(w=positive_weights)
def test_alias_tables_reproduce_the_weights(w):
    weights = np.array(w, dtype=np.float64)
    n = weights.size
    prob, alias = _build(weights)
    assert np.all((prob >= 0.0) & (prob <= 1.0))
    assert np.all((alias >= 0) & (alias < n))
    # column i keeps prob[i]/n for itself and gives (1 − prob[i])/n to alias[i]
    mass = prob.copy()
    np.add.at(mass, alias, 1.0 - prob)
    np.testing.assert_allclose(mass / n, weights / weights.sum(), rtol=0.0, atol=1e-12)
    prob2, alias2 = _build(weights.copy())
    assert prob.tobytes() == prob2.tobytes() and alias.tobytes() == alias2.tobytes()


@settings(max_examples=200, deadline=None)
@given(w=positive_weights, u=uniform_floats, offset=st.integers(0, 5))
def test_alias_pick_stays_inside_its_slice(w, u, offset):
    weights = np.array(w, dtype=np.float64)
    n = weights.size
    prob, alias = _build(weights)
    # tables of several series live in one array: pad before to check the offset handling
    prob_all = np.concatenate([np.full(offset, 0.5), prob])
    alias_all = np.concatenate([np.zeros(offset, np.int64), alias])
    for v in (u, U_MIN, ONE_BELOW):
        i = _alias_pick_one(prob_all, alias_all, offset, n, v)
        assert 0 <= i < n


@settings(max_examples=100, deadline=None)
@given(tables=st.lists(st.one_of(st.just([]), positive_weights), min_size=1, max_size=12))
def test_alias_tables_of_many_ranges_in_one_call(tables):
    """One call over a world's ranges (empty ones included) gives each range the table a
    call of its own gives, bit for bit, and leaves empty ranges as initialised."""
    weights = np.array([x for t in tables for x in t], dtype=np.float64)
    lengths = np.array([len(t) for t in tables], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    prob = np.ones(weights.size, np.float64)
    alias = np.zeros(weights.size, np.int64)
    alias_build_ranges(weights, starts, lengths, prob, alias)
    for lo, n in zip(starts, lengths, strict=True):
        if n:
            p, a = _build(weights[lo : lo + n].copy())
            assert prob[lo : lo + n].tobytes() == p.tobytes()
            assert alias[lo : lo + n].tobytes() == a.tobytes()


# ----------------------------------------------------------------------------- placement
@pytest.mark.parametrize("duration", [1, 7, 1_000_000, 3_600_000_000, 86_400_000_000, 2**53 - 1])
def test_placement_inside_the_bucket_at_the_extremes(duration):
    start = BUCKET * 3_600_000_000
    for u in (U_MIN, 0.5, 1.0 - 2.0**-52, ONE_BELOW):
        ts = _place_one(start, duration, u)
        assert start <= ts < start + duration
    assert _place_one(start, duration, U_MIN) == start
    assert _place_one(start, duration, ONE_BELOW) == start + duration - 1


@settings(max_examples=300, deadline=None)
@given(u=uniform_floats, duration=st.integers(1, 2**45), start=st.integers(-(2**60), 2**60))
def test_placement_always_in_bucket(u, duration, start):
    ts = _place_one(start, duration, u)
    assert start <= ts < start + duration
    assert ts - start == min(math.floor(u * duration), duration - 1)


def test_placement_uniform_within_bucket():
    start, duration, n = BUCKET * 3_600_000_000, 3_600_000_000, 200_000
    ts = _placements(
        key_of("S4.time.v1", "series=5|GB|Europe/London|card_present"), n, start, duration
    )
    assert ts.min() >= start and ts.max() < start + duration
    assert stats.kstest((ts - start) / duration, "uniform").pvalue > 1e-4
