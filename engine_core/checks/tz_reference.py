"""An independent UTC → local conversion for the EVENTS_LOCAL_TIME rule.

It shares the *rules* with the engine (the installed ``tzdata`` package: output identity) but
not the *code*: offsets come from the standard library's ``zoneinfo`` reading the same TZif
bytes, never from ``engine_core.tz`` tables. Neither polars nor pyarrow can serve here: both
carry their own, older, tz databases (polars' bundled one and the host's /usr/share/zoneinfo),
which disagree with tzdata 2026 for several zones (docs/timezones.md).

Offsets are piecewise constant, so the reference is evaluated once per (zone, bucket start);
a bucket whose start and the next bucket's start differ in offset contains a transition, and
the events in it are converted one by one.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from engine_core.tz import zoneinfo_from_tzdata

US = 1_000_000


def _offset_s(zone, t_us: int) -> int:
    moment = dt.datetime.fromtimestamp(t_us // US, dt.UTC).replace(microsecond=t_us % US)
    off = moment.astimezone(zone).utcoffset()
    return int(off.total_seconds())


class ReferenceOffsets:
    """Offsets at every bucket start of a window, per zone, from zoneinfo."""

    def __init__(self, tzids: list[str], first_bucket: int, n_buckets: int,
                 bucket_seconds: int) -> None:
        self.tzids = tzids
        self.first_bucket = first_bucket
        self.n_buckets = n_buckets
        self.bucket_us = bucket_seconds * US
        self.zones = [zoneinfo_from_tzdata(t) for t in tzids]
        self._table: dict[int, np.ndarray] = {}

    def table(self, zone: int) -> np.ndarray:
        """int64 [n_buckets + 1]: offset in seconds at each bucket start (and the end)."""
        if zone not in self._table:
            z = self.zones[zone]
            starts = (self.first_bucket + np.arange(self.n_buckets + 1)) * self.bucket_us
            self._table[zone] = np.array([_offset_s(z, int(t)) for t in starts], dtype=np.int64)
        return self._table[zone]

    def expected_local(self, zone_idx: np.ndarray, ts_utc: np.ndarray) -> np.ndarray:
        """Local wall-clock µs for each event (zone index into ``tzids``)."""
        out = np.empty(len(ts_utc), dtype=np.int64)
        bucket = (ts_utc // self.bucket_us) - self.first_bucket
        if len(ts_utc) and (bucket.min() < 0 or bucket.max() >= self.n_buckets):
            raise ValueError("events outside the window")
        for zone in np.unique(zone_idx):
            sel = np.flatnonzero(zone_idx == zone)
            tab = self.table(int(zone))
            b = bucket[sel]
            off = tab[b]
            changes = tab[b] != tab[b + 1]
            out[sel] = ts_utc[sel] + off * US
            for k in np.flatnonzero(changes):
                i = sel[k]
                out[i] = ts_utc[i] + _offset_s(self.zones[int(zone)], int(ts_utc[i])) * US
        return out
