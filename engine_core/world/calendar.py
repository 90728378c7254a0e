"""The calendar table: multiplicative day effects per (scenario, country, local date, class).

Built by the generator from the ``holidays`` package (public holidays of each series country,
in English where the package has it), month paydays and bill dates computed from each
country's business days, and campaign windows for the scenarios that list them (docs/world.md).
``series_day_multipliers`` turns the table into one factor per (series, local date).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import holidays
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine_core.schemas import CALENDAR, CALENDAR_ALL_ZONES, DEMAND_CLASSES
from engine_core.world.model import World
from engine_core.world.presets import Campaign, CampaignStart, Catalogue, ZoneEntry

HOLIDAY_LANGUAGE = "en_US"
STAR = "*"
EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


def campaign_start(start: CampaignStart, year: int) -> dt.date:
    """First day of a campaign in ``year``: a fixed date or the nth weekday of a month."""
    if start.day is not None:
        first = dt.date(year, start.month, start.day)
    else:
        month_start = dt.date(year, start.month, 1)
        ahead = (start.weekday - month_start.weekday()) % 7
        first = month_start + dt.timedelta(days=ahead + 7 * (start.nth - 1))
    return first + dt.timedelta(days=start.offset_days)


def day_number(day: dt.date) -> int:
    """Days since 1970-01-01 (the date32 value of ``day``)."""
    return day.toordinal() - EPOCH_ORDINAL


def _business_month_ends(
    years: tuple[int, int], weekend: set[int], closed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Day numbers of the first and the last business day of every month of ``years``
    (business day: not a weekend day of the country, not a public holiday)."""
    days = np.arange(day_number(dt.date(years[0], 1, 1)), day_number(dt.date(years[1] + 1, 1, 1)))
    weekday = (days + EPOCH_WEEKDAY) % 7
    business = ~np.isin(weekday, sorted(weekend)) & ~np.isin(days, closed)
    month = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    open_days, open_month = days[business], month[business]
    _, first = np.unique(open_month, return_index=True)
    last = np.append(first[1:], open_month.size) - 1
    return open_days[first], open_days[last]


class _EffectRows:
    """Calendar rows accumulated as column blocks: one row per (day, class with effect != 1)."""

    def __init__(self) -> None:
        self._blocks: list[dict[str, np.ndarray]] = []

    def add(
        self,
        countries: np.ndarray | str,
        days: np.ndarray,
        reasons: np.ndarray | str,
        effects: dict[str, float],
        zone: str = CALENDAR_ALL_ZONES,
    ) -> None:
        items = [(c, float(e)) for c, e in effects.items() if e != 1.0]
        n, k = int(days.size), len(items)
        if n == 0 or k == 0:
            return

        def per_day(value: np.ndarray | str) -> np.ndarray:
            if isinstance(value, np.ndarray):
                return np.repeat(value, k)
            return np.full(n * k, value, dtype=object)

        self._blocks.append(
            {
                "legal_country_iso": per_day(countries),
                "tzid": per_day(zone),
                "local_date": np.repeat(days.astype(np.int32), k),
                "demand_class": np.tile(np.array([c for c, _ in items], dtype=object), n),
                "effect": np.tile(np.array([e for _, e in items], dtype=np.float64), n),
                "reason": per_day(reasons),
            }
        )

    def table(self, scenario_id: str) -> pa.Table:
        cols = {
            name: np.concatenate([b[name] for b in self._blocks])
            if self._blocks
            else np.zeros(0, dtype=np.int32 if name == "local_date" else object)
            for name in (
                "legal_country_iso", "tzid", "local_date", "demand_class", "effect", "reason"
            )
        }
        n = cols["effect"].size
        return pa.table(
            {
                "scenario_id": pa.array(np.full(n, scenario_id, dtype=object), pa.string()),
                "legal_country_iso": pa.array(cols["legal_country_iso"], pa.string()),
                "tzid": pa.array(cols["tzid"], pa.string()),
                "local_date": pa.array(cols["local_date"], pa.int32()).cast(pa.date32()),
                "demand_class": pa.array(cols["demand_class"], pa.string()),
                "effect": pa.array(cols["effect"].astype(np.float64), pa.float64()),
                "reason": pa.array(cols["reason"], pa.string()),
            },
            schema=CALENDAR,
        )


def _day_before(days: np.ndarray, closed: np.ndarray, first_day: int) -> np.ndarray:
    """The day before each of ``days`` that is not itself in ``closed`` and not before
    ``first_day`` (sorted, unique)."""
    before = np.unique(days - 1)
    return before[~np.isin(before, closed) & (before >= first_day)]


