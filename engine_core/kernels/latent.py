"""S2 latent intensity: a log-Gaussian AR(1) field per group, partition-free (docs/model.md).

    φ = exp(-1/L),  Z_t = φ Z_{t-1} + σ √(1-φ²) ε_t,  factor_t = clip(exp(Z_t - σ²/2), lo, hi)

ε_t is the Box–Muller normal of Philox block (ctr_lo = 0, ctr_hi = t) under the group's
S2.latent.v1 key, t the absolute bucket number. To make Z_t independent of where a computed
range starts, time is cut into epoch-aligned blocks of K buckets; the value of every bucket in
block b comes from a chain started at the first bucket of block b - n_burn with the stationary
draw Z = σ ε and run forward. n_burn = ceil(burn_lengths · L / K), so the chain has forgotten
its start to within exp(-burn_lengths) of σ.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from engine_core.kernels.parallel import parallel_for
from engine_core.rng.philox import philox_block, to_uniform
from engine_core.rng.samplers import box_muller

BURN_LENGTHS = 8.0


@nb.njit(cache=True, nogil=True)
def latent_normal(key: np.uint64, bucket_abs: int) -> float:
    o0, o1 = philox_block(np.uint64(0), np.uint64(bucket_abs), key)
    return box_muller(to_uniform(o0), to_uniform(o1))


@nb.njit(cache=True, nogil=True)
def burn_blocks(length_scale: float, block: int) -> int:
    return int(math.ceil(BURN_LENGTHS * length_scale / block))


def latent_field(
    keys: np.ndarray,  # uint64 [G]
    sigma: np.ndarray,  # float64 [G]
    length_scale: np.ndarray,  # float64 [G]
    first_bucket: int,
    n_buckets: int,
    block: int,
    clip_lo: float,
    clip_hi: float,
    z_out: np.ndarray,  # float64 [G, n_buckets]
    factor_out: np.ndarray,  # float64 [G, n_buckets]
) -> None:
    """Partition-free AR(1) latent z and clipped factor of every (group, bucket). Groups in
    parallel ranges."""
    parallel_for(_latent_groups, keys.shape[0], keys, sigma, length_scale, first_bucket,
                 n_buckets, block, clip_lo, clip_hi, z_out, factor_out)


@nb.njit(cache=True, nogil=True)
def _latent_groups(g_lo, g_hi, keys, sigma, length_scale, first_bucket, n_buckets, block,
                   clip_lo, clip_hi, z_out, factor_out):
    last_bucket = first_bucket + n_buckets  # exclusive
    for g in range(g_lo, g_hi):
        s = sigma[g]
        phi = math.exp(-1.0 / length_scale[g])
        innov = s * math.sqrt(1.0 - phi * phi)
        nburn = burn_blocks(length_scale[g], block)
        b_first = first_bucket // block
        b_last = (last_bucket - 1) // block
        for b in range(b_first, b_last + 1):
            chain_start = max((b - nburn) * block, 0)
            t_from = max(b * block, first_bucket)
            t_end = min((b + 1) * block, last_bucket)
            z = 0.0
            for t in range(chain_start, t_end):
                if t == chain_start:
                    z = s * latent_normal(keys[g], t)
                else:
                    z = phi * z + innov * latent_normal(keys[g], t)
                if t >= t_from:
                    j = t - first_bucket
                    z_out[g, j] = z
                    f = math.exp(z - 0.5 * s * s)
                    factor_out[g, j] = min(max(f, clip_lo), clip_hi)
