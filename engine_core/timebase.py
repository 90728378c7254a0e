"""The time base every layer shares: microsecond timestamps counted from the Unix epoch (UTC).

Kernels read these as compile-time constants (this file is among the digested kernel sources,
engine_core/__init__.py).
"""

from __future__ import annotations

import datetime as dt

US_PER_S = 1_000_000
SECONDS_PER_DAY = 86_400
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def utc(ts: dt.datetime) -> dt.datetime:
    """``ts`` in UTC; a naive value is taken as UTC."""
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def epoch_seconds(ts: dt.datetime) -> int:
    """Whole seconds from the epoch to ``ts`` (UTC)."""
    return int((utc(ts) - EPOCH).total_seconds())
