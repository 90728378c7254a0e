"""Philox2x64-10 and the uniform map against known answers and a Python-integer reference.

Vectors: the three of SPEC §3.1 (also in docs/rng.md) and tests/data/philox_kat.csv, whose
other rows were produced by tests/core/reference_philox.py.
"""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import numba as nb
import numpy as np
import pytest

from engine_core.rng import philox2x64_10, uniforms
from engine_core.rng.philox import mulhilo64, philox_block, to_uniform

_HERE = Path(__file__).resolve().parent
DATA = _HERE.parent / "data"
DOCS = _HERE.parents[1] / "docs"

_spec = importlib.util.spec_from_file_location("reference_philox", _HERE / "reference_philox.py")
reference_philox = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference_philox)
philox_ref = reference_philox.philox2x64_10_ref
uniform_ref = reference_philox.uniform_ref

U64_MAX = (1 << 64) - 1
ONE_BELOW = 1.0 - 2.0**-53  # the largest double below 1.0

# (ctr_lo, ctr_hi, key) -> (out0, out1), SPEC §3.1; ctr_lo is Random123's ctr.v[0].
SPEC_VECTORS = [
    ((0, 0, 0), (0xCA00A0459843D731, 0x66C24222C9A845B5)),
    ((U64_MAX, U64_MAX, U64_MAX), (0x65B021D60CD8310F, 0x4D02F3222F86DF20)),
    (
        (0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0),
        (0x0A5E742C2997341C, 0xB0F883D38000DE5D),
    ),
]


