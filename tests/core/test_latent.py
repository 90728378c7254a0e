"""S2 latent AR(1) field: partition-free by construction, the stated law, and its statistics.

    φ = exp(−1/L),  Z_t = φ Z_{t−1} + σ √(1−φ²) ε_t,  factor_t = clip(exp(Z_t − σ²/2), lo, hi)

ε_t is the Box–Muller normal of block (0, t) under the group's S2.latent.v1 key (docs/rng.md).
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numba
import numpy as np
import pytest

from engine_core.kernels.latent import BURN_LENGTHS, burn_blocks, latent_field
from engine_core.rng.streams import group_stream, stream_keys

_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("reference_philox", _HERE / "reference_philox.py")
reference_philox = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference_philox)

BLOCK = 168  # policy default: one week of hourly buckets
YEAR_2026 = 490896  # first hourly bucket of 2026 (a block boundary: 490896 = 2922 · 168)
HOURS_2026 = 8760
CLIP = (0.2, 5.0)
WIDE_CLIP = (1e-9, 1e9)
SEVERAL_SD = 5.0


def group_keys(n: int, tag: str = "") -> np.ndarray:
    names = [
        group_stream(f"retail_daytime|card_present|physical|z{i:02d}|h00{tag}") for i in range(n)
    ]
    return stream_keys("S2.latent.v1", "default", 42, names)


def field(keys, sigma, length, first, n, clip=CLIP, block=BLOCK):
    g = keys.shape[0]
    z = np.empty((g, n), np.float64)
    f = np.empty((g, n), np.float64)
    latent_field(
        keys,
        np.asarray(sigma, np.float64),
        np.asarray(length, np.float64),
        first,
        n,
        block,
        clip[0],
        clip[1],
        z,
        f,
    )
    return z, f


# Groups with short, default, long (one block) and very long memory.
SIGMA = np.array([0.25, 0.40, 0.30, 1.2])
LENGTH = np.array([2.0, 24.0, 168.0, 500.0])
KEYS = group_keys(4)


# ----------------------------------------------------------------------------- partition-free
@pytest.fixture(scope="module")
def reference_span():
    """Two years around 2026 in one call: every range below must match it bit for bit."""
    first = YEAR_2026 - 2000
    z, f = field(KEYS, SIGMA, LENGTH, first, HOURS_2026 + 4000)
    return first, z, f


RANGES = [
    (YEAR_2026, HOURS_2026),  # the yearly partition
    (YEAR_2026 + 31 * 24, 28 * 24),  # a monthly partition (February)
    (YEAR_2026 + 100, 50),  # inside one block
    (YEAR_2026 + 150, 40),  # across one block boundary, starting mid-block
    (YEAR_2026 + 5, 1000),  # mid-block start, several boundaries
    (YEAR_2026 + 167, 2),  # the last bucket of a block and the first of the next
    (YEAR_2026 + 4321, 1),  # a single bucket
    (YEAR_2026 - 1000, 2000),  # across New Year
    (YEAR_2026 + HOURS_2026 - 24, 24),  # the last day of the year
]


@pytest.mark.parametrize(("first", "n"), RANGES)
def test_any_range_equals_the_long_run(reference_span, first, n):
    ref_first, z_ref, f_ref = reference_span
    z, f = field(KEYS, SIGMA, LENGTH, first, n)
    j = first - ref_first
    assert z.tobytes() == np.ascontiguousarray(z_ref[:, j : j + n]).tobytes()
    assert f.tobytes() == np.ascontiguousarray(f_ref[:, j : j + n]).tobytes()


def test_chunked_year_equals_one_call(reference_span):
    # Irregular chunks, none aligned to blocks, concatenated.
    ref_first, z_ref, _ = reference_span
    cuts = [
        YEAR_2026,
        YEAR_2026 + 1,
        YEAR_2026 + 333,
        YEAR_2026 + 2000,
        YEAR_2026 + 2001,
        YEAR_2026 + 7777,
        YEAR_2026 + HOURS_2026,
    ]
    parts = [field(KEYS, SIGMA, LENGTH, a, b - a)[0] for a, b in zip(cuts, cuts[1:], strict=False)]
    j = YEAR_2026 - ref_first
    assert (
        np.concatenate(parts, axis=1).tobytes()
        == np.ascontiguousarray(z_ref[:, j : j + HOURS_2026]).tobytes()
    )


def test_groups_are_independent_of_each_other():
    # A group's field does not depend on which other groups are computed with it.
    z_all, _ = field(KEYS, SIGMA, LENGTH, YEAR_2026, 500)
    for g in range(KEYS.size):
        z_one, _ = field(KEYS[g : g + 1], SIGMA[g : g + 1], LENGTH[g : g + 1], YEAR_2026, 500)
        assert z_one.tobytes() == z_all[g : g + 1].tobytes()


def test_thread_count_does_not_change_the_field():
    keys = group_keys(32, "|threads")
    sigma = np.linspace(0.05, 1.2, 32)
    length = np.linspace(2.0, 168.0, 32)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        z1, f1 = field(keys, sigma, length, YEAR_2026, 2000)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        zn, fn = field(keys, sigma, length, YEAR_2026, 2000)
    finally:
        numba.set_num_threads(before)
    assert z1.tobytes() == zn.tobytes() and f1.tobytes() == fn.tobytes()


# ----------------------------------------------------------------------------- the law itself
def _normal_ref(key: int, t: int) -> float:
    o0, o1 = reference_philox.philox2x64_10_ref(0, t, key)
    u1 = reference_philox.uniform_ref(o0)
    u2 = reference_philox.uniform_ref(o1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def _field_ref(key: int, sigma: float, length: float, first: int, n: int) -> list[float]:
    """The documented construction written out plainly (chain per epoch-aligned block)."""
    phi = math.exp(-1.0 / length)
    innov = sigma * math.sqrt(1.0 - phi * phi)
    nburn = math.ceil(BURN_LENGTHS * length / BLOCK)
    out = []
    for t in range(first, first + n):
        b = t // BLOCK
        start = max((b - nburn) * BLOCK, 0)
        z = sigma * _normal_ref(key, start)
        for s in range(start + 1, t + 1):
            z = phi * z + innov * _normal_ref(key, s)
        out.append(z)
    return out


def test_field_follows_the_documented_construction():
    # Python-integer Philox and a plain loop, against the kernel, across a block boundary.
    g = 1  # L = 24: n_burn = 2 blocks
    first, n = YEAR_2026 + 160, 12
    z, f = field(KEYS[g : g + 1], SIGMA[g : g + 1], LENGTH[g : g + 1], first, n)
    ref = _field_ref(int(KEYS[g]), SIGMA[g], LENGTH[g], first, n)
    # same formula, same order of operations; libm may differ in the last bit of log/cos
    np.testing.assert_allclose(z[0], ref, rtol=0.0, atol=1e-12)
    s = SIGMA[g]
    np.testing.assert_allclose(f[0], np.clip(np.exp(z[0] - 0.5 * s * s), *CLIP), rtol=1e-15)


def test_burn_in_covers_eight_length_scales():
    for length in (2.0, 24.0, 168.0, 500.0):
        nb_ = burn_blocks(length, BLOCK)
        assert nb_ * BLOCK >= BURN_LENGTHS * length
        assert (nb_ - 1) * BLOCK < BURN_LENGTHS * length


def test_factor_is_clipped_to_the_policy_bounds():
    keys = group_keys(2, "|clip")
    z, f = field(keys, [1.2, 1.2], [2.0, 2.0], YEAR_2026, 20_000)
    assert f.min() == CLIP[0] and f.max() == CLIP[1]  # σ = 1.2 reaches both bounds
    inside = (f > CLIP[0]) & (f < CLIP[1])
    # numpy's exp may differ from libm's in the last bit
    np.testing.assert_allclose(f[inside], np.exp(z - 0.5 * 1.2 * 1.2)[inside], rtol=1e-15)


# ----------------------------------------------------------------------------- statistics
@pytest.mark.parametrize(("sigma", "length"), [(0.25, 24.0), (1.0, 6.0)])
def test_ar1_statistics(sigma, length):
    n_groups, n = 8, 200_000
    keys = group_keys(n_groups, f"|stats|{sigma}|{length}")
    z, f = field(keys, [sigma] * n_groups, [length] * n_groups, YEAR_2026, n, clip=WIDE_CLIP)
    phi = math.exp(-1.0 / length)
    total = n_groups * n

    # Lag-1 autocorrelation: for an AR(1) the estimate has variance ≈ (1 − φ²)/n (Bartlett),
    # here pooled over independent groups.
    zc = z - z.mean(axis=1, keepdims=True)
    r1 = np.sum(zc[:, 1:] * zc[:, :-1]) / np.sum(zc * zc)
    assert abs(r1 - phi) < SEVERAL_SD * math.sqrt((1.0 - phi * phi) / total)

    # Var(Z) = σ²: for an AR(1) the sample variance has variance ≈ 2σ⁴/n · (1+φ²)/(1−φ²).
    var_sd = sigma**2 * math.sqrt(2.0 / total * (1 + phi * phi) / (1 - phi * phi))
    assert abs(z.var() - sigma**2) < SEVERAL_SD * var_sd

    # E[exp(Z − σ²/2)] = 1 before clipping. The factor has variance e^{σ²} − 1 and lag-1
    # autocorrelation ρ = (e^{σ²φ} − 1)/(e^{σ²} − 1); its mean has variance
    # ≈ Var/n · (1+ρ)/(1−ρ) (AR(1)-like decay).
    var_f = math.exp(sigma**2) - 1.0
    rho = (math.exp(sigma**2 * phi) - 1.0) / var_f
    mean_sd = math.sqrt(var_f / total * (1 + rho) / (1 - rho))
    assert f.min() > WIDE_CLIP[0] and f.max() < WIDE_CLIP[1]
    assert abs(f.mean() - 1.0) < SEVERAL_SD * mean_sd
    # and without the −σ²/2 correction the mean would be e^{σ²/2}, far outside that band
    assert abs(math.exp(sigma**2 / 2) - 1.0) > 3 * SEVERAL_SD * mean_sd


def test_field_is_continuous_at_block_boundaries():
    # Two chains meet at every block boundary; their difference is at most φ^(n_burn·K)·σ.
    # Check the step across boundaries looks like any other step (same distribution).
    keys = group_keys(1, "|cont")
    sigma, length = 0.4, 24.0
    z, _ = field(keys, [sigma], [length], YEAR_2026, 168 * 400, clip=WIDE_CLIP)
    steps = np.diff(z[0])
    at_boundary = steps[BLOCK - 1 :: BLOCK]  # z[kK] − z[kK − 1]
    phi = math.exp(-1.0 / length)
    step_sd = sigma * math.sqrt(2.0 * (1.0 - phi))  # sd of Z_t − Z_{t−1}
    # the boundary steps' variance matches within the chi-square error (n ≈ 400: 5·sqrt(2/n))
    ratio = np.mean(at_boundary**2) / step_sd**2
    assert abs(ratio - 1.0) < SEVERAL_SD * math.sqrt(2.0 / at_boundary.size)