def add_country_days(
    rows: _EffectRows,
    country: str,
    catalogue: Catalogue,
    subdivisions: Sequence[tuple[str, str]] = (),
) -> None:
    """Public holidays, the days before them, bill dates and paydays of one country over the
    catalogue's years. ``subdivisions`` lists (tzid, subdivision) of the country's zones that
    have one: the holidays the ``holidays`` package knows for that subdivision only (not
    nationwide) become rows for that zone alone, with their own pre-holiday rows. Paydays
    and bill dates follow the national business days."""
    spec = catalogue.calendar
    years = range(spec.years[0], spec.years[1] + 1)
    hols = holidays.country_holidays(country, years=years, language=HOLIDAY_LANGUAGE)
    closed = sorted(d for d in hols if spec.years[0] <= d.year <= spec.years[1])
    closed_days = np.array([day_number(d) for d in closed], dtype=np.int64)
    reasons = np.array([f"public_holiday:{hols[d]}" for d in closed], dtype=object)
    rows.add(country, closed_days, reasons, dict(spec.public_holiday))
    first_day = day_number(dt.date(spec.years[0], 1, 1))
    rows.add(country, _day_before(closed_days, closed_days, first_day), "pre_holiday",
             dict(spec.pre_holiday))
    firsts, lasts = _business_month_ends(spec.years, set(hols.weekend), closed_days)
    rows.add(country, firsts, "bills_due", dict(spec.bills_due))
    rows.add(country, lasts, "payday", dict(spec.payday))
    national = set(closed)
    for tzid, subdivision in subdivisions:
        regional_hols = holidays.country_holidays(
            country, subdiv=subdivision, years=years, language=HOLIDAY_LANGUAGE
        )
        regional = sorted(
            d for d in regional_hols
            if d not in national and spec.years[0] <= d.year <= spec.years[1]
        )
        if not regional:
            continue
        days = np.array([day_number(d) for d in regional], dtype=np.int64)
        names = np.array(
            [f"public_holiday:{regional_hols[d]} ({country}-{subdivision})" for d in regional],
            dtype=object,
        )
        rows.add(country, days, names, dict(spec.public_holiday), zone=tzid)
        all_closed = np.union1d(days, closed_days)
        rows.add(country, _day_before(days, all_closed, first_day), "pre_holiday",
                 dict(spec.pre_holiday), zone=tzid)


def add_campaign(
    rows: _EffectRows, name: str, campaign: Campaign, countries: Sequence[str], years: range
) -> None:
    """Every day of the campaign window in each year, in every country."""
    starts = [day_number(campaign_start(campaign.start, y)) for y in years]
    days = (np.array(starts)[:, None] + np.arange(campaign.days)[None, :]).ravel()
    n_c = len(countries)
    rows.add(
        np.tile(np.array(countries, dtype=object), days.size),
        np.repeat(days, n_c),
        f"campaign:{name}",
        dict(campaign.effects),
    )


def build_calendar(
    countries: Sequence[str], catalogue: Catalogue, zones: Sequence[ZoneEntry] = ()
) -> pa.Table:
    """Calendar rows of every catalogue scenario for ``countries``: the public holidays (and
    the days before them), bill dates and paydays of each country in every scenario, the
    regional holidays of those ``zones`` that name a subdivision, plus the scenario's
    campaigns. Rows are unsorted; the world canonicalisation sorts them."""
    spec = catalogue.calendar
    years = range(spec.years[0], spec.years[1] + 1)
    countries = sorted(set(countries))
    common = _EffectRows()
    for country in countries:
        subdivisions = sorted(
            (z.tzid, z.subdivision) for z in zones
            if z.country == country and z.subdivision is not None
        )
        add_country_days(common, country, catalogue, subdivisions)
    parts = []
    for scenario in catalogue.scenarios:
        parts.append(common.table(scenario.scenario_id))
        campaigns = _EffectRows()
        for name in scenario.campaigns:
            add_campaign(campaigns, name, spec.campaigns[name], countries, years)
        parts.append(campaigns.table(scenario.scenario_id))
    return pa.concat_tables(parts)


