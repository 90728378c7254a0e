"""Realism of the reference world and DST-correct local shapes, computed from λ.

λ(series, hour) = scale / Σshape × shape[local hour-of-week of the hour's start] ×
calendar(local date). The figures below are measured on the 90-day horizon
2026-01-01 .. 2026-04-01 (UTC), not hard-coded into the world.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow.compute as pc
import pytest

from engine_core.config import load_policy
from engine_core.schemas import HOURS_PER_WEEK
from engine_core.world import World, generate_world, series_day_multipliers
from engine_core.world.intensity import Horizon, hourly_lambda, intensity_summary, series_kappa

UTC = dt.UTC
HORIZON_90D = Horizon(dt.datetime(2026, 1, 1, tzinfo=UTC), 90 * 24)


@pytest.fixture(scope="module")
def policy():
    return load_policy()


@pytest.fixture(scope="module")
def reference() -> World:
    return generate_world("reference")


@pytest.fixture(scope="module")
def tiny() -> World:
    return generate_world("tiny")


@pytest.fixture(scope="module")
def summary(reference, policy):
    return intensity_summary(reference, "baseline", HORIZON_90D, policy)


# ----------------------------------------------------------------------------- reference
def test_expected_arrivals_per_90_days(summary):
    assert summary.expected_arrivals == pytest.approx(125e6, rel=0.10)


def test_share_of_series_hours_without_arrival(summary):
    # mean over series-hours of P(N=0) = (κ/(κ+λ))^κ under NB2 with the policy's κ
    assert summary.zero_share == pytest.approx(0.89, abs=0.03)


def test_top_ten_zones_carry_three_quarters(summary):
    assert summary.top10_tz_share == pytest.approx(0.75, abs=0.05)
    assert len(summary.tz_arrivals) == 139


def test_virtual_share_is_a_few_percent(summary, policy):
    assert 0.02 <= summary.virtual_share <= 0.05
    m = summary.mode_arrivals
    expected = (m["VIRTUAL_ONLY"] + policy.routing.p_virtual_hybrid * m["HYBRID"]) / sum(m.values())
    assert summary.virtual_share == pytest.approx(expected)


def test_summary_agrees_with_hourly_lambda(reference, summary, policy):
    tz = reference.series["tzid"].to_numpy(zero_copy_only=False)
    zones = ["Asia/Kolkata", "Australia/Adelaide", "America/St_Johns"]
    for zone in zones:
        rows = np.flatnonzero(tz == zone)
        lam = hourly_lambda(reference, "baseline", HORIZON_90D, rows)
        assert lam.sum() == pytest.approx(summary.tz_arrivals[zone], rel=1e-12)
    rows = np.flatnonzero(tz == "Asia/Kolkata")
    lam = hourly_lambda(reference, "baseline", HORIZON_90D, rows)
    k = series_kappa(reference, "baseline", policy)[rows, None]
    p0 = (k / (k + lam)) ** k
    assert 0 < p0.mean() < 1


def test_poisson_law_gives_fewer_zeros_than_nb2(tiny, policy):
    nb2 = intensity_summary(tiny, "baseline", HORIZON_90D, policy)
    counts = policy.counts.model_copy(update={"law": "poisson"})
    poisson = intensity_summary(
        tiny, "baseline", HORIZON_90D, policy.model_copy(update={"counts": counts})
    )
    assert poisson.zero_share < nb2.zero_share
    assert poisson.expected_arrivals == nb2.expected_arrivals


def test_stress_expects_more_online_arrivals_around_black_friday(tiny, policy):
    h = Horizon(dt.datetime(2026, 11, 20, tzinfo=UTC), 14 * 24)
    base = intensity_summary(tiny, "baseline", h, policy)
    stress = intensity_summary(tiny, "stress", h, policy)
    assert stress.mode_arrivals["VIRTUAL_ONLY"] > 1.3 * base.mode_arrivals["VIRTUAL_ONLY"]


# ----------------------------------------------------------------------------- local time
def _independent_lambda(world: World, scenario: str, row: int, t: dt.datetime) -> float:
    """λ of one series at one UTC hour from zoneinfo and the calendar rows, no vectorising."""
    s = world.series
    tz = ZoneInfo(s["tzid"][row].as_py())
    local = t.astimezone(tz)
    how = local.weekday() * 24 + local.hour
    shape = s["shape"][row].as_py()
    mid = s["merchant_id"][row].as_py()
    m = world.merchants
    cls = m["demand_class"][m["merchant_id"].to_pylist().index(mid)].as_py()
    cc = s["legal_country_iso"][row].as_py()
    c = world.calendar
    mask = pc.and_(
        pc.and_(pc.equal(c["scenario_id"], scenario), pc.equal(c["legal_country_iso"], cc)),
        pc.is_in(c["demand_class"], value_set=pc.cast([cls, "*"], "string")),
    )
    mult = 1.0
    for r in c.filter(mask).to_pylist():
        if r["local_date"] == local.date():
            mult *= r["effect"]
    return s["scale"][row].as_py() / sum(shape) * shape[how] * mult


@pytest.mark.parametrize(
    "start",
    [
        dt.datetime(2026, 3, 7, 12, tzinfo=UTC),  # US spring forward (8 March)
        dt.datetime(2026, 3, 28, 12, tzinfo=UTC),  # EU spring forward (29 March)
        dt.datetime(2026, 10, 31, 12, tzinfo=UTC),  # US fall back (1 November)
        dt.datetime(2025, 12, 31, 12, tzinfo=UTC),  # New Year's Day holiday
    ],
)
def test_hourly_lambda_matches_an_independent_zoneinfo_computation(tiny, start):
    n_hours = 36
    lam = hourly_lambda(tiny, "baseline", Horizon(start, n_hours))
    rng = np.random.default_rng(int(start.timestamp()))
    for row in range(tiny.series.num_rows):
        for h in rng.choice(n_hours, size=6, replace=False):
            t = start + dt.timedelta(hours=int(h))
            assert lam[row, h] == pytest.approx(
                _independent_lambda(tiny, "baseline", row, t), rel=1e-12
            ), (row, t)


def test_half_hour_zone_uses_the_local_hour_of_the_bucket_start(tiny):
    rows = np.flatnonzero(tiny.series["tzid"].to_numpy(zero_copy_only=False) == "Asia/Kolkata")
    assert rows.size
    # Monday 12 January 2026, 03:00 UTC = 08:30 IST → hour of week 8
    start = dt.datetime(2026, 1, 12, 3, tzinfo=UTC)
    lam = hourly_lambda(tiny, "baseline", Horizon(start, 2), rows)
    mult = series_day_multipliers(tiny, "baseline", dt.date(2026, 1, 12), 1)[rows, 0]
    shape = (
        tiny.series["shape"].combine_chunks().flatten().to_numpy().reshape(-1, HOURS_PER_WEEK)[rows]
    )
    norm = tiny.series["scale"].to_numpy()[rows] / shape.sum(axis=1)
    assert np.allclose(lam[:, 0], norm * shape[:, 8] * mult, rtol=1e-14)
    assert np.allclose(lam[:, 1], norm * shape[:, 9] * mult, rtol=1e-14)


def _office_series(world: World, tz: str) -> int:
    m = world.merchants
    office = set(
        pc.filter(m["merchant_id"], pc.equal(m["demand_class"], "office_hours")).to_pylist()
    )
    s = world.series
    best, row = -1.0, -1
    for i, (mid, z, scale) in enumerate(
        zip(
            s["merchant_id"].to_pylist(), s["tzid"].to_pylist(), s["scale"].to_pylist(), strict=True
        )
    ):
        if mid in office and z == tz and scale > best:
            best, row = scale, i
    assert row >= 0, f"no office_hours series in {tz}"
    return row


@pytest.mark.parametrize(
    ("tz", "before_monday", "after_monday"),
    [
        ("America/New_York", dt.date(2026, 3, 2), dt.date(2026, 3, 9)),
        ("Europe/London", dt.date(2026, 3, 23), dt.date(2026, 3, 30)),
        ("Australia/Sydney", dt.date(2026, 3, 30), dt.date(2026, 4, 6)),  # DST ends 5 April
    ],
)
def test_office_peak_stays_in_local_office_hours_across_dst(
    reference, tz, before_monday, after_monday
):
    row = _office_series(reference, tz)
    zone = ZoneInfo(tz)
    start = dt.datetime.combine(before_monday - dt.timedelta(days=2), dt.time(), UTC)
    n_hours = 24 * 18
    lam = hourly_lambda(reference, "baseline", Horizon(start, n_hours), np.array([row]))[0]
    utc_hours = [start + dt.timedelta(hours=h) for h in range(n_hours)]
    local = [t.astimezone(zone) for t in utc_hours]

    def peak(day: dt.date) -> tuple[int, int]:
        idx = [h for h in range(n_hours) if local[h].date() == day]
        best = max(idx, key=lambda h: lam[h])
        return local[best].hour, utc_hours[best].hour

    offsets_before = local[0].utcoffset()
    offsets_after = local[-1].utcoffset()
    assert offsets_before != offsets_after, "the window must contain the transition"
    shift = int((offsets_after - offsets_before).total_seconds() // 3600)
    for d in range(5):  # Monday..Friday of each week
        local_before, utc_before = peak(before_monday + dt.timedelta(days=d))
        local_after, utc_after = peak(after_monday + dt.timedelta(days=d))
        assert 9 <= local_before < 17 and 9 <= local_after < 17
        assert local_before == local_after  # the shape lives in local time ...
        assert (utc_before - utc_after) % 24 == shift % 24  # ... so the UTC peak moves


# ----------------------------------------------------------------------------- calibration
def test_reference_in_person_profile_has_the_published_orderings(reference, policy):
    """The configured λ of the reference world over the quarter, in local time, pooled over
    the in-person retail classes: the orderings of docs/calibration.md hold by the targets'
    margins, and the night and weekend shares lie in their ranges."""
    from engine_core.fidelity import estimators as est
    from engine_core.fidelity import load_targets
    from engine_core.fidelity.scan import WorldFrame, target_aggregates
    from engine_core.schemas import DEMAND_CLASSES

    p = load_targets().profiles
    frame = WorldFrame(reference, "baseline", HORIZON_90D, policy.routing.p_virtual_hybrid)
    target = target_aggregates(frame, np.full(frame.series_zone.size, -1), 1)
    week = target.class_how[[DEMAND_CLASSES.index(c) for c in p.in_person_classes]].sum(axis=0)
    margin = 1 + p.peak_margin
    weekday, saturday = est.hour_shares(week, p.weekdays), est.hour_shares(week, [p.saturday])
    assert weekday[p.evening_hours].sum() > margin * weekday[p.noon_hours].sum()
    assert saturday[p.noon_hours].sum() > margin * saturday[p.evening_hours].sum()
    for day in p.late_days:
        shares = est.hour_shares(week, [day])
        assert shares[p.late_hours].mean() > margin * shares[p.late_reference_hours].mean()
    assert p.night_share[0] <= est.night_share(week, *p.night_hours) <= p.night_share[1]
    assert p.weekend_share[0] <= est.weekend_share(week) <= p.weekend_share[1]
