"""Philox2x64-10 (Random123) and the uniform map of the RNG law (docs/rng.md).

Round: (hi, lo) = mulhilo64(M, c0); c0' = hi ^ k ^ c1; c1' = lo; k += W. Ten rounds. The
counter is (c0, c1) = (ctr_lo, ctr_hi); the output is (out0, out1) = (c0, c1) after the rounds.
Numba has no 128-bit integer type, so the 64x64 -> 128-bit product is emitted as LLVM IR (an
i128 multiply, one hardware multiply instruction); assembling it from four 32x32 partial
products instead made the generator about five times slower.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload

PHILOX_M = np.uint64(0xD2B74407B1CE6E93)
PHILOX_W = np.uint64(0x9E3779B97F4A7C15)
_MASK64 = (1 << 64) - 1
# 2**-64 and the largest double below 1.0: the guard for (x + 0.5) * 2**-64 rounding to 1.0.
_TWO_M64 = 5.421010862427522e-20
_ONE_BELOW = 0.9999999999999999


def mulhilo64(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """(hi, lo): the high and low 64-bit words of the 128-bit product a·b.

    This body runs when called from plain Python; compiled code uses the overload below.
    """
    p = int(a) * int(b)
    return np.uint64(p >> 64), np.uint64(p & _MASK64)


@intrinsic
def _mul_u64_wide(typingctx, a, b):
    """zext both words to i128, multiply, split: one mul/mulx on x86-64, mul + umulh on Arm."""
    if a != types.uint64 or b != types.uint64:
        return None
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        i128 = ir.IntType(128)
        p = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        hi = builder.trunc(builder.lshr(p, ir.Constant(i128, 64)), i64)
        lo = builder.trunc(p, i64)
        return context.make_tuple(builder, signature.return_type, (hi, lo))

    return sig, codegen


@overload(mulhilo64, jit_options={"nogil": True})
def _mulhilo64_compiled(a, b):
    if a == types.uint64 and b == types.uint64:
        return lambda a, b: _mul_u64_wide(a, b)
    return None


@nb.njit(cache=True, nogil=True)
def philox_block(ctr_lo: np.uint64, ctr_hi: np.uint64,
                 key: np.uint64) -> tuple[np.uint64, np.uint64]:
    """One Philox2x64-10 block: counter (ctr_lo, ctr_hi), key → (out0, out1)."""
    c0 = np.uint64(ctr_lo)
    c1 = np.uint64(ctr_hi)
    k = np.uint64(key)
    for r in range(10):
        hi, lo = mulhilo64(PHILOX_M, c0)
        c0 = hi ^ k ^ c1
        c1 = lo
        if r < 9:
            k = k + PHILOX_W
    return c0, c1


@nb.njit(cache=True, nogil=True, inline="always")
def to_uniform(x: np.uint64) -> float:
    """u = (x + 0.5) * 2**-64 in float64, in the open interval (0, 1).

    float64(x) rounds to nearest, so values of x near 2**64 would give exactly 1.0; they are
    mapped to the largest double below 1.0 instead.
    """
    u = (np.float64(x) + 0.5) * _TWO_M64
    if u >= 1.0:
        u = _ONE_BELOW
    return u


@nb.njit(cache=True, nogil=True, parallel=False)
def _philox_array(ctr_lo, ctr_hi, key, out0, out1):
    for i in range(ctr_lo.shape[0]):
        a, b = philox_block(ctr_lo[i], ctr_hi[i], key[i])
        out0[i] = a
        out1[i] = b


def philox2x64_10(ctr_lo, ctr_hi, key) -> tuple[np.ndarray, np.ndarray]:
    """Philox2x64-10 over uint64 arrays (broadcast together); returns (out0, out1)."""
    lo, hi, k = np.broadcast_arrays(
        np.asarray(ctr_lo, dtype=np.uint64),
        np.asarray(ctr_hi, dtype=np.uint64),
        np.asarray(key, dtype=np.uint64),
    )
    shape = lo.shape
    lo = np.ascontiguousarray(lo).ravel()
    hi = np.ascontiguousarray(hi).ravel()
    k = np.ascontiguousarray(k).ravel()
    out0 = np.empty(lo.shape[0], dtype=np.uint64)
    out1 = np.empty(lo.shape[0], dtype=np.uint64)
    _philox_array(lo, hi, k, out0, out1)
    return out0.reshape(shape), out1.reshape(shape)


@nb.njit(cache=True, nogil=True)
def _uniform_array(x, out):
    for i in range(x.shape[0]):
        out[i] = to_uniform(x[i])


def uniforms(x) -> np.ndarray:
    """The uniform map applied to a uint64 array."""
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.uint64)).ravel()
    out = np.empty(arr.shape[0], dtype=np.float64)
    _uniform_array(arr, out)
    return out.reshape(np.shape(x))
