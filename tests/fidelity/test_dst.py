"""The DST estimators of the fidelity scan on hand-made arrivals in America/New_York:
a local time inside the spring-forward gap is counted, and the two occurrences of the
repeated autumn hour are told apart by their UTC offset."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine_core.fidelity.scan import WorldFrame, scan_events, transitions
from engine_core.world import generate_world
from engine_core.world.intensity import Horizon

UTC = dt.UTC
H = 3600 * 10**6


def _us(t: dt.datetime) -> int:
    return int(t.timestamp()) * 10**6


def test_transitions_of_new_york_2026():
    start = int(dt.datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    end = int(dt.datetime(2027, 1, 1, tzinfo=UTC).timestamp())
    spring, autumn = transitions("America/New_York", start, end)
    assert spring.utc_us == _us(dt.datetime(2026, 3, 8, 7, tzinfo=UTC))
    assert (spring.before_us, spring.after_us) == (-5 * H, -4 * H)
    assert autumn.utc_us == _us(dt.datetime(2026, 11, 1, 6, tzinfo=UTC))
    assert transitions("Asia/Tokyo", start, end) == []


def test_gap_and_fold_counts(tmp_path):
    world = generate_world("tiny")
    frame = WorldFrame(world, "baseline", Horizon(dt.datetime(2026, 1, 1, tzinfo=UTC), 8760), 0.35)
    mid = int(world.series.column("merchant_id")[0].as_py())
    utc = [
        dt.datetime(2026, 3, 8, 7, 30, tzinfo=UTC),  # 03:30 EDT, written wrongly as 02:30
        dt.datetime(2026, 3, 8, 8, 30, tzinfo=UTC),  # 04:30 EDT, right
        dt.datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, first occurrence
        dt.datetime(2026, 11, 1, 6, 30, tzinfo=UTC),  # 01:30 EST, second occurrence
        dt.datetime(2026, 11, 1, 6, 45, tzinfo=UTC),  # 01:45 EST, second occurrence
    ]
    offsets = [-5, -4, -4, -5, -5]
    ts = np.array([_us(t) for t in utc])
    local = ts + np.array(offsets) * H
    n = len(utc)

    def d(v: str) -> pa.Array:
        return pa.array([v] * n).dictionary_encode()

    pq.write_table(pa.table({
        "merchant_id": pa.array([mid] * n, pa.uint64()),
        "legal_country_iso": d("US"), "zone_tzid": d("America/New_York"),
        "ts_utc": pa.array(ts, pa.timestamp("us", "UTC")), "tzid": d("America/New_York"),
        "ts_local": pa.array(local, pa.timestamp("us")), "is_virtual": pa.array([False] * n),
    }), tmp_path / "part-0.parquet")
    agg = scan_events(frame, str(tmp_path))
    assert agg.events == n
    assert agg.dst_gap == {"America/New_York@2026-03-08T07:00Z": 1}
    assert agg.dst_fold == {"America/New_York@2026-11-01T06:00Z": [1, 2]}
