"""A slow, obviously-correct Philox2x64-10 over Python integers (test oracle only).

Written straight from the round of the RNG law (docs/rng.md) with arbitrary-precision
integers, so the 128-bit product needs no splitting: the Numba generator assembles the high
half from 32-bit partial products, and this module is what it is checked against.
"""

from __future__ import annotations

PHILOX_M = 0xD2B74407B1CE6E93
PHILOX_W = 0x9E3779B97F4A7C15
ROUNDS = 10
MASK64 = (1 << 64) - 1


def philox2x64_10_ref(ctr_lo: int, ctr_hi: int, key: int) -> tuple[int, int]:
    """(out0, out1) of one block; ctr_lo is Random123's ctr.v[0]."""
    c0 = ctr_lo & MASK64
    c1 = ctr_hi & MASK64
    k = key & MASK64
    for r in range(ROUNDS):
        product = PHILOX_M * c0
        hi, lo = product >> 64, product & MASK64
        c0, c1 = hi ^ k ^ c1, lo
        if r < ROUNDS - 1:
            k = (k + PHILOX_W) & MASK64
    return c0, c1


def uniform_ref(x: int) -> float:
    """(x + 0.5) · 2^-64 rounded once to float64, then guarded to stay below 1.0.

    Python's int/int true division rounds the exact rational correctly; the engine computes
    float64(x) + 0.5 first, so the two may differ in the last bit for x >= 2^53 (tests compare
    with a relative tolerance of 2^-52 there).
    """
    u = (2 * x + 1) / (1 << 65)
    return min(u, 1.0 - 2.0**-53)
