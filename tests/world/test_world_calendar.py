"""Calendar table construction and per-series day multipliers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from engine_core.errors import EngineError
from engine_core.schemas import CALENDAR, DEMAND_CLASSES
from engine_core.world import World, generate_world, series_day_multipliers
from engine_core.world.calendar import build_calendar, campaign_start, day_multipliers
from engine_core.world.fingerprint import fingerprint_canonical
from engine_core.world.presets import CampaignStart, load_catalogue
from engine_core.world.validate import canonical_world_tables


@pytest.fixture(scope="module")
def tiny() -> World:
    return generate_world("tiny")


def rows(world: World, scenario: str, country: str, day: dt.date) -> dict[str, list]:
    c = world.calendar
    mask = pc.and_(
        pc.and_(pc.equal(c["scenario_id"], scenario), pc.equal(c["legal_country_iso"], country)),
        pc.equal(c["local_date"], pa.scalar(day, pa.date32())),
    )
    out: dict[str, list] = {}
    for r in c.filter(mask).to_pylist():
        out.setdefault(r["reason"], []).append((r["demand_class"], r["effect"]))
    return out


def with_calendar(world: World, calendar_rows: list[dict]) -> World:
    tables = dict(world.tables)
    rows = [{"tzid": "*"} | r for r in calendar_rows]  # country-wide unless a row says
    tables["calendar"] = pa.Table.from_pylist(rows, schema=CALENDAR)
    tables = canonical_world_tables(tables)
    return World(tables, fingerprint_canonical(tables), "test")


def series_rows(world: World, merchant_class: str | None = None, country: str | None = None):
    m = world.merchants
    cls = dict(zip(m["merchant_id"].to_pylist(), m["demand_class"].to_pylist(), strict=True))
    out = []
    for i, (mid, cc) in enumerate(
        zip(
            world.series["merchant_id"].to_pylist(),
            world.series["legal_country_iso"].to_pylist(),
            strict=True,
        )
    ):
        if (merchant_class is None or cls[mid] == merchant_class) and (
            country is None or cc == country
        ):
            out.append(i)
    return out, cls


# ----------------------------------------------------------------------------- building
def test_calendar_covers_each_series_country_and_the_configured_years(tiny):
    cal = tiny.calendar
    assert set(cal["legal_country_iso"].to_pylist()) == set(
        tiny.series["legal_country_iso"].to_pylist()
    )
    years = load_catalogue().calendar.years
    dates = cal["local_date"].to_pylist()
    assert min(dates).year == years[0] and max(dates).year == years[1]
    assert set(cal["scenario_id"].to_pylist()) == {"baseline", "stress"}


def test_public_holidays_from_the_holidays_package(tiny):
    new_year = rows(tiny, "baseline", "US", dt.date(2026, 1, 1))
    assert set(new_year) == {"public_holiday:New Year's Day"}
    effects = dict(new_year["public_holiday:New Year's Day"])
    assert effects["office_hours"] == 0.3 and effects["travel_hospitality"] == 1.25
    assert "always_on_local" not in effects  # effect 1 → no row
    # 4 July 2026 is a Saturday: the observed holiday is Friday 3 July
    assert any(
        r.startswith("public_holiday:") for r in rows(tiny, "baseline", "US", dt.date(2026, 7, 3))
    )
    assert any("Republic Day" in r for r in rows(tiny, "baseline", "IN", dt.date(2026, 1, 26)))
    assert rows(tiny, "baseline", "GB", dt.date(2026, 7, 4)) == {}


def test_paydays_and_bill_dates_are_business_days(tiny):
    # January 2026: 1st is New Year's Day (holiday), so bills fall due on Friday 2 January.
    assert "bills_due" in rows(tiny, "baseline", "US", dt.date(2026, 1, 2))
    # Last business day of January 2026 is Friday 30 January (31st is a Saturday).
    pay = rows(tiny, "baseline", "US", dt.date(2026, 1, 30))["payday"]
    assert dict(pay) == dict(load_catalogue().calendar.payday)
    assert "payday" not in rows(tiny, "baseline", "US", dt.date(2026, 1, 31))


def test_country_weekend_is_respected():
    catalogue = load_catalogue()
    cal = build_calendar(["SA"], catalogue)  # Saudi weekend: Friday and Saturday
    paydays = [
        r["local_date"]
        for r in cal.to_pylist()
        if r["reason"] == "payday" and r["scenario_id"] == "baseline" and r["demand_class"] == "*"
    ]
    assert paydays and all(d.weekday() not in (4, 5) for d in paydays)
    # July 2026 ends on a Friday: the Saudi payday is Thursday 30 July.
    assert dt.date(2026, 7, 30) in paydays


def test_campaigns_only_in_stress(tiny):
    bf = dt.date(2026, 11, 27)
    assert "campaign:black_friday" in rows(tiny, "stress", "DE", bf)
    assert "campaign:black_friday" not in rows(tiny, "baseline", "DE", bf)
    spring = rows(tiny, "stress", "JP", dt.date(2026, 3, 17))
    assert dict(spring["campaign:spring_sale"])["online_bursty"] == 2.0


@pytest.mark.parametrize(
    ("year", "expected"),
    [(2024, dt.date(2024, 11, 29)), (2025, dt.date(2025, 11, 28)), (2026, dt.date(2026, 11, 27))],
)
def test_black_friday_start(year, expected):
    start = CampaignStart(month=11, weekday=3, nth=4, offset_days=1)
    assert campaign_start(start, year) == expected
    assert campaign_start(CampaignStart(month=3, day=15), year) == dt.date(year, 3, 15)


def test_calendar_size_is_modest(tiny):
    assert tiny.calendar.num_rows < 50_000


# ----------------------------------------------------------------------------- multipliers
def test_multipliers_shape_and_defaults(tiny):
    m = series_day_multipliers(tiny, "baseline", dt.date(2026, 1, 1), 365)
    assert m.shape == (tiny.series.num_rows, 365) and m.dtype == np.float64
    assert (m > 0).all()
    assert np.median(m) == 1.0


def test_multipliers_by_slice_equal_the_whole_array(tiny):
    """The run computes the rows of a series chunk when it needs them: any slice (or index
    array) is the same rows of the whole array, bit for bit, and the table kept is per
    location, class and day — not per series."""
    whole = series_day_multipliers(tiny, "baseline", dt.date(2026, 1, 1), 365)
    lazy = day_multipliers(tiny, "baseline", dt.date(2026, 1, 1), 365)
    assert lazy.shape == whole.shape and len(lazy) == tiny.series.num_rows
    for lo, hi in [(0, 7), (7, 30), (30, tiny.series.num_rows), (5, 5)]:
        rows = lazy[lo:hi]
        assert rows.flags.c_contiguous and rows.dtype == np.float64
        assert np.array_equal(rows, whole[lo:hi])
    picked = np.array([9, 2, 2, tiny.series.num_rows - 1])  # an index array (any order)
    assert np.array_equal(lazy[picked], whole[picked])
    # [location, class or "*", day]: as many locations as (country, zone) pairs in use
    n_locations = len({(c, z) for c, z in zip(tiny.series["legal_country_iso"].to_pylist(),
                                              tiny.series["tzid"].to_pylist(), strict=True)})
    countries = len(set(tiny.series["legal_country_iso"].to_pylist()))
    assert lazy.factor.shape == (n_locations + countries, len(DEMAND_CLASSES) + 1, 365)
    with pytest.raises(TypeError):
        lazy[3]


def test_multipliers_follow_the_calendar_rows(tiny):
    us_rows, cls = series_rows(tiny, country="US")
    assert us_rows
    m = series_day_multipliers(tiny, "baseline", dt.date(2026, 1, 1), 31)
    mids = tiny.series["merchant_id"].to_pylist()
    holiday = dict(load_catalogue().calendar.public_holiday)
    for i in us_rows:
        c = cls[mids[i]]
        assert m[i, 0] == holiday.get(c, 1.0)  # New Year's Day
        payday = dict(load_catalogue().calendar.payday)
        assert m[i, 29] == pytest.approx(payday["*"] * payday.get(c, 1.0))  # payday
        assert m[i, 2] == 1.0  # Saturday 3 January: nothing


def test_products_star_rows_scenarios_and_ranges(tiny):
    series = tiny.series
    idx, cls = series_rows(tiny)
    first = 0
    mid = series["merchant_id"][first].as_py()
    cc = series["legal_country_iso"][first].as_py()
    c = cls[mid]
    d0 = dt.date(2026, 5, 4)
    calendar = [
        {
            "scenario_id": "baseline",
            "legal_country_iso": cc,
            "local_date": d0,
            "demand_class": c,
            "effect": 0.5,
            "reason": "a",
        },
        {
            "scenario_id": "baseline",
            "legal_country_iso": cc,
            "local_date": d0,
            "demand_class": c,
            "effect": 0.8,
            "reason": "b",
        },
        {
            "scenario_id": "baseline",
            "legal_country_iso": cc,
            "local_date": d0,
            "demand_class": "*",
            "effect": 1.5,
            "reason": "c",
        },
        {
            "scenario_id": "stress",
            "legal_country_iso": cc,
            "local_date": d0,
            "demand_class": "*",
            "effect": 3.0,
            "reason": "d",
        },
        {
            "scenario_id": "baseline",
            "legal_country_iso": cc,
            "local_date": d0 + dt.timedelta(days=1),
            "demand_class": "*",
            "effect": 0.0,
            "reason": "closed",
        },
        {
            "scenario_id": "baseline",
            "legal_country_iso": "ZZ",
            "local_date": d0,
            "demand_class": "*",
            "effect": 9.0,
            "reason": "elsewhere",
        },
        {
            "scenario_id": "baseline",
            "legal_country_iso": cc,
            "local_date": d0 - dt.timedelta(days=1),
            "demand_class": "*",
            "effect": 7.0,
            "reason": "before the window",
        },
    ]
    world = with_calendar(tiny, calendar)
    base = series_day_multipliers(world, "baseline", d0, 3)
    stress = series_day_multipliers(world, "stress", d0, 3)
    other_class = [
        i
        for i in idx
        if series["legal_country_iso"][i].as_py() == cc
        and cls[series["merchant_id"][i].as_py()] != c
    ]
    assert base[first].tolist() == [0.5 * 0.8 * 1.5, 0.0, 1.0]
    assert stress[first].tolist() == [3.0, 1.0, 1.0]
    for i in other_class:
        assert base[i].tolist() == [1.5, 0.0, 1.0]
    untouched = [i for i in idx if series["legal_country_iso"][i].as_py() != cc]
    assert (base[untouched] == 1.0).all()


def test_unknown_scenario(tiny):
    with pytest.raises(EngineError) as info:
        series_day_multipliers(tiny, "panic", dt.date(2026, 1, 1), 3)
    assert (info.value.code, info.value.table, info.value.key) == (
        "WORLD_UNKNOWN_SCENARIO",
        "scenarios",
        "panic",
    )


def test_stress_lifts_online_classes_during_campaigns(tiny):
    online, cls = series_rows(tiny, merchant_class="online_24h")
    d0 = dt.date(2026, 11, 27)
    base = series_day_multipliers(tiny, "baseline", d0, 4)
    stress = series_day_multipliers(tiny, "stress", d0, 4)
    if online:
        assert (stress[online] >= base[online] * 1.8 - 1e-12).all()
    assert (stress >= base - 1e-12).all()
