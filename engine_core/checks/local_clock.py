"""An independent UTC → wall-clock reference for EVENTS_LOCAL_TIME (not the engine's tables).

Reference implementation: polars (``dt.convert_time_zone`` then ``replace_time_zone(None)``),
whose time-zone rules are the IANA database bundled into its binary (chrono-tz). That database
is usually an older release than the ``tzdata`` package the engine pins (its version is part
of the run identity), so a zone whose rules changed in between would be reported as wrong when
the engine is right. Each zone is therefore probed first: polars against CPython's ``zoneinfo``
reading the installed ``tzdata`` package, every twelve hours over the partition (one day either
side) and at both ends of every bucket where polars sees a transition. Zones where
the two disagree are *skewed*: for them the reference is ``zoneinfo`` over ``tzdata`` (still
independent of the engine's parser and tables). The skewed zones are listed in the figures.
A rule change shows up at a probe point (offsets that differ for half a day or more) or at one
of polars' own transitions (a transition moved, added or dropped), so twice-daily probes
suffice.

Per row the conversion is exact but costs ~0.1 µs in polars; to check hundreds of millions of
rows quickly the reference is tabulated per (zone, bucket): the offset at the bucket's first
and last microsecond. When the two agree the offset holds for the whole bucket — this assumes
a zone never changes its offset and changes it back within one bucket (no IANA zone does within
an hour) — and rows are checked against the table; rows in a bucket with a transition, outside
the partition, or in a zone not in the table are converted one by one.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from engine_core.timebase import EPOCH
from engine_core.timebase import US_PER_S as US
from engine_core.tz import tzdata_version, zoneinfo_from_tzdata

SENTINEL = np.iinfo(np.int64).min  # "offset changes inside this bucket: convert per row"
PROBE_SECONDS = 12 * 3600  # spacing of the probe points of polars against zoneinfo


def polars_local(ts_us: np.ndarray, tzid: str) -> np.ndarray:
    """Wall clock (naive µs) of UTC µs ``ts_us`` in ``tzid`` by polars."""
    s = pl.Series("t", np.ascontiguousarray(ts_us, dtype=np.int64)).cast(pl.Datetime("us", "UTC"))
    return s.dt.convert_time_zone(tzid).dt.replace_time_zone(None).cast(pl.Int64).to_numpy()


def zoneinfo_local(ts_us: np.ndarray, tzid: str) -> np.ndarray:
    """Wall clock (naive µs) of UTC µs ``ts_us`` in ``tzid`` by zoneinfo over tzdata."""
    zi = zoneinfo_from_tzdata(tzid)
    out = np.empty(len(ts_us), dtype=np.int64)
    for k, t in enumerate(np.asarray(ts_us, dtype=np.int64).tolist()):
        off = (EPOCH + dt.timedelta(microseconds=t)).astimezone(zi).utcoffset()
        out[k] = t + (off.days * 86400 + off.seconds) * US + off.microseconds
    return out


class LocalClockReference:
    """Reference offsets per (zone, bucket) for ``tzids`` over a window of buckets."""

    def __init__(
        self, tzids: list[str], first_bucket: int, n_buckets: int, bucket_seconds: int
    ) -> None:
        self.tzids = list(tzids)
        self.first_bucket = first_bucket
        self.n_buckets = n_buckets
        self.bucket_us = bucket_seconds * US
        self.skewed: list[str] = []
        self.unknown: list[str] = []  # zones neither reference knows
        starts = (first_bucket + np.arange(n_buckets, dtype=np.int64)) * self.bucket_us
        lasts = starts + self.bucket_us - 1
        self.offset = np.full((len(self.tzids), n_buckets), SENTINEL, dtype=np.int64)
        pad = max(1, 86400 * US // self.bucket_us)
        every = max(1, PROBE_SECONDS // bucket_seconds)
        probe = (
            first_bucket + np.arange(-pad, n_buckets + pad, every, dtype=np.int64)
        ) * self.bucket_us
        for z, name in enumerate(self.tzids):
            try:
                a = polars_local(starts, name) - starts
                b = polars_local(lasts, name) - lasts
            except Exception:  # a zone polars does not know: zoneinfo only
                a = b = None
            if a is not None:
                trans = np.flatnonzero(a != b)
                pts = np.concatenate([probe, starts[trans], lasts[trans]])
                try:
                    skew = not np.array_equal(polars_local(pts, name), zoneinfo_local(pts, name))
                except Exception:
                    skew = False  # zoneinfo lacks the zone: polars is the only reference
            if a is None or skew:
                try:
                    a = zoneinfo_local(starts, name) - starts
                    b = zoneinfo_local(lasts, name) - lasts
                except Exception:
                    self.unknown.append(name)
                    continue
                self.skewed.append(name)
            self.offset[z] = np.where(a == b, a, SENTINEL)

    def convert(self, ts_us: np.ndarray, tzid: str) -> np.ndarray | None:
        """Per-row reference wall clock in ``tzid`` (None when no reference knows the zone)."""
        try:
            if tzid in self.skewed:
                return zoneinfo_local(ts_us, tzid)
            return polars_local(ts_us, tzid)
        except Exception:
            try:
                return zoneinfo_local(ts_us, tzid)
            except Exception:
                return None

    def figures(self) -> dict:
        return {
            "reference": f"polars {pl.__version__} (bundled IANA database)",
            "tzdata_version": tzdata_version(),
            "zones": len(self.tzids),
            "zones_polars_disagrees_with_tzdata": list(self.skewed),
            "zones_without_reference": list(self.unknown),
        }
