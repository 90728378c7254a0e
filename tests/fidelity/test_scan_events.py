"""The fidelity report's compiled pass over the arrivals against a plain NumPy reading of
the same files: the tallies (class × local hour of week, merchant totals, location × local
day, DST gap and fold counts) are equal exactly, whatever the thread count, and string
columns that are not dictionary-encoded read the same."""

from __future__ import annotations

import datetime as dt
import glob
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine_core.cli import main
from engine_core.fidelity.scan import WorldFrame, scan_events, transitions
from engine_core.world import generate_world
from engine_core.world.intensity import Horizon

UTC = dt.UTC
US_HOUR = 3600 * 10**6
START = dt.datetime(2026, 3, 1, tzinfo=UTC)
END = dt.datetime(2026, 11, 8, tzinfo=UTC)  # past both 2026 transitions of the northern zones


@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("scan")
    rc = main(["run", "--world", "tiny", "--scenario", "baseline", "--start", "2026-03-01",
               "--end", "2026-11-08", "--seed", "7", "--out", str(root), "--quiet"])
    assert rc == 0
    return root


def _events_dir(root) -> str:
    (path,) = glob.glob(f"{root}/*/*/seed=7/arrival_events/scenario=baseline/year=2026")
    return path


def _frame() -> WorldFrame:
    hours = int((END - START).total_seconds() // 3600)
    return WorldFrame(generate_world("tiny"), "baseline", Horizon(START, hours), 0.35)


def _oracle(frame: WorldFrame, path: str) -> dict:
    """The tallies, row by row in NumPy from the whole dataset read at once."""
    t = pq.read_table(path)
    mid = t.column("merchant_id").to_numpy()
    local = t.column("ts_local").cast(pa.int64()).to_numpy()
    utc = t.column("ts_utc").cast(pa.int64()).to_numpy()
    phys = ~t.column("is_virtual").to_numpy()
    m = np.searchsorted(frame.merchant_ids, mid)
    assert (frame.merchant_ids[m] == mid).all()
    cls = frame.merchant_class[m]
    how = (local // US_HOUR + 72) % 168
    class_how = np.zeros((int(frame.merchant_class.max()) + 1, 168))
    np.add.at(class_how, (cls[phys], how[phys]), 1)
    lookup = frame.location_lookup()
    keys = [f"{c}|{z}" for c, z in zip(t.column("legal_country_iso").to_pylist(),
                                       t.column("zone_tzid").to_pylist(), strict=True)]
    loc = np.array([lookup[k] for k in keys])
    day = local // (24 * US_HOUR) - frame.clock.first_local_day
    ok = phys & (day >= 0) & (day < frame.n_days)
    loc_day = np.zeros((len(frame.locations), frame.n_days))
    np.add.at(loc_day, (loc[ok], day[ok]), 1)
    tz = np.array(t.column("tzid").to_pylist(), dtype=object)
    gap, fold = {}, {}
    for name in sorted(set(tz)):
        mine = tz == name
        for tr in transitions(name, frame.horizon.start_s,
                              frame.horizon.start_s + 3600 * frame.horizon.n_hours):
            when = dt.datetime.fromtimestamp(tr.utc_us // 10**6, UTC)
            label = f"{name}@{when:%Y-%m-%dT%H:%MZ}"
            lo = tr.utc_us + min(tr.before_us, tr.after_us)
            hi = tr.utc_us + max(tr.before_us, tr.after_us)
            inside = mine & (local >= lo) & (local < hi)
            if tr.after_us > tr.before_us:
                gap[label] = int(inside.sum())
            else:
                off = local - utc
                fold[label] = [int((inside & (off == tr.before_us)).sum()),
                               int((inside & (off == tr.after_us)).sum())]
    return {"events": t.num_rows, "class_how": class_how,
            "merchant_total": np.bincount(m, minlength=frame.merchant_ids.size),
            "loc_day": loc_day, "gap": gap, "fold": fold}


def _assert_equal(agg, want) -> None:
    assert agg.events == want["events"]
    got_how = agg.class_how[: want["class_how"].shape[0]]
    np.testing.assert_array_equal(got_how, want["class_how"])
    assert agg.class_how[want["class_how"].shape[0]:].sum() == 0
    np.testing.assert_array_equal(agg.merchant_total, want["merchant_total"])
    np.testing.assert_array_equal(agg.loc_day, want["loc_day"])
    assert agg.dst_gap == want["gap"]
    assert agg.dst_fold == want["fold"]


def test_scan_equals_the_numpy_reading_at_one_and_two_threads(run_out):
    frame, path = _frame(), _events_dir(run_out)
    want = _oracle(frame, path)
    assert want["events"] > 500_000 and want["gap"] and want["fold"]
    assert sum(v[1] for v in want["fold"].values()) > 0  # the second occurrence is met
    for threads in (1, 2):
        _assert_equal(scan_events(frame, path, threads=threads), want)


def test_plain_string_columns_read_like_dictionary_ones(run_out, tmp_path):
    frame, src = _frame(), _events_dir(run_out)
    parts = sorted(glob.glob(f"{src}/*.parquet"))[:2]
    for i, p in enumerate(parts):
        t = pq.read_table(p)
        for name in ("legal_country_iso", "zone_tzid", "tzid"):
            j = t.schema.get_field_index(name)
            t = t.set_column(j, name, t.column(name).cast(pa.string()))
        pq.write_table(t, tmp_path / f"part-{i}.parquet", row_group_size=50_000)
    plain = scan_events(frame, str(tmp_path))
    want = _oracle(frame, str(tmp_path))
    _assert_equal(plain, want)
    assert json.dumps(plain.dst_gap)  # labels stay JSON keys
