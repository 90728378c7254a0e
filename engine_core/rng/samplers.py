"""Samplers over the uniforms of the RNG law (docs/rng.md, docs/model.md).

Every count sampler is an *inversion*: N = min{k : F(k) >= u} for one uniform u. For a fixed
dispersion the NB2 and Poisson CDFs decrease in μ at every k, so the same u never gives a
lower count for a higher μ (common random numbers, SPEC §3).

Methods by μ range (one per range, documented in docs/model.md):
- μ <= SMALL_MU: sequential inversion from k = 0 with the pmf recurrence.
- μ >  SMALL_MU: guided inversion. A Cornish–Fisher start k0, F(k0) from the regularised
  incomplete beta (NB2: F(k) = I_p(κ, k+1), p = κ/(κ+μ)) or gamma (Poisson: F(k) = Q(k+1, μ))
  function, then a walk with the pmf recurrence to the exact inverse.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

SMALL_MU = 64.0
_TINY = 1e-300
_EPS = 1e-16
_MAX_CF_ITER = 100_000


@nb.njit(cache=True, nogil=True)
def box_muller(u1: float, u2: float) -> float:
    """One standard normal from two uniforms in (0, 1): sqrt(-2 ln u1) cos(2π u2)."""
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@nb.njit(cache=True, nogil=True)
def place_us(start_us: int, duration_us: int, u: float) -> int:
    """start + floor(u · D), kept inside [start, start + D) even when u · D rounds up to D."""
    off = np.int64(math.floor(u * duration_us))
    if off >= duration_us:
        off = duration_us - 1
    return start_us + off


# ----------------------------------------------------------------------------- special functions
@nb.njit(cache=True, nogil=True)
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab = a + b
    qap = a + 1.0
    qam = a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    if abs(d) < _TINY:
        d = _TINY
    d = 1.0 / d
    h = d
    for m in range(1, _MAX_CF_ITER):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        if abs(d) < _TINY:
            d = _TINY
        c = 1.0 + aa / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return h


@nb.njit(cache=True, nogil=True)
def betainc_reg(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
        + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


@nb.njit(cache=True, nogil=True)
def gammainc_upper_reg(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a)."""
    if x <= 0.0:
        return 1.0
    lpre = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1.0:
        # series for P(a, x)
        ap = a
        s = 1.0 / a
        term = s
        for _ in range(_MAX_CF_ITER):
            ap += 1.0
            term *= x / ap
            s += term
            if abs(term) < abs(s) * _EPS:
                break
        return 1.0 - s * math.exp(lpre)
    # continued fraction for Q(a, x) (modified Lentz)
    b = x + 1.0 - a
    c = 1.0 / _TINY
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_CF_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        if abs(d) < _TINY:
            d = _TINY
        c = b + an / c
        if abs(c) < _TINY:
            c = _TINY
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            break
    return math.exp(lpre) * h


@nb.njit(cache=True, nogil=True)
def _norm_ppf_approx(u: float) -> float:
    """A start point only (absolute error ~5e-4): rational approximation of Φ^-1(u)."""
    p = u if u < 0.5 else 1.0 - u
    t = math.sqrt(-2.0 * math.log(p))
    z = t - (2.515517 + 0.802853 * t + 0.010328 * t * t) / (
        1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t
    )
    return -z if u < 0.5 else z


# ----------------------------------------------------------------------------- count laws
@nb.njit(cache=True, nogil=True)
def _nb2_log_pmf(k: float, mu: float, kappa: float) -> float:
    return (
        math.lgamma(k + kappa) - math.lgamma(kappa) - math.lgamma(k + 1.0)
        + kappa * math.log(kappa / (kappa + mu)) + k * math.log(mu / (kappa + mu))
    )


@nb.njit(cache=True, nogil=True)
def _poisson_log_pmf(k: float, mu: float) -> float:
    return -mu + k * math.log(mu) - math.lgamma(k + 1.0)