def read_kat() -> list[tuple[int, int, int, int, int]]:
    with open(DATA / "philox_kat.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    cols = ("ctr_lo", "ctr_hi", "key", "out0", "out1")
    return [tuple(int(r[c], 16) for c in cols) for r in rows]


@nb.njit
def _block_scalar(lo, hi, key):
    return philox_block(lo, hi, key)


@nb.njit
def _uniform_scalar(x):
    return to_uniform(x)


@nb.njit
def _mulhilo_compiled(a, b):
    return mulhilo64(a, b)


# ----------------------------------------------------------------------------- known answers
@pytest.mark.parametrize(("inputs", "expected"), SPEC_VECTORS)
def test_spec_known_answers_public_api(inputs, expected):
    lo, hi, key = (np.array([v], dtype=np.uint64) for v in inputs)
    out0, out1 = philox2x64_10(lo, hi, key)
    assert (int(out0[0]), int(out1[0])) == expected


@pytest.mark.parametrize(("inputs", "expected"), SPEC_VECTORS)
def test_spec_known_answers_njit_block(inputs, expected):
    lo, hi, key = (np.uint64(v) for v in inputs)
    out0, out1 = _block_scalar(lo, hi, key)
    assert (int(out0), int(out1)) == expected


@pytest.mark.parametrize(("inputs", "expected"), SPEC_VECTORS)
def test_spec_known_answers_reference(inputs, expected):
    assert philox_ref(*inputs) == expected


def test_kat_file_holds_the_spec_vectors_first():
    rows = read_kat()
    assert len(rows) >= 23
    assert [(r[:3], r[3:]) for r in rows[:3]] == SPEC_VECTORS


def test_kat_file_against_njit_and_reference():
    rows = np.array(read_kat(), dtype=np.uint64)
    out0, out1 = philox2x64_10(rows[:, 0], rows[:, 1], rows[:, 2])
    np.testing.assert_array_equal(out0, rows[:, 3])
    np.testing.assert_array_equal(out1, rows[:, 4])
    for lo, hi, key, o0, o1 in read_kat():
        assert philox_ref(lo, hi, key) == (o0, o1)


def test_docs_state_the_spec_vectors():
    text = (DOCS / "rng.md").read_text().lower()
    for inputs, outputs in SPEC_VECTORS:
        for v in (*inputs, *outputs):
            assert f"{v:016x}" in text


def test_njit_agrees_with_reference_on_random_inputs():
    rng = np.random.default_rng(20260101)
    n = 10_000
    lo, hi, key = (rng.integers(0, 2**64, size=n, dtype=np.uint64) for _ in range(3))
    # Small counters and keys are what the engine actually uses (j, bucket number).
    lo[:1000] = rng.integers(0, 50_000, size=1000, dtype=np.uint64)
    hi[:1000] = rng.integers(0, 600_000, size=1000, dtype=np.uint64)
    out0, out1 = philox2x64_10(lo, hi, key)
    for i in range(n):
        assert philox_ref(int(lo[i]), int(hi[i]), int(key[i])) == (int(out0[i]), int(out1[i])), i


def test_public_api_broadcasts_and_keeps_shape():
    key = np.uint64(0x0123456789ABCDEF)
    lo = np.arange(6, dtype=np.uint64).reshape(2, 3)
    out0, out1 = philox2x64_10(lo, np.uint64(490896), key)
    assert out0.shape == out1.shape == (2, 3)
    assert out0.dtype == out1.dtype == np.uint64
    for idx in np.ndindex(2, 3):
        assert (int(out0[idx]), int(out1[idx])) == philox_ref(int(lo[idx]), 490896, int(key))


def test_mulhilo64_compiled_and_python_are_the_exact_product():
    rng = np.random.default_rng(64)
    pairs = [(0, 0), (U64_MAX, U64_MAX), (0xD2B74407B1CE6E93, U64_MAX), (1, U64_MAX)]
    pairs += [
        tuple(int(v) for v in rng.integers(0, 2**64, 2, dtype=np.uint64)) for _ in range(2000)
    ]
    for a, b in pairs:
        p = a * b
        expected = (p >> 64, p & U64_MAX)
        hi, lo = _mulhilo_compiled(np.uint64(a), np.uint64(b))
        assert (int(hi), int(lo)) == expected
        hi, lo = mulhilo64(np.uint64(a), np.uint64(b))
        assert (int(hi), int(lo)) == expected


def test_counter_words_are_not_interchangeable():
    # (lo, hi) = (j, bucket) must not collide with (bucket, j): the layout is part of the law.
    a = philox_ref(1, 490896, 7)
    b = philox_ref(490896, 1, 7)
    assert a != b
    out0, out1 = philox2x64_10(np.uint64(1), np.uint64(490896), np.uint64(7))
    assert (int(out0), int(out1)) == a


# ----------------------------------------------------------------------------- uniform map
def test_uniform_at_zero_is_half_ulp_of_the_grid():
    u = uniforms(np.array([0], dtype=np.uint64))[0]
    assert u == 2.0**-65
    assert _uniform_scalar(np.uint64(0)) == 2.0**-65


def test_uniform_guard_at_the_top():
    top = np.array([U64_MAX, U64_MAX - 1, U64_MAX - 1023, 2**64 - 2**11], dtype=np.uint64)
    u = uniforms(top)
    # float64(x) rounds these to 2^64, so (x + 0.5)·2^-64 would be exactly 1.0: the guard maps
    # them to the largest double below 1.
    assert np.all(u == ONE_BELOW)
    assert np.all(u < 1.0)
    assert _uniform_scalar(np.uint64(U64_MAX)) == ONE_BELOW


def test_uniform_below_the_guard_is_the_plain_formula():
    # x = 2^64 - 2^11 - 1 and below round to at most 2^64 - 2^11, whose u is exact and < 1.
    x = 2**64 - 2**11 - 1
    assert uniforms(np.array([x], dtype=np.uint64))[0] == 1.0 - 2.0**-53


def _uniform_probe_points(rng: np.random.Generator) -> np.ndarray:
    edges = [
        0,
        1,
        2,
        3,
        2**52 - 1,
        2**52,
        2**53 - 1,
        2**53,
        2**53 + 1,
        2**63 - 1,
        2**63,
        2**64 - 2**11 - 1,
        2**64 - 2**11,
        2**64 - 1025,
        2**64 - 1024,
        U64_MAX,
    ]
    pts = [np.array(edges, dtype=np.uint64), rng.integers(0, 2**64, 100_000, dtype=np.uint64)]
    for base in (2**53, 2**63, 2**64 - 2**20):
        pts.append(np.uint64(base) + rng.integers(0, 2**12, 2_000, dtype=np.uint64))
    pts.append(rng.integers(0, 2**20, 2_000, dtype=np.uint64))
    return np.sort(np.concatenate(pts))


def test_uniform_monotone_and_open_interval():
    x = _uniform_probe_points(np.random.default_rng(7))
    u = uniforms(x)
    assert np.all(np.diff(u) >= 0.0)
    assert np.all(u > 0.0)
    assert np.all(u < 1.0)


def test_uniform_matches_reference_formula():
    x = _uniform_probe_points(np.random.default_rng(8))
    u = uniforms(x)
    ref = np.array([uniform_ref(int(v)) for v in x])
    small = x < np.uint64(2**53)
    # Below 2^53 float64(x) is exact, so the engine's (x + 0.5)·2^-64 has one rounding, like
    # the reference. Above, float64(x) rounds first: at most one ulp of u apart.
    np.testing.assert_array_equal(u[small], ref[small])
    np.testing.assert_allclose(u[~small], ref[~small], rtol=2.0**-52, atol=0.0)


def test_uniform_scalar_and_array_agree():
    x = _uniform_probe_points(np.random.default_rng(9))[::97]
    u = uniforms(x)
    for xi, ui in zip(x, u, strict=True):
        assert _uniform_scalar(xi) == ui


def test_uniforms_of_philox_output_look_uniform():
    # A sanity check of the whole path, not a statistical test suite: the mean of n uniforms
    # has sd sqrt(1/(12 n)); 5 sd is a false-alarm rate of ~6e-7.
    n = 200_000
    out0, out1 = philox2x64_10(np.arange(n, dtype=np.uint64), np.uint64(490896), np.uint64(42))
    for u in (uniforms(out0), uniforms(out1)):
        assert abs(u.mean() - 0.5) < 5.0 * math.sqrt(1.0 / (12.0 * n))
