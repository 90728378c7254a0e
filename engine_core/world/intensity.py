"""Target intensity of a world, vectorised per zone, and the realism figures derived from it.

``λ(series, B) = scale / Σshape × shape[local hour-of-week of B's start] × calendar(local date)``
(SPEC §4) for hourly buckets. Local time comes from ``engine_core.tz`` (the tzdata package's
rules); hour-of-week counts from Monday 00:00 local, so with 1970-01-01 a Thursday,
``how = (floor(local_s / 3600) + 72) mod 168``.

This is a plain numpy reference used to describe and calibrate worlds (expected arrivals,
share of series-hours with no arrival, zone concentration, virtual share); the states use
their own kernels.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pyarrow.compute as pc

from engine_core.config import Policy
from engine_core.schemas import HOURS_PER_WEEK
from engine_core.timebase import EPOCH, SECONDS_PER_DAY, US_PER_S
from engine_core.tz import build_tz_tables, to_local_us
from engine_core.world.calendar import series_day_multipliers
from engine_core.world.model import World

SECONDS_PER_HOUR = 3600
EPOCH_HOUR_OF_WEEK = 72  # 1970-01-01 00:00 is Thursday 00:00: hour 72 of a Monday-first week


def _utc_seconds(t: dt.datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("horizon instants must be timezone-aware (UTC)")
    return int((t - EPOCH).total_seconds())


def local_hour_of_week(local_s: np.ndarray) -> np.ndarray:
    """Hour of the week (Monday 00:00 = 0) of local wall-clock seconds since 1970-01-01."""
    return (np.floor_divide(local_s, SECONDS_PER_HOUR) + EPOCH_HOUR_OF_WEEK) % HOURS_PER_WEEK


@dataclass(frozen=True)
class Horizon:
    """Hourly UTC buckets [start, start + n_hours·1 h)."""

    start: dt.datetime
    n_hours: int

    @property
    def start_s(self) -> int:
        return _utc_seconds(self.start)

    def bucket_starts_s(self) -> np.ndarray:
        return self.start_s + SECONDS_PER_HOUR * np.arange(self.n_hours, dtype=np.int64)


class ZoneClock:
    """Local hour-of-week and local-day index of each bucket of a horizon, per zone."""

    def __init__(self, tzids: list[str], horizon: Horizon) -> None:
        starts = horizon.bucket_starts_s()
        years = [horizon.start.year, (horizon.start + dt.timedelta(hours=horizon.n_hours)).year]
        tables = build_tz_tables(tzids, min(years), max(years))
        self.tzids = tzids
        self.first_local_day = horizon.start_s // SECONDS_PER_DAY - 1
        self.n_days = horizon.n_hours // 24 + 3
        self._how = {}
        self._day = {}
        for z, tz in enumerate(tzids):
            local_us = to_local_us(tables, np.int64(z), starts * US_PER_S)
            local_s = np.floor_divide(local_us, US_PER_S)
            self._how[tz] = local_hour_of_week(local_s)
            self._day[tz] = np.floor_divide(local_s, SECONDS_PER_DAY) - self.first_local_day

    def hour_of_week(self, tz: str) -> np.ndarray:
        return self._how[tz]

    def day_index(self, tz: str) -> np.ndarray:
        return self._day[tz]

    @property
    def first_local_date(self) -> dt.date:
        return dt.date(1970, 1, 1) + dt.timedelta(days=int(self.first_local_day))


def _series_arrays(world: World) -> tuple[np.ndarray, np.ndarray]:
    series = world.series
    shape = (
        series.column("shape")
        .combine_chunks()
        .flatten()
        .to_numpy(zero_copy_only=False)
        .reshape(-1, HOURS_PER_WEEK)
    )
    scale = series.column("scale").to_numpy()
    return shape, scale / shape.sum(axis=1)


def hourly_lambda(
    world: World, scenario_id: str, horizon: Horizon, rows: np.ndarray | None = None
) -> np.ndarray:
    """float64 [len(rows), n_hours]: λ of the chosen series (all by default) per hour."""
    rows = np.arange(world.series.num_rows) if rows is None else np.asarray(rows)
    shape, norm = _series_arrays(world)
    tzids_all = np.asarray(world.series.column("tzid").to_pylist(), dtype=object)
    tzids = sorted(set(tzids_all[rows].tolist()))
    clock = ZoneClock(tzids, horizon)
    mult = series_day_multipliers(world, scenario_id, clock.first_local_date, clock.n_days)
    out = np.empty((rows.size, horizon.n_hours), dtype=np.float64)
    for tz in tzids:
        sel = np.flatnonzero(tzids_all[rows] == tz)
        r = rows[sel]
        out[sel] = (
            norm[r, None] * shape[r][:, clock.hour_of_week(tz)] * mult[r][:, clock.day_index(tz)]
        )
    return out


@dataclass(frozen=True)
class IntensitySummary:
    """Realism figures of a world over a horizon (hourly buckets, no latent factor)."""

    scenario_id: str
    start: dt.datetime
    n_hours: int
    n_series: int
    expected_arrivals: float
    zero_share: float  # mean over series-hours of P(N = 0) under the policy's count law
    top10_tz_share: float
    virtual_share: float  # VIRTUAL_ONLY + p_virtual_hybrid × HYBRID, share of arrivals
    weekend_share: float  # share of arrivals on local Saturday/Sunday
    tz_arrivals: dict[str, float] = field(default_factory=dict)
    mode_arrivals: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "scenario_id": self.scenario_id,
            "start": self.start.isoformat(),
            "n_hours": self.n_hours,
            "n_series": self.n_series,
            "expected_arrivals": self.expected_arrivals,
            "zero_share": self.zero_share,
            "top10_tz_share": self.top10_tz_share,
            "virtual_share": self.virtual_share,
            "weekend_share": self.weekend_share,
            "mode_arrivals": dict(self.mode_arrivals),
        }


def series_kappa(world: World, scenario_id: str, policy: Policy) -> np.ndarray:
    """κ of each series: clamp(kappa_base[band] × kappa_class_multiplier[class], bounds)."""
    band = world.scenario_band(scenario_id)
    merchants = world.merchants
    idx = pc.index_in(world.series.column("merchant_id"), merchants.column("merchant_id"))
    classes = merchants.column("demand_class").take(idx).to_pylist()
    base = getattr(policy.counts.kappa_base, band)
    lo, hi = policy.counts.kappa_bounds
    per_class = {
        c: min(max(base * policy.counts.kappa_class_multiplier.of(c), lo), hi) for c in set(classes)
    }
    return np.array([per_class[c] for c in classes], dtype=np.float64)


def intensity_summary(
    world: World, scenario_id: str, horizon: Horizon, policy: Policy
) -> IntensitySummary:
    """Expected arrivals and realism figures of ``world`` over ``horizon`` (per zone, so the
    memory is one zone's series × hours at a time)."""
    shape, norm = _series_arrays(world)
    series = world.series
    tzids_all = np.asarray(series.column("tzid").to_pylist(), dtype=object)
    tzids = sorted(set(tzids_all.tolist()))
    clock = ZoneClock(tzids, horizon)
    mult = series_day_multipliers(world, scenario_id, clock.first_local_date, clock.n_days)
    kappa = series_kappa(world, scenario_id, policy)
    poisson = policy.counts.law == "poisson"
    merchants = world.merchants
    idx = pc.index_in(series.column("merchant_id"), merchants.column("merchant_id"))
    modes = np.asarray(merchants.column("virtual_mode").take(idx).to_pylist(), dtype=object)

    series_total = np.zeros(series.num_rows)
    zero_sum = 0.0
    weekend = 0.0
    tz_arrivals: dict[str, float] = {}
    for tz in tzids:
        rows = np.flatnonzero(tzids_all == tz)
        how = clock.hour_of_week(tz)
        lam = norm[rows, None] * shape[rows][:, how] * mult[rows][:, clock.day_index(tz)]
        if poisson:
            p0 = np.exp(-lam)
        else:
            k = kappa[rows, None]
            p0 = np.exp(k * np.log(k / (k + lam)))
        zero_sum += float(p0.sum())
        series_total[rows] = lam.sum(axis=1)
        weekend += float(lam[:, how >= 120].sum())
        tz_arrivals[tz] = float(series_total[rows].sum())

    total = float(series_total.sum())
    mode_arrivals = {m: float(series_total[modes == m].sum()) for m in sorted(set(modes))}
    virtual = mode_arrivals.get("VIRTUAL_ONLY", 0.0) + policy.routing.p_virtual_hybrid * (
        mode_arrivals.get("HYBRID", 0.0)
    )
    ranked = sorted(tz_arrivals.values(), reverse=True)
    return IntensitySummary(
        scenario_id=scenario_id,
        start=horizon.start,
        n_hours=horizon.n_hours,
        n_series=series.num_rows,
        expected_arrivals=total,
        zero_share=zero_sum / (series.num_rows * horizon.n_hours),
        top10_tz_share=sum(ranked[:10]) / total,
        virtual_share=virtual / total,
        weekend_share=weekend / total,
        tz_arrivals=dict(sorted(tz_arrivals.items(), key=lambda kv: -kv[1])),
        mode_arrivals=mode_arrivals,
    )
