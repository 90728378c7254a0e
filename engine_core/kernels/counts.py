"""S3: target intensity λ and NB2/Poisson bucket counts (docs/model.md, docs/rng.md).

λ(series, B) = scale/Σshape · shape[local hour-of-week of B's start] · calendar(local date),
local time from the exact tz tables. μ = min(λ · factor(group, B), λ_max); when μ > ε one
Philox block (ctr_lo = 0, ctr_hi = B) under the series' S3.count.v1 key gives u = U(out0) and
N = F^-1(u) by inversion; N above max_count is capped and flagged.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from engine_core.kernels.parallel import parallel_for
from engine_core.kernels.zone_offsets import offset_at
from engine_core.rng.philox import philox_block, to_uniform
from engine_core.rng.samplers import count_inverse
from engine_core.timebase import US_PER_S as US

# 1970-01-01 was a Thursday: with Monday = 0 its weekday index is 3.
EPOCH_WEEKDAY = 3


@nb.njit(cache=True, nogil=True, inline="always")
def local_hour_of_week(local_s: int) -> int:
    day = local_s // 86400
    weekday = (day + EPOCH_WEEKDAY) % 7
    return weekday * 24 + (local_s - day * 86400) // 3600


def target_intensity(
    zone: np.ndarray,  # int32 [S] tz index of each series
    shape_norm: np.ndarray,  # float64 [S, 168] = scale/Σshape · shape
    day_mult: np.ndarray,  # float64 [S, n_days] calendar multiplier by local date
    first_local_day: int,  # days since epoch of day_mult[:, 0]
    zone_start: np.ndarray,
    trans_us: np.ndarray,
    offset_s: np.ndarray,
    first_bucket: int,
    n_buckets: int,
    bucket_seconds: int,
    lam_out: np.ndarray,  # float64 [S, n_buckets]
) -> None:
    """λ of every (series, bucket): the weekly shape at the local hour times the calendar
    multiplier of the local date. Series in parallel ranges."""
    parallel_for(_target_rows, zone.shape[0], zone, shape_norm, day_mult, first_local_day,
                 zone_start, trans_us, offset_s, first_bucket, n_buckets, bucket_seconds,
                 lam_out)


@nb.njit(cache=True, nogil=True)
def _target_rows(lo, hi, zone, shape_norm, day_mult, first_local_day, zone_start, trans_us,
                 offset_s, first_bucket, n_buckets, bucket_seconds, lam_out):
    for i in range(lo, hi):
        z = zone[i]
        for j in range(n_buckets):
            start_s = (first_bucket + j) * bucket_seconds
            local_s = start_s + offset_at(zone_start, trans_us, offset_s, z, start_s * US)
            how = local_hour_of_week(local_s)
            d = local_s // 86400 - first_local_day
            lam_out[i, j] = shape_norm[i, how] * day_mult[i, d]


@nb.njit(cache=True, nogil=True)
def count_draw(key: np.uint64, bucket_abs: int, mu: float, kappa: float, poisson: bool,
               max_count: int) -> tuple[int, bool]:
    o0, _ = philox_block(np.uint64(0), np.uint64(bucket_abs), key)
    n = count_inverse(to_uniform(o0), mu, kappa, poisson, max_count + 1)
    if n > max_count:
        return max_count, True
    return n, False


def bucket_counts(
    lam: np.ndarray,  # float64 [S, n_buckets]
    factor: np.ndarray,  # float64 [G, n_buckets]
    group: np.ndarray,  # int64 [S]
    keys: np.ndarray,  # uint64 [S] S3.count.v1
    kappa: np.ndarray,  # float64 [S]
    first_bucket: int,
    lambda_max: float,
    mu_eps: float,
    poisson: bool,
    max_count: int,
    mu_out: np.ndarray,  # float64 [S, n_buckets]
    count_out: np.ndarray,  # int64 [S, n_buckets]
    capped_out: np.ndarray,  # bool [S, n_buckets]
    blocks_out: np.ndarray,  # int64 [S]: Philox blocks drawn per series
) -> None:
    """μ = min(λ · factor, λ_max) and one NB2 / Poisson draw per cell with μ > ε. Series in
    parallel ranges."""
    parallel_for(_count_rows, lam.shape[0], lam, factor, group, keys, kappa, first_bucket,
                 lambda_max, mu_eps, poisson, max_count, mu_out, count_out, capped_out,
                 blocks_out)


@nb.njit(cache=True, nogil=True)
def _count_rows(lo, hi, lam, factor, group, keys, kappa, first_bucket, lambda_max, mu_eps,
                poisson, max_count, mu_out, count_out, capped_out, blocks_out):
    n_buckets = lam.shape[1]
    for i in range(lo, hi):
        g = group[i]
        nblocks = 0
        for j in range(n_buckets):
            mu = lam[i, j] * factor[g, j]
            if mu > lambda_max:
                mu = lambda_max
            mu_out[i, j] = mu
            if mu <= mu_eps:
                count_out[i, j] = 0
                capped_out[i, j] = False
                continue
            nblocks += 1
            n, capped = count_draw(keys[i], first_bucket + j, mu, kappa[i], poisson, max_count)
            count_out[i, j] = n
            capped_out[i, j] = capped
        blocks_out[i] = nblocks
