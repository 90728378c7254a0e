"""Samplers over the uniforms of the RNG law (docs/rng.md, docs/model.md).

Every count sampler is an *inversion*: N = min{k : F(k) >= u} for one uniform u. For a fixed
dispersion the NB2 and Poisson CDFs decrease in μ at every k, so the same u never gives a
lower count for a higher μ (common random numbers, SPEC §3).

Methods (docs/rng.md):
- μ <= SMALL_MU (and u <= SEQ_U_MAX): sequential inversion from k = 0 with the pmf recurrence.
- otherwise guided inversion: a Cornish–Fisher start, then a bracketed search on the exact CDF
  from the regularised incomplete beta (NB2: F(k) = I_p(κ, k+1), p = κ/(κ+μ)) or gamma
  (Poisson: F(k) = Q(k+1, μ)) function, with Newton jumps and short pmf-recurrence walks. In
  the upper tail it compares the survival function with 1 − u, so far-tail u stay exact.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

SMALL_MU = 64.0
# Above this u the sequential running sum (rounding ~k·2^-53) might never reach u, and the
# answer lives in the far upper tail: such u take the guided search, which compares 1 − u with
# the survival function instead.
SEQ_U_MAX = 1.0 - 2.0**-30
# Longest pmf-recurrence walk between two evaluations of the CDF by special functions.
WALK_MAX = 64
WALK_SHRINK = 16.0
_MAX_SEARCH = 200
_TINY = 1e-300
_HALF_LOG_2PI = 0.9189385332046727  # ½ ln 2π
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
def _stirling_err(z: float) -> float:
    """δ(z) = lgamma(z) − ((z − ½) ln z − z + ½ ln 2π), the Stirling remainder (z > 0)."""
    if z < 15.0:
        return math.lgamma(z) - ((z - 0.5) * math.log(z) - z + _HALF_LOG_2PI)
    w = 1.0 / (z * z)
    # 1/(12z) − 1/(360z³) + 1/(1260z⁵) − 1/(1680z⁷); the next term is < 2e-14 for z >= 15
    return (1.0 / 12.0 - w * (1.0 / 360.0 - w * (1.0 / 1260.0 - w / 1680.0))) / z


@nb.njit(cache=True, nogil=True)
def _log1pmx(z: float) -> float:
    """ln(1 + z) − z without cancellation for small z (z > −1)."""
    if abs(z) >= 0.25:
        return math.log1p(z) - z
    # −z²/2 + z³/3 − z⁴/4 + …
    s = 0.0
    zk = z * z
    n = 2.0
    sign = -1.0
    while True:
        term = sign * zk / n
        s += term
        if abs(term) <= 1e-17 * abs(s):
            break
        zk *= z
        n += 1.0
        sign = -sign
    return s


@nb.njit(cache=True, nogil=True)
def _beta_log_prefix(a: float, b: float, z1: float, z2: float) -> float:
    """ln(x^a y^b / B(a, b)) given z1 = x/x0 − 1 and z2 = y/y0 − 1, x0 = a/(a+b), y = 1 − x.

    Written with Stirling's formula so that the large terms a ln x, b ln y and the log-gammas
    cancel analytically: a·z1 + b·z2 = 0, which leaves
    a·(ln(1+z1) − z1) + b·(ln(1+z2) − z2) + ½ ln(ab / (2π(a+b))) + δ(a+b) − δ(a) − δ(b).
    The plain lgamma form loses ~|b ln y|·2^-53 (1e-9 relative at b ~ 10^5).
    """
    return (
        a * _log1pmx(z1) + b * _log1pmx(z2)
        + 0.5 * math.log(a * b / (a + b)) - _HALF_LOG_2PI
        + _stirling_err(a + b) - _stirling_err(a) - _stirling_err(b)
    )


@nb.njit(cache=True, nogil=True)
def _gamma_log_prefix(a: float, x: float) -> float:
    """ln(x^a e^-x / Γ(a)) = a·(ln(1+z) − z) + ½ ln(a/2π) − δ(a), z = (x − a)/a."""
    return a * _log1pmx((x - a) / a) + 0.5 * math.log(a) - _HALF_LOG_2PI - _stirling_err(a)


@nb.njit(cache=True, nogil=True)
def _beta_pair(a: float, b: float, x: float, y: float, lbt: float) -> tuple[float, float]:
    """(I_x(a, b), 1 − I_x(a, b)), y = 1 − x, lbt = ln(x^a y^b / B(a, b)).

    The continued fraction is evaluated on the side where it converges, which is also the side
    of the smaller of the two values: that one keeps full relative precision, the other is one
    minus it. Inverting in the upper tail needs the small survival value, not 1 − F.
    """
    if x <= 0.0:
        return 0.0, 1.0
    if y <= 0.0:
        return 1.0, 0.0
    if x < (a + 1.0) / (a + b + 2.0):
        i = math.exp(lbt) * _betacf(a, b, x) / a
        return i, 1.0 - i
    j = math.exp(lbt) * _betacf(b, a, y) / b
    return 1.0 - j, j


@nb.njit(cache=True, nogil=True)
def _gamma_pair(a: float, x: float, lpre: float) -> tuple[float, float]:
    """(P(a, x), Q(a, x)), lpre = ln(x^a e^-x / Γ(a)).

    The series (x < a + 1) gives P directly, the continued fraction (x >= a + 1) gives Q
    directly; the directly computed one is the smaller and keeps full relative precision.
    """
    if x <= 0.0:
        return 0.0, 1.0
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
        pp = s * math.exp(lpre)
        return pp, 1.0 - pp
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
    qq = math.exp(lpre) * h
    return 1.0 - qq, qq


@nb.njit(cache=True, nogil=True)
def betainc_reg(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    y = 1.0 - x
    lbt = _beta_log_prefix(a, b, (x * (a + b) - a) / a, (y * (a + b) - b) / b)
    return _beta_pair(a, b, x, y, lbt)[0]


@nb.njit(cache=True, nogil=True)
def gammainc_upper_reg(a: float, x: float) -> float:
    """Regularised upper incomplete gamma Q(a, x) = Γ(a, x) / Γ(a)."""
    if x <= 0.0:
        return 1.0
    return _gamma_pair(a, x, _gamma_log_prefix(a, x))[1]


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
@nb.njit(cache=True, nogil=True, inline="always")
def _pmf_ratio(k: int, mu: float, kappa: float, q: float, poisson: bool) -> float:
    """p(k+1) / p(k)."""
    if poisson:
        return mu / (k + 1.0)
    return (k + kappa) / (k + 1.0) * q


@nb.njit(cache=True, nogil=True)
def _cdf_sf_pmf(k: int, mu: float, kappa: float, poisson: bool) -> tuple[float, float, float]:
    """(F(k), S(k) = P(N > k), p(k)) from the special functions, not from a running sum.

    Poisson: F(k) = Q(k+1, μ), S(k) = P(k+1, μ), p(k) = μ^(k+1) e^-μ / k! / μ.
    NB2: F(k) = I_p(κ, k+1) with p = κ/(κ+μ), q = μ/(κ+μ), and p(k) = p^κ q^(k+1)
    / B(κ, k+1) / (q (κ+k)); x/x0 − 1 and y/y0 − 1 of the prefix are formed exactly from μ.
    """
    b = k + 1.0
    if poisson:
        lpre = _gamma_log_prefix(b, mu)
        sf, cdf = _gamma_pair(b, mu, lpre)
        return cdf, sf, math.exp(lpre) / mu
    s = kappa + mu
    z1 = (b - mu) / s
    z2 = kappa * (mu - b) / (s * b)
    lbt = _beta_log_prefix(kappa, b, z1, z2)
    q = mu / s
    cdf, sf = _beta_pair(kappa, b, kappa / s, q, lbt)
    return cdf, sf, math.exp(lbt) / (q * (kappa + k))


@nb.njit(cache=True, nogil=True)
def _start_guess(u: float, mu: float, kappa: float, poisson: bool) -> float:
    """Cornish–Fisher start μ + √Var (z + γ (z² − 1)/6), γ the skewness."""
    if poisson:
        var = mu
        skew = 1.0 / math.sqrt(mu)
    else:
        var = mu + mu * mu / kappa
        skew = (mu + 2.0 * mu * mu / kappa) / (var * math.sqrt(var))
    z = _norm_ppf_approx(u)
    return mu + math.sqrt(var) * (z + skew * (z * z - 1.0) / 6.0)


@nb.njit(cache=True, nogil=True)
def _guided_inverse(u: float, mu: float, kappa: float, poisson: bool, cap: int) -> int:
    """min(min{k : F(k) >= u}, cap) by a bracketed search on the exact CDF.

    For u <= 1/2 the test is F(k) >= u; for u > 1/2 it is S(k) <= 1 − u, where 1 − u is exact
    in floating point, so both tails are resolved with relative, not absolute, precision. The
    bracket (lo, hi] holds the answer; each step evaluates F(k) and S(k) by the special
    functions, then either walks with the pmf recurrence (when the answer is within
    WALK_MAX steps: a short walk keeps the running sum's rounding small) or jumps by a Newton
    step on log F (log S in the upper tail), falling back to bisection when the jump would
    leave the bracket.
    """
    upper = u > 0.5
    t = 1.0 - u
    q = mu / (kappa + mu)
    lo = -1  # F(lo) < u
    hi = cap  # F(hi) >= u, or hi is the cap
    kf = _start_guess(u, mu, kappa, poisson)
    if kf != kf or kf < 0.0:
        kf = 0.0
    k = cap if kf >= cap else int(kf + 0.5)
    for _ in range(_MAX_SEARCH):
        if hi - lo <= 1:
            return hi
        cdf, sf, p = _cdf_sf_pmf(k, mu, kappa, poisson)
        gap = sf - t if upper else u - cdf  # > 0: F(k) < u, the answer is above k
        if gap > 0.0:
            lo = k
        else:
            hi = k
        if hi - lo <= 1:
            return hi
        # A walk that makes the running value shrink (F downwards, S upwards) loses relative
        # precision to cancellation, so it may only start within a factor WALK_SHRINK of its
        # target; otherwise the next exact evaluation comes from a Newton jump.
        shrinking = (gap > 0.0) if upper else (gap <= 0.0)
        near = sf <= WALK_SHRINK * t if upper else cdf <= WALK_SHRINK * u
        if p > 0.0 and abs(gap) <= WALK_MAX * p and (near or not shrinking):
            if gap > 0.0:
                # walk up from k (F(k) < u) to the first k with F(k) >= u
                for _ in range(2 * WALK_MAX):
                    p *= _pmf_ratio(k, mu, kappa, q, poisson)
                    k += 1
                    if k >= hi:
                        return hi
                    if upper:
                        sf -= p
                        if sf <= t:
                            return k
                    else:
                        cdf += p
                        if cdf >= u:
                            return k
                lo = k
                k += 1
            else:
                # walk down from k (F(k) >= u) while F(k − 1) = F(k) − p(k) still reaches u
                for _ in range(2 * WALK_MAX):
                    if k - 1 <= lo:
                        return k
                    if upper:
                        sf += p
                        if sf > t:
                            return k
                    else:
                        cdf -= p
                        if cdf < u:
                            return k
                    k -= 1
                    p /= _pmf_ratio(k, mu, kappa, q, poisson)
                hi = k
                k -= 1
            continue
        # Newton step on log F (or log S) with the pmf as the slope of F: in the tails log F
        # is nearly linear in k, so this converges where a step on F itself would crawl.
        # The step stays strictly inside the bracket, else bisection.
        v = sf if upper else cdf
        target = t if upper else u
        step = math.inf
        if p > 0.0 and v > 0.0:
            step = v * abs(math.log(v / target)) / p
        if step < (hi - lo):
            jump = max(1, int(step + 0.5))
            k = k + jump if gap > 0.0 else k - jump
            if lo < k < hi:
                continue
        k = lo + (hi - lo) // 2
    return hi


@nb.njit(cache=True, nogil=True)
def count_inverse(u: float, mu: float, kappa: float, poisson: bool, cap: int) -> int:
    """N = min(F^-1(u), cap) for NB2(mean μ, size κ) or Poisson(μ), u in (0, 1).

    μ <= SMALL_MU and u <= SEQ_U_MAX: sequential search from k = 0, the pmf ratio p(k+1)/p(k)
    being (k+κ)/(k+1)·μ/(κ+μ) for NB2 and μ/(k+1) for Poisson. Otherwise the guided search
    on the exact CDF (``_guided_inverse``).
    """
    if mu <= 0.0:
        return 0
    if mu > SMALL_MU or u > SEQ_U_MAX:
        return _guided_inverse(u, mu, kappa, poisson, cap)
    q = mu / (kappa + mu)
    if poisson:
        p = math.exp(-mu)
    else:
        p = math.exp(kappa * math.log(kappa / (kappa + mu)))
    f = p
    k = 0
    while f < u and k < cap:
        p *= _pmf_ratio(k, mu, kappa, q, poisson)
        k += 1
        f += p
        if p < _TINY and k > mu:
            break  # cannot happen for u <= SEQ_U_MAX; a guard against an endless loop
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


@nb.njit(cache=True, nogil=True)
def alias_build_ranges(weights: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                       prob: np.ndarray, alias: np.ndarray) -> None:
    """:func:`alias_build` over each range ``[starts[r], starts[r] + lengths[r])`` of
    ``weights``, in one call (a world has a range per series and per merchant: thousands of
    small tables). ``alias`` holds indices relative to the range's start; an empty range
    writes nothing."""
    for r in range(starts.shape[0]):
        lo = starts[r]
        n = lengths[r]
        if n > 0:
            alias_build(weights[lo : lo + n], prob[lo : lo + n], alias[lo : lo + n])


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