@nb.njit(cache=True, nogil=True)
def count_inverse(u: float, mu: float, kappa: float, poisson: bool, cap: int) -> int:
    """N = F^-1(u) for NB2(mean μ, size κ) or Poisson(μ); stops at ``cap``.

    The pmf ratio p(k+1)/p(k) is (k+κ)/(k+1)·μ/(κ+μ) for NB2 and μ/(k+1) for Poisson.
    """
    if mu <= 0.0:
        return 0
    q = mu / (kappa + mu)
    if mu <= SMALL_MU:
        if poisson:
            p = math.exp(-mu)
        else:
            p = math.exp(kappa * math.log(kappa / (kappa + mu)))
        f = p
        k = 0
        while f < u and k < cap:
            if poisson:
                p *= mu / (k + 1.0)
            else:
                p *= (k + kappa) / (k + 1.0) * q
            k += 1
            f += p
            if p < _TINY and k > mu:
                break  # rounding left F a hair below u in the far tail
        return k
    # guided inversion
    if poisson:
        var = mu
        skew = 1.0 / math.sqrt(mu)
    else:
        var = mu + mu * mu / kappa
        skew = (mu + 2.0 * mu * mu / kappa) / (var * math.sqrt(var))
    z = _norm_ppf_approx(u)
    k0f = mu + math.sqrt(var) * (z + skew * (z * z - 1.0) / 6.0)
    k = int(math.floor(k0f + 0.5))
    if k < 0:
        k = 0
    if k > cap:
        k = cap
    if poisson:
        f = gammainc_upper_reg(k + 1.0, mu)
        p = math.exp(_poisson_log_pmf(float(k), mu))
    else:
        f = betainc_reg(kappa, k + 1.0, kappa / (kappa + mu))
        p = math.exp(_nb2_log_pmf(float(k), mu, kappa))
    if f < u:
        while f < u and k < cap:
            if poisson:
                p *= mu / (k + 1.0)
            else:
                p *= (k + kappa) / (k + 1.0) * q
            k += 1
            f += p
            if p < _TINY and k > mu:
                break
        return k
    # f >= u: step down while F(k-1) = F(k) - p(k) still reaches u
    while k > 0:
        f_prev = f - p
        if f_prev < u:
            break
        if poisson:
            p *= k / mu
        else:
            p *= k / ((k - 1.0 + kappa) * q)
        k -= 1
        f = f_prev
    return k


# ----------------------------------------------------------------------------- alias tables
@nb.njit(cache=True, nogil=True)
def alias_build(weights: np.ndarray, prob: np.ndarray, alias: np.ndarray) -> None:
    """Vose's alias method into ``prob``/``alias`` (same length as weights).

    Deterministic for a given weight order: small and large work lists are processed as
    stacks in index order, with no randomness and no sorting.
    """
    n = weights.shape[0]
    total = 0.0
    for i in range(n):
        total += weights[i]
    scaled = np.empty(n, dtype=np.float64)
    small = np.empty(n, dtype=np.int64)
    large = np.empty(n, dtype=np.int64)
    ns = 0
    nl = 0
    for i in range(n):
        scaled[i] = weights[i] * n / total
    for i in range(n - 1, -1, -1):
        if scaled[i] < 1.0:
            small[ns] = i
            ns += 1
        else:
            large[nl] = i
            nl += 1
    while ns > 0 and nl > 0:
        ns -= 1
        s = small[ns]
        g = large[nl - 1]
        prob[s] = scaled[s]
        alias[s] = g
        scaled[g] = (scaled[g] + scaled[s]) - 1.0
        if scaled[g] < 1.0:
            nl -= 1
            small[ns] = g
            ns += 1
    while nl > 0:
        nl -= 1
        prob[large[nl]] = 1.0
        alias[large[nl]] = large[nl]
    while ns > 0:
        ns -= 1
        prob[small[ns]] = 1.0
        alias[small[ns]] = small[ns]


@nb.njit(cache=True, nogil=True, inline="always")
def alias_pick(prob: np.ndarray, alias: np.ndarray, start: int, n: int, u: float) -> int:
    """Index (relative to ``start``) chosen by one uniform: column ⌊u·n⌋, then its coin."""
    x = u * n
    i = int(x)
    if i >= n:
        i = n - 1
    frac = x - i
    if frac < prob[start + i]:
        return i
    return alias[start + i]
