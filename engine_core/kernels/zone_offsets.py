"""UTC offset lookups in the tz tables (engine_core/tz.py builds them; docs/timezones.md).

A zone's transitions are a sorted slice ``trans_us[zone_start[z]:zone_start[z + 1]]`` whose
first entry is INT64_MIN, with the total offset in force from each transition in
``offset_s``. These kernels are what S3's λ and S4's two clocks call per bucket or event.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from engine_core.kernels.parallel import parallel_for
from engine_core.timebase import US_PER_S


@nb.njit(cache=True, nogil=True, inline="always")
def _transition_at(zone_start, trans_us, zone, ts_us):
    """Index of the last transition of ``zone`` at or before UTC µs ``ts_us`` (binary search
    of the zone's slice; its first entry is INT64_MIN, so there always is one)."""
    lo = zone_start[zone]
    hi = zone_start[zone + 1]
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if trans_us[mid] <= ts_us:
            lo = mid
        else:
            hi = mid
    return lo


@nb.njit(cache=True, nogil=True)
def offset_at(zone_start, trans_us, offset_s, zone, ts_us):
    """Total UTC offset (seconds) of ``zone`` at UTC µs ``ts_us``.

    No bounds checks: ``zone`` must be a valid index, and the answer is exact only inside the
    tables' window (``exact_range_us``).
    """
    return np.int64(offset_s[_transition_at(zone_start, trans_us, zone, ts_us)])


@nb.njit(cache=True, nogil=True)
def offset_span(zone_start, trans_us, offset_s, zone, ts_us):
    """(offset_at(zone, ts_us), the first transition instant after ts_us — the offset holds
    until then — or INT64 max when there is none in the tables)."""
    lo = _transition_at(zone_start, trans_us, zone, ts_us)
    nxt = trans_us[lo + 1] if lo + 1 < zone_start[zone + 1] else np.iinfo(np.int64).max
    return np.int64(offset_s[lo]), nxt


def to_local_kernel(zone_start, trans_us, offset_s, zone_idx, ts_us, out, lo_us, hi_us):
    """``out = ts_us + offset · 1e6`` for every (zone, UTC µs) pair on the thread pool;
    returns (zone indices out of range, instants outside [lo_us, hi_us))."""
    parts = parallel_for(_to_local_range, ts_us.shape[0], zone_start, trans_us, offset_s,
                         zone_idx, ts_us, out, lo_us, hi_us)
    return sum(p[0] for p in parts), sum(p[1] for p in parts)


@nb.njit(cache=True, nogil=True)
def _to_local_range(lo, hi, zone_start, trans_us, offset_s, zone_idx, ts_us, out, lo_us,
                    hi_us):
    n_zones = zone_start.shape[0] - 1
    bad_zone = 0
    bad_ts = 0
    for i in range(lo, hi):
        z = zone_idx[i]
        t = ts_us[i]
        if z < 0 or z >= n_zones:
            bad_zone += 1
            out[i] = 0
        else:
            if t < lo_us or t >= hi_us:
                bad_ts += 1
            out[i] = t + offset_at(zone_start, trans_us, offset_s, z, t) * US_PER_S
    return bad_zone, bad_ts
