"""The fidelity report's fold of arrival rows into fixed-size tallies, one pass, compiled.

One row group's columns go in as flat arrays (dictionary columns as their codes, with small
per-row-group tables that turn codes into the frame's indices); the tallies are integer
counts, so adding the tallies of row groups in any order gives the same result.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from engine_core.checks.world_index import search_sorted

HOURS_PER_WEEK = 168
EPOCH_HOUR_OF_WEEK = 72  # 1970-01-01 was a Thursday: hour 72 of a Monday-first week
US_PER_HOUR = 3_600_000_000
US_PER_DAY = 24 * US_PER_HOUR


@nb.njit(cache=True, nogil=True)
def fold_events(
    merchant: np.ndarray,  # u64 [rows]
    local_us: np.ndarray,  # i64 [rows] ts_local
    utc_us: np.ndarray,  # i64 [rows] ts_utc
    virtual: np.ndarray,  # bool [rows]
    cc_code: np.ndarray,  # int [rows] code of legal_country_iso
    zone_code: np.ndarray,  # int [rows] code of zone_tzid
    tz_code: np.ndarray,  # int [rows] code of tzid
    loc_of: np.ndarray,  # i64 [cc codes, zone codes] location index, −1 if none
    merchant_ids: np.ndarray,  # u64 sorted
    merchant_class: np.ndarray,  # i64 class per sorted merchant
    first_day: int,
    n_days: int,
    tr_start: np.ndarray,  # i64 [tz codes + 1] each code's transitions in tr_*
    tr_lo: np.ndarray,  # i64 local µs where the gap or fold opens
    tr_hi: np.ndarray,  # i64 local µs where it closes
    tr_before: np.ndarray,  # i64 UTC offset before, µs
    tr_after: np.ndarray,  # i64 UTC offset after, µs
    class_how: np.ndarray,  # i64 [classes · 168] out, physical arrivals by local hour of week
    merchant_total: np.ndarray,  # i64 [merchants] out, all arrivals
    loc_day: np.ndarray,  # i64 [locations · n_days] out, physical arrivals by local day
    dst: np.ndarray,  # i64 [transitions, 3] out: in gap, first and second fold occurrence
) -> None:
    last_id = np.uint64(0)
    last_pos = -1
    have_last = False
    for r in range(merchant.size):
        m = merchant[r]
        if not have_last or m != last_id:
            last_id = m
            last_pos = search_sorted(merchant_ids, 0, merchant_ids.size, m)
            have_last = True
        local = local_us[r]
        if last_pos >= 0:
            merchant_total[last_pos] += 1
            if not virtual[r]:
                how = (local // US_PER_HOUR + EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK
                class_how[merchant_class[last_pos] * HOURS_PER_WEEK + how] += 1
                loc = loc_of[cc_code[r], zone_code[r]]
                day = local // US_PER_DAY - first_day
                if loc >= 0 and day >= 0 and day < n_days:
                    loc_day[loc * n_days + day] += 1
        tz = tz_code[r]
        for k in range(tr_start[tz], tr_start[tz + 1]):
            if tr_lo[k] <= local < tr_hi[k]:
                if tr_after[k] > tr_before[k]:
                    dst[k, 0] += 1
                else:
                    offset = local - utc_us[r]
                    if offset == tr_before[k]:
                        dst[k, 1] += 1
                    elif offset == tr_after[k]:
                        dst[k, 2] += 1