class DayMultipliers:
    """The calendar factors of :func:`series_day_multipliers` computed for the series rows
    asked for (``mult[lo:hi]``, or ``mult[rows]`` with an index array): the table is
    [location, class, day], so the whole [series, day] array — 0.5 GB for a year of the large
    world — is never held. Rows are bit-identical to the full array's."""

    def __init__(self, factor: np.ndarray, loc_of_series: np.ndarray,
                 country_of_series: np.ndarray, class_of_series: np.ndarray) -> None:
        self.factor = factor
        self.loc = loc_of_series
        self.country = country_of_series
        self.cls = class_of_series
        self.shape = (len(loc_of_series), factor.shape[2])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        if not isinstance(rows, slice | np.ndarray):
            raise TypeError("day multipliers are read by a slice or an index array of series "
                            "rows")
        f, star = self.factor, self.factor.shape[1] - 1
        c, loc, k = self.country[rows], self.loc[rows], self.cls[rows]
        return np.ascontiguousarray(f[c, k] * f[c, star] * f[loc, k] * f[loc, star],
                                    dtype=np.float64)


def series_day_multipliers(
    world: World, scenario_id: str, first_local_date: dt.date, n_days: int
) -> np.ndarray:
    """float64 [n_series, n_days]: calendar factor of each series on each local date.

    Entry (i, d) is the product of the ``effect`` of every calendar row with the scenario,
    series i's ``legal_country_iso``, ``tzid`` equal to ``"*"`` or to series i's tzid, local
    date ``first_local_date + d`` and demand class equal to the class of series i's merchant
    or ``"*"``; 1.0 where no row matches. Rows are aligned with ``world.series``.
    """
    mult = day_multipliers(world, scenario_id, first_local_date, n_days)
    if isinstance(mult, np.ndarray):
        return mult
    return mult[:]


def day_multipliers(
    world: World, scenario_id: str, first_local_date: dt.date, n_days: int
) -> DayMultipliers | np.ndarray:
    """:func:`series_day_multipliers` as a :class:`DayMultipliers` whose rows are computed
    when sliced (an array of ones when there are no series or no days)."""
    world.scenario_band(scenario_id)  # WORLD_UNKNOWN_SCENARIO when absent
    if n_days < 0:
        raise ValueError("n_days must be >= 0")
    series = world.series
    merchants = world.merchants
    n_series = series.num_rows
    if n_series == 0 or n_days == 0:
        return np.ones((n_series, n_days), dtype=np.float64)

    idx = pc.index_in(series.column("merchant_id"), value_set=merchants.column("merchant_id"))
    series_class = merchants.column("demand_class").take(idx).to_numpy(zero_copy_only=False)
    series_country = series.column("legal_country_iso").to_numpy(zero_copy_only=False)
    series_zone = series.column("tzid").to_numpy(zero_copy_only=False)
    # a calendar row applies to a location: (country, "*") or (country, tzid)
    series_loc = np.char.add(np.char.add(series_country.astype(str), "|"), series_zone.astype(str))
    country_loc = np.char.add(series_country.astype(str), "|" + CALENDAR_ALL_ZONES)
    locations, inverse = np.unique(np.concatenate([series_loc, country_loc]), return_inverse=True)
    loc_of_series, country_of_series = inverse[:n_series], inverse[n_series:]
    class_of_series = np.array(
        [DEMAND_CLASSES.index(c) for c in series_class], dtype=np.int64
    ).reshape(-1)
    n_classes = len(DEMAND_CLASSES)

    cal = world.calendar
    first = (first_local_date - dt.date(1970, 1, 1)).days
    day = cal.column("local_date").cast(pa.int32()).to_numpy(zero_copy_only=False) - first
    keep = (
        np.asarray(pc.equal(cal.column("scenario_id"), scenario_id).to_numpy(zero_copy_only=False))
        & (day >= 0)
        & (day < n_days)
    )
    cal_country = cal.column("legal_country_iso").to_numpy(zero_copy_only=False)[keep]
    cal_zone = cal.column("tzid").to_numpy(zero_copy_only=False)[keep]
    cal_loc = np.char.add(np.char.add(cal_country.astype(str), "|"), cal_zone.astype(str))
    pos = np.minimum(np.searchsorted(locations, cal_loc), len(locations) - 1)
    in_world = locations[pos] == cal_loc
    cal_day = day[keep][in_world]
    cal_loc_idx = pos[in_world]
    cal_class = cal.column("demand_class").to_numpy(zero_copy_only=False)[keep][in_world]
    cal_effect = cal.column("effect").to_numpy(zero_copy_only=False)[keep][in_world]

    # factor[location, class, day]; class slot n_classes collects "*" rows.
    factor = np.ones((len(locations), n_classes + 1, n_days), dtype=np.float64)
    class_slot = np.array(
        [n_classes if c == STAR else DEMAND_CLASSES.index(c) for c in cal_class], dtype=np.int64
    )
    np.multiply.at(factor, (cal_loc_idx, class_slot, cal_day), cal_effect)
    return DayMultipliers(factor, loc_of_series, country_of_series, class_of_series)
