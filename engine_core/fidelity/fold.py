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
    # Each tally keeps its current slot and count in registers and adds them when the slot
    # changes, instead of a read-modify-write of the same slot row after row; the local hour is
    # divided out only when a row leaves the current one. The counts are the same for rows in
    # any order; published rows come sorted by (merchant_id, ts_utc), so a merchant's rows, and
    # within them the rows of one local hour and day, follow each other and the runs are long
    # (≈ 16 % less time a row; docs/benchmarks.md). The three runs are written out: the same
    # step as a compiled helper taking the tally array ran at 45 ns a row against 9 (an
    # array handed to a call is reference-counted on every row).
    last_id = np.uint64(0)
    last_pos = -1
    have_last = False
    run = 0  # rows of the current merchant
    cls_base = 0
    h_lo = 1  # [h_lo, h_hi): the local hour of the previous physical row (empty at first)
    h_hi = 0
    how = 0
    day = 0
    how_key = -1
    how_n = 0
    day_key = -1
    day_n = 0
    for r in range(merchant.size):
        m = merchant[r]
        if not have_last or m != last_id:
            if last_pos >= 0:
                merchant_total[last_pos] += run
            run = 0
            last_id = m
            last_pos = search_sorted(merchant_ids, 0, merchant_ids.size, m)
            if last_pos >= 0:
                cls_base = merchant_class[last_pos] * HOURS_PER_WEEK
            have_last = True
        local = local_us[r]
        if last_pos >= 0:
            run += 1
            if not virtual[r]:
                if not (h_lo <= local < h_hi):
                    hour = local // US_PER_HOUR
                    h_lo = hour * US_PER_HOUR
                    h_hi = h_lo + US_PER_HOUR
                    how = (hour + EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK
                    day = hour // 24 - first_day
                key = cls_base + how
                if key != how_key:
                    if how_key >= 0:
                        class_how[how_key] += how_n
                    how_key = key
                    how_n = 0
                how_n += 1
                loc = loc_of[cc_code[r], zone_code[r]]
                if loc >= 0 and day >= 0 and day < n_days:
                    key = loc * n_days + day
                    if key != day_key:
                        if day_key >= 0:
                            loc_day[day_key] += day_n
                        day_key = key
                        day_n = 0
                    day_n += 1
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
    if last_pos >= 0:
        merchant_total[last_pos] += run
    if how_key >= 0:
        class_how[how_key] += how_n
    if day_key >= 0:
        loc_day[day_key] += day_n
