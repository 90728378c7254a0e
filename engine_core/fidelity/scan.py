"""Streaming aggregates of one published partition, for the fidelity report.

Every dataset is read one row group at a time with only the columns needed, and folded into
fixed-size arrays (classes × hours of week, merchants, locations × local days, series ×
hours of week, a few latent groups × hours), so memory does not grow with the number of
arrivals. Also the same aggregates of the *target* intensity λ of the world, computed zone by
zone in chunks of series.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine_core.checks.world_index import boolean, i64, u64
from engine_core.errors import EngineError
from engine_core.fidelity.fold import fold_events
from engine_core.io.files import dataset_files, filesystem_for, join_path
from engine_core.kernels.parallel import side_pool
from engine_core.kernels.parallel import threads as parallel_threads
from engine_core.schemas import CALENDAR_ALL_ZONES, DEMAND_CLASSES, HOURS_PER_WEEK
from engine_core.timebase import US_PER_S
from engine_core.tz import zoneinfo_from_tzdata
from engine_core.world.calendar import day_multipliers
from engine_core.world.intensity import Horizon, ZoneClock
from engine_core.world.model import World

US_PER_HOUR = 3600 * US_PER_S
# a run's directory: <root>/<world_fp[:12]>/<parameter_hash[:12]>/seed=<seed>
RUN_DIR_RE = re.compile(r"([0-9a-f]{12})/([0-9a-f]{12})/seed=\d+")
SERIES_CHUNK = 256
Progress = Callable[[str], None]


def row_groups(path: str, columns: list[str]) -> Iterator[pa.Table]:
    """Every row group of every part file under ``path``, ``columns`` only."""
    fs, _ = filesystem_for(path)
    for name in dataset_files(path):
        with fs.open_input_file(name) as handle:
            pf = pq.ParquetFile(handle)
            for g in range(pf.metadata.num_row_groups):
                yield pf.read_row_group(g, columns=columns)


def _each_row_group(path: str, columns: list[str], fold: Callable[[pa.Table], object],
                    threads: int | None = None) -> Iterator[object]:
    """``fold`` of every row group of every part file under ``path`` (``columns`` only), in
    order, the row groups read and folded on ``threads`` threads (default: the engine's)."""
    fs, _ = filesystem_for(path)
    tasks = []
    for name in dataset_files(path):
        with fs.open_input_file(name) as handle:
            n_groups = pq.ParquetFile(handle).metadata.num_row_groups
        tasks += [(name, g) for g in range(n_groups)]

    def one(task: tuple[str, int]) -> object:
        name, g = task
        with fs.open_input_file(name) as handle:
            return fold(pq.ParquetFile(handle).read_row_group(g, columns=columns,
                                                                use_threads=False))

    n_threads = max(1, min(threads or parallel_threads(), len(tasks) or 1))
    with side_pool(n_threads, "fidelity-scan") as pool:
        # at most a few row groups ahead of the consumer
        pending: list = []
        for task in tasks:
            pending.append(pool.submit(one, task))
            if len(pending) > 2 * n_threads:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def partition_dir(run_dir: str, dataset: str, scenario: str, year: int) -> str:
    return join_path(run_dir, dataset, f"scenario={scenario}", f"year={year:04d}")


def horizon_of(run_dir: str, scenario: str, year: int) -> Horizon:
    """The horizon of partition (scenario, year) of the run under ``run_dir``, from its
    published time grid."""
    path = partition_dir(run_dir, "time_grid", scenario, year)
    if not dataset_files(path):
        raise EngineError(
            "FIDELITY_RUN_NOT_FOUND",
            f"{path} holds no time grid: is {run_dir} the `out` of a run of scenario "
            f"{scenario!r} that covered {year}?",
            key=path,
        )
    starts = np.concatenate(
        [t.column("bucket_start_utc").cast("int64").to_numpy() for t in
         row_groups(path, ["bucket_start_utc"])]
    )
    lo, n = int(starts.min()), int(starts.size)
    return Horizon(dt.datetime.fromtimestamp(lo // US_PER_S, dt.UTC), n)


# ----------------------------------------------------------------------------- world frame
@dataclass
class WorldFrame:
    """Index arrays of a world over a horizon: series, classes, locations, zones, clocks."""

    world: World
    scenario: str
    horizon: Horizon
    p_virtual_hybrid: float
    merchant_ids: np.ndarray = field(init=False)  # sorted u64
    merchant_class: np.ndarray = field(init=False)  # class index per sorted merchant
    series_class: np.ndarray = field(init=False)
    series_zone: np.ndarray = field(init=False)  # index into zones
    series_loc: np.ndarray = field(init=False)  # index into locations
    series_physical: np.ndarray = field(init=False)  # share of a series' arrivals at sites
    zones: list[str] = field(init=False)
    locations: list[tuple[str, str]] = field(init=False)
    clock: ZoneClock = field(init=False)

    def __post_init__(self) -> None:
        w = self.world
        m = w.merchants
        mid = m.column("merchant_id").to_numpy()
        order = np.argsort(mid, kind="stable")
        self.merchant_ids = mid[order]
        classes = np.array([DEMAND_CLASSES.index(c) for c in m.column("demand_class").to_pylist()])
        self.merchant_class = classes[order]
        modes = np.asarray(m.column("virtual_mode").to_pylist(), dtype=object)[order]
        s = w.series
        s_mid = s.column("merchant_id").to_numpy()
        pos = np.searchsorted(self.merchant_ids, s_mid)
        self.series_class = self.merchant_class[pos]
        s_mode = modes[pos]
        self.series_physical = np.where(
            s_mode == "VIRTUAL_ONLY", 0.0,
            np.where(s_mode == "HYBRID", 1.0 - self.p_virtual_hybrid, 1.0),
        )
        tz = s.column("tzid").to_pylist()
        cc = s.column("legal_country_iso").to_pylist()
        self.zones = sorted(set(tz))
        zone_idx = {z: i for i, z in enumerate(self.zones)}
        self.series_zone = np.array([zone_idx[z] for z in tz], dtype=np.int64)
        self.locations = sorted(set(zip(cc, tz, strict=True)))
        loc_idx = {k: i for i, k in enumerate(self.locations)}
        self.series_loc = np.array(
            [loc_idx[k] for k in zip(cc, tz, strict=True)], dtype=np.int64
        )
        self.clock = ZoneClock(self.zones, self.horizon)

    @property
    def n_days(self) -> int:
        return self.clock.n_days

    def merchant_index(self, merchant_id: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.merchant_ids, merchant_id)
        pos = np.minimum(pos, self.merchant_ids.size - 1)
        return np.where(self.merchant_ids[pos] == merchant_id, pos, -1)

    def location_lookup(self) -> dict[str, int]:
        return {f"{c}|{z}": i for i, (c, z) in enumerate(self.locations)}

    def series_frame(self) -> pl.DataFrame:
        s = self.world.series
        return pl.DataFrame(
            {
                "merchant_id": s.column("merchant_id").to_numpy(),
                "legal_country_iso": s.column("legal_country_iso").to_pylist(),
                "zone_tzid": s.column("tzid").to_pylist(),
                "channel_group": s.column("channel_group").to_pylist(),
                "series": np.arange(s.num_rows, dtype=np.int64),
            }
        )

    def calendar_flags(self) -> dict[str, np.ndarray]:
        """Boolean [locations, days] masks of the kinds of calendar day of the scenario:
        ``payday``, ``bills_due``, ``pre_holiday``, ``holiday`` (nationwide),
        ``regional_holiday`` (in its zone), ``regional_elsewhere`` (the country's other
        locations on a regional holiday), ``campaign``, and ``any`` (some row applies)."""
        n_loc, n_days = len(self.locations), self.n_days
        kinds = ("payday", "bills_due", "pre_holiday", "holiday", "regional_holiday",
                 "regional_elsewhere", "campaign", "any")
        flags = {k: np.zeros((n_loc, n_days), dtype=bool) for k in kinds}
        cal = self.world.calendar
        cal = cal.filter(pc.equal(cal.column("scenario_id"), self.scenario))
        first = self.clock.first_local_day
        by_country: dict[str, list[int]] = {}
        for i, (c, _z) in enumerate(self.locations):
            by_country.setdefault(c, []).append(i)
        loc_idx = {k: i for i, k in enumerate(self.locations)}
        rows = zip(
            cal.column("legal_country_iso").to_pylist(),
            cal.column("tzid").to_pylist(),
            cal.column("local_date").cast(pa.int32()).to_pylist(),
            cal.column("reason").to_pylist(),
            strict=True,
        )
        for country, zone, day, reason in rows:
            d = day - first
            if not 0 <= d < n_days or country not in by_country:
                continue
            if zone == CALENDAR_ALL_ZONES:
                locs = by_country[country]
            elif (country, zone) in loc_idx:
                locs = [loc_idx[(country, zone)]]
            else:
                continue
            kind = reason.split(":", 1)[0]
            if kind == "public_holiday":
                if zone == CALENDAR_ALL_ZONES:
                    flags["holiday"][locs, d] = True
                else:
                    flags["regional_holiday"][locs, d] = True
                    others = [i for i in by_country[country] if i not in locs]
                    flags["regional_elsewhere"][others, d] = True
            elif kind in flags:
                flags[kind][locs, d] = True
            flags["any"][locs, d] = True
        # Where the world has no payday rows at all, the published payday (the last business
        # day of the month: Monday-Friday, not a public holiday) is where one is looked for.
        without = [i for i in range(n_loc) if not flags["payday"][i].any()]
        if without:
            local_day = first + np.arange(n_days)
            weekday = (local_day + 3) % 7  # 1970-01-01 was a Thursday
            month = local_day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
            for i in without:
                open_day = (weekday < 5) & ~flags["holiday"][i] & ~flags["regional_holiday"][i]
                for mth in np.unique(month):
                    days = np.flatnonzero(open_day & (month == mth))
                    # only months whose last day lies inside the horizon
                    if days.size and (month[-1] > mth):
                        flags["payday"][i, days[-1]] = True
        return flags


class SeriesKeys:
    """The world's series index of rows keyed (merchant_id, legal_country_iso, zone_tzid,
    channel_group), −1 for a key the world lacks: each key as one integer over the world's
    vocabularies, looked up in the sorted keys of the series."""

    COLUMNS = ("legal_country_iso", "zone_tzid", "channel_group")
    WORLD_COLUMNS = ("legal_country_iso", "tzid", "channel_group")  # of the series table

    def __init__(self, frame: WorldFrame) -> None:
        s = frame.world.series
        self.merchant_ids = frame.merchant_ids
        world = [s.column(c).to_pylist() for c in self.WORLD_COLUMNS]
        self.vocab = [sorted(set(values)) for values in world]
        self.index = [{v: i for i, v in enumerate(vals)} for vals in self.vocab]
        codes = [np.array([ix[v] for v in values], dtype=np.int64)
                 for values, ix in zip(world, self.index, strict=True)]
        key = self._key(np.searchsorted(self.merchant_ids, s.column("merchant_id").to_numpy()),
                        codes)
        self.order = np.argsort(key, kind="stable")
        self.sorted_keys = key[self.order]

    def _key(self, merchant_pos: np.ndarray, codes: list[np.ndarray]) -> np.ndarray:
        key = merchant_pos.astype(np.int64)
        for c, vals in zip(codes, self.vocab, strict=True):
            key = key * (len(vals) + 1) + c
        return key

    def series_of(self, t: pa.Table) -> np.ndarray:
        mid = u64(t.column("merchant_id"))
        pos = np.searchsorted(self.merchant_ids, mid)
        pos = np.minimum(pos, self.merchant_ids.size - 1)
        known = self.merchant_ids[pos] == mid
        codes = []
        for name, ix in zip(self.COLUMNS, self.index, strict=True):
            row_codes, values = _dictionary(t.column(name))
            to_world = np.array([ix.get(v, -1) for v in values] or [-1], dtype=np.int64)
            c = to_world[row_codes]
            known &= c >= 0
            codes.append(c)
        key = self._key(pos, codes)
        at = np.minimum(np.searchsorted(self.sorted_keys, key), self.sorted_keys.size - 1)
        found = known & (self.sorted_keys[at] == key)
        return np.where(found, self.order[at], -1)


# ----------------------------------------------------------------------------- target λ
@dataclass
class TargetAggregates:
    class_how: np.ndarray  # [classes, 168] expected physical arrivals by local hour of week
    loc_day: np.ndarray  # [locations, days] expected physical arrivals, calendar included
    loc_day_plain: np.ndarray  # the same without calendar effects
    group_hours: np.ndarray  # [groups, 2, hours] λ of each half of the chosen latent groups


def target_aggregates(
    frame: WorldFrame, member_slot: np.ndarray, n_groups: int, progress: Progress | None = None
) -> TargetAggregates:
    """Aggregates of the target intensity λ (no latent factor) over the horizon.

    ``member_slot`` [series]: 2·group + half for the series of the chosen latent groups, −1
    for the others."""
    world, horizon, clock = frame.world, frame.horizon, frame.clock
    s = world.series
    shape = (s.column("shape").combine_chunks().flatten().to_numpy(zero_copy_only=False)
             .reshape(-1, HOURS_PER_WEEK))
    norm = s.column("scale").to_numpy() / shape.sum(axis=1)
    # rows computed per chunk of series, never the [series, day] array
    mult = day_multipliers(world, frame.scenario, clock.first_local_date, clock.n_days)
    n_h, n_days = horizon.n_hours, clock.n_days
    class_how = np.zeros((len(DEMAND_CLASSES), HOURS_PER_WEEK))
    loc_day = np.zeros((len(frame.locations), n_days))
    loc_day_plain = np.zeros_like(loc_day)
    group_hours = np.zeros((n_groups * 2, n_h))
    for z, tz in enumerate(frame.zones):
        how, day = clock.hour_of_week(tz), clock.day_index(tz)
        rows_all = np.flatnonzero(frame.series_zone == z)
        for start in range(0, rows_all.size, SERIES_CHUNK):
            rows = rows_all[start : start + SERIES_CHUNK]
            plain = norm[rows, None] * shape[rows][:, how]
            lam = plain * mult[rows][:, day]
            phys = frame.series_physical[rows]
            # sum the series of a class (a location) first, then their hours by hour of
            # week (local day): a few rows of hours instead of every series'
            for c, hours in _summed(frame.series_class[rows], phys, lam):
                class_how[c] += np.bincount(how, hours, HOURS_PER_WEEK)
            for loc, hours in _summed(frame.series_loc[rows], phys, lam):
                loc_day[loc] += np.bincount(day, hours, n_days)
            for loc, hours in _summed(frame.series_loc[rows], phys, plain):
                loc_day_plain[loc] += np.bincount(day, hours, n_days)
            slot = member_slot[rows]
            if (slot >= 0).any():
                np.add.at(group_hours, slot[slot >= 0], lam[slot >= 0])
        if progress and ((z + 1) % 20 == 0 or z + 1 == len(frame.zones)):
            progress(f"target intensity: zone {z + 1}/{len(frame.zones)}")
    return TargetAggregates(
        class_how, loc_day, loc_day_plain, group_hours.reshape(n_groups, 2, n_h)
    )


def _summed(keys: np.ndarray, weight: np.ndarray, values: np.ndarray
            ) -> Iterator[tuple[int, np.ndarray]]:
    """(key, Σ weight·values over the rows of that key) for each distinct key of ``keys``."""
    distinct, inverse = np.unique(keys, return_inverse=True)
    pick = np.zeros((distinct.size, keys.size))
    pick[inverse, np.arange(keys.size)] = weight
    yield from zip(distinct.tolist(), pick @ values, strict=True)


# ----------------------------------------------------------------------------- DST
@dataclass(frozen=True)
class Transition:
    utc_us: int
    before_us: int  # UTC offset before, µs
    after_us: int


def transitions(tzid: str, start_s: int, end_s: int) -> list[Transition]:
    """UTC offset changes of ``tzid`` in [start_s, end_s), from Python's zoneinfo over the
    tzdata package (not the engine's own tables), located to the second by bisection."""
    zone = zoneinfo_from_tzdata(tzid)

    def offset(t: int) -> int:
        u = dt.datetime.fromtimestamp(t, dt.UTC).astimezone(zone).utcoffset()
        return int(u.total_seconds())

    out: list[Transition] = []
    step = 6 * 3600
    t, cur = start_s, offset(start_s)
    while t < end_s:
        nxt = min(t + step, end_s)
        off = offset(nxt) if nxt < end_s else cur
        if off != cur:
            lo, hi = t, nxt
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if offset(mid) == cur:
                    lo = mid
                else:
                    hi = mid
            out.append(Transition(hi * US_PER_S, cur * US_PER_S, off * US_PER_S))
            cur = off
        t = nxt
    return out


# ----------------------------------------------------------------------------- events
@dataclass
class EventAggregates:
    class_how: np.ndarray  # [classes, 168] physical arrivals by local hour of week
    merchant_total: np.ndarray  # [merchants (sorted ids)] all arrivals
    loc_day: np.ndarray  # [locations, days] physical arrivals by local date
    dst_gap: dict[str, int]  # arrivals whose local time lies in a spring-forward gap
    dst_fold: dict[str, list[int]]  # per fall-back: [first occurrence, second occurrence]
    events: int = 0


EVENT_SCAN_COLUMNS = ["merchant_id", "legal_country_iso", "zone_tzid", "ts_utc", "tzid",
                      "ts_local", "is_virtual"]


def _dictionary(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
    """Codes and values of a string column (dictionary-encoded or not)."""
    arr = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()  # one chunk: no copy
    if not pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_encode()
    codes = arr.indices.to_numpy(zero_copy_only=False)
    return codes, [str(v) for v in arr.dictionary.to_pylist()]


@dataclass
class _Tallies:
    class_how: np.ndarray
    merchant_total: np.ndarray
    loc_day: np.ndarray
    dst: dict[str, list[int]] = field(default_factory=dict)  # label -> [gap, first, second]
    events: int = 0

    def add(self, other: _Tallies) -> None:
        self.class_how += other.class_how
        self.merchant_total += other.merchant_total
        self.loc_day += other.loc_day
        for label, v in other.dst.items():
            mine = self.dst.setdefault(label, [0, 0, 0])
            for j in range(3):
                mine[j] += v[j]
        self.events += other.events


class _Zones:
    """DST transitions of each tzid met, computed once (thread-safe)."""

    def __init__(self, start_s: int, end_s: int) -> None:
        self.start_s, self.end_s = start_s, end_s
        self._lock = threading.Lock()
        self._trans: dict[str, list[tuple[str, Transition]]] = {}
        self.gaps: set[str] = set()  # labels of the spring-forward transitions met

    def of(self, name: str) -> list[tuple[str, Transition]]:
        with self._lock:
            if name not in self._trans:
                labelled = []
                for tr in transitions(name, self.start_s, self.end_s):
                    when = dt.datetime.fromtimestamp(tr.utc_us // US_PER_S, dt.UTC)
                    label = f"{name}@{when:%Y-%m-%dT%H:%MZ}"
                    labelled.append((label, tr))
                    if tr.after_us > tr.before_us:
                        self.gaps.add(label)
                self._trans[name] = labelled
            return self._trans[name]


class LocationGrid:
    """Location index of every (legal_country_iso, zone_tzid) pair of a frame, and the table
    of one row group's dictionary codes into it (−1: not a location of the world)."""

    def __init__(self, frame: WorldFrame) -> None:
        countries = sorted({c for c, _ in frame.locations})
        zones = sorted({z for _, z in frame.locations})
        self.country = {c: i for i, c in enumerate(countries)}
        self.zone = {z: i for i, z in enumerate(zones)}
        # one spare row and column of −1 for the names the world does not have
        self.grid = np.full((len(countries) + 1, len(zones) + 1), -1, dtype=np.int64)
        for i, (c, z) in enumerate(frame.locations):
            self.grid[self.country[c], self.zone[z]] = i

    def of_codes(self, cc_names: list[str], zone_names: list[str]) -> np.ndarray:
        """[country codes, zone codes] → location index."""
        spare_c, spare_z = self.grid.shape[0] - 1, self.grid.shape[1] - 1
        ci = np.array([self.country.get(c, spare_c) for c in cc_names], dtype=np.int64)
        zi = np.array([self.zone.get(z, spare_z) for z in zone_names], dtype=np.int64)
        return np.ascontiguousarray(self.grid[np.ix_(ci, zi)])


def _fold_row_group(t: pa.Table, frame: WorldFrame, zones: _Zones,
                    locations: LocationGrid, out: _Tallies) -> None:
    cc, cc_names = _dictionary(t.column("legal_country_iso"))
    zc, zone_names = _dictionary(t.column("zone_tzid"))
    tc, tz_names = _dictionary(t.column("tzid"))
    loc_of = locations.of_codes(cc_names, zone_names)
    labels: list[str] = []
    tr_start = [0]
    lo, hi, before, after = [], [], [], []
    for name in tz_names:
        for label, tr in zones.of(name):
            labels.append(label)
            lo.append(tr.utc_us + min(tr.before_us, tr.after_us))
            hi.append(tr.utc_us + max(tr.before_us, tr.after_us))
            before.append(tr.before_us)
            after.append(tr.after_us)
        tr_start.append(len(labels))
    dst = np.zeros((len(labels), 3), dtype=np.int64)
    as_i64 = np.int64
    fold_events(
        u64(t.column("merchant_id")),
        i64(t.column("ts_local")), i64(t.column("ts_utc")),
        boolean(t.column("is_virtual")),
        cc, zc, tc, loc_of, frame.merchant_ids, frame.merchant_class.astype(as_i64),
        frame.clock.first_local_day, frame.n_days,
        np.array(tr_start, as_i64), np.array(lo, as_i64), np.array(hi, as_i64),
        np.array(before, as_i64), np.array(after, as_i64),
        out.class_how, out.merchant_total, out.loc_day, dst,
    )
    for k, label in enumerate(labels):
        mine = out.dst.setdefault(label, [0, 0, 0])
        for j in range(3):
            mine[j] += int(dst[k, j])
    out.events += t.num_rows


class EventTally:
    """The fidelity report's tallies of arrival rows, fed one table of rows at a time: by
    :func:`scan_events`, or as the rider of another pass over the same rows (the S4 rules'
    scan, so that the events are decoded once; engine_core/fidelity/tallies.py). Every tally
    is an integer count, so the result does not depend on how the rows are cut or ordered."""

    def __init__(self, frame: WorldFrame) -> None:
        self.frame = frame
        start_s = frame.horizon.start_s
        self.zones = _Zones(start_s, start_s + 3600 * frame.horizon.n_hours)
        self.locations = LocationGrid(frame)
        self.total = self.empty()
        self._lock = threading.Lock()

    def empty(self) -> _Tallies:
        f = self.frame
        return _Tallies(np.zeros(len(DEMAND_CLASSES) * HOURS_PER_WEEK, np.int64),
                        np.zeros(f.merchant_ids.size, np.int64),
                        np.zeros(len(f.locations) * f.n_days, np.int64))

    def fold(self, t: pa.Table) -> _Tallies:
        """The tallies of the rows of ``t`` alone."""
        out = self.empty()
        _fold_row_group(t, self.frame, self.zones, self.locations, out)
        return out

    def add(self, part: _Tallies) -> None:
        with self._lock:
            self.total.add(part)

    def __call__(self, t: pa.Table) -> None:
        """Add the rows of ``t`` (any of the columns :data:`EVENT_SCAN_COLUMNS`) to the total."""
        with self._lock:
            _fold_row_group(t, self.frame, self.zones, self.locations, self.total)

    @property
    def events(self) -> int:
        return self.total.events

    def aggregates(self) -> EventAggregates:
        total = self.total
        n_cls = len(DEMAND_CLASSES)
        gap = {k: v[0] for k, v in total.dst.items() if k in self.zones.gaps}
        fold = {k: [v[1], v[2]] for k, v in total.dst.items() if k not in self.zones.gaps}
        return EventAggregates(
            total.class_how.astype(np.float64).reshape(n_cls, HOURS_PER_WEEK),
            total.merchant_total.astype(np.float64),
            total.loc_day.astype(np.float64).reshape(len(self.frame.locations),
                                                     self.frame.n_days),
            gap, fold, total.events,
        )


def scan_events(frame: WorldFrame, path: str, progress: Progress | None = None,
                threads: int | None = None) -> EventAggregates:
    """One pass over ``arrival_events`` of the partition: each row group folded by
    :func:`fold_events`, the row groups spread over ``threads`` threads (default: the
    engine's thread setting). The tallies are integer counts, so the result does not depend
    on the threads."""
    tally = EventTally(frame)
    told = -1
    for i, part in enumerate(_each_row_group(path, EVENT_SCAN_COLUMNS, tally.fold, threads)):
        tally.add(part)
        if progress and i % 50 == 0:
            progress(f"arrival_events: {tally.events:,} rows read")
            told = tally.events
    if progress and told != tally.events:
        progress(f"arrival_events: {tally.events:,} rows read")
    return tally.aggregates()


# ----------------------------------------------------------------------------- bucket counts
@dataclass
class CountAggregates:
    sum_n: np.ndarray  # [series, 168]
    sum_n2: np.ndarray
    weeks: np.ndarray  # [series, 168] buckets of each local hour of week
    kappa_by_class: object  # estimators.Nb2Moments
    group_hours: np.ndarray  # [groups, 2, hours] counts of each half of the chosen groups


def scan_counts(
    frame: WorldFrame, path: str, member_slot: np.ndarray, n_groups: int, kappa_mu_min: float,
    moments: object, progress: Progress | None = None,
) -> CountAggregates:
    """One pass over ``bucket_counts`` (rows with N > 0; the zeros are implied)."""
    n_s = frame.series_zone.size
    n_h = frame.horizon.n_hours
    how_of_zone = np.stack([frame.clock.hour_of_week(z) for z in frame.zones]).astype(np.int64)
    weeks_zone = np.stack(
        [np.bincount(h, minlength=HOURS_PER_WEEK) for h in how_of_zone]).astype(np.float64)
    sum_n = np.zeros(n_s * HOURS_PER_WEEK)
    sum_n2 = np.zeros(n_s * HOURS_PER_WEEK)
    group_hours = np.zeros(n_groups * 2 * n_h)
    keys = SeriesKeys(frame)
    start_us = frame.horizon.start_s * US_PER_S
    cols = ["merchant_id", "legal_country_iso", "zone_tzid", "channel_group",
            "bucket_start_utc", "mu", "count", "capped"]

    def fold(t: pa.Table) -> tuple[np.ndarray, ...]:
        """One row group's sums (exact: integer counts) and its rows for the moments."""
        series = keys.series_of(t)
        bucket = (i64(t.column("bucket_start_utc")) - start_us) // US_PER_HOUR
        n = t.column("count").combine_chunks().to_numpy(zero_copy_only=False).astype(np.float64)
        mu = t.column("mu").combine_chunks().to_numpy(zero_copy_only=False)
        capped = t.column("capped").combine_chunks().to_numpy(zero_copy_only=False)
        ok = (series >= 0) & (bucket >= 0) & (bucket < n_h)
        series, bucket, n, mu, capped = series[ok], bucket[ok], n[ok], mu[ok], capped[ok]
        how = how_of_zone[frame.series_zone[series], bucket]
        flat = series * HOURS_PER_WEEK + how
        slot = member_slot[series]
        g = slot >= 0
        k = (mu >= kappa_mu_min) & ~capped
        return (np.bincount(flat, n, sum_n.size), np.bincount(flat, n * n, sum_n2.size),
                np.bincount(slot[g] * n_h + bucket[g], n[g], group_hours.size),
                frame.series_class[series[k]], n[k], mu[k])

    # row groups on the engine's threads; their sums are added in row-group order, so the
    # moments' floating-point sums do not depend on the threads
    for i, part in enumerate(_each_row_group(path, cols, fold)):
        ps_n, ps_n2, gh, cls, n_k, mu_k = part
        sum_n += ps_n
        sum_n2 += ps_n2
        group_hours += gh
        moments.add(cls, n_k, mu_k)
        if progress and i % 10 == 0:
            progress(f"bucket_counts: row group {i + 1}")
    return CountAggregates(
        sum_n.reshape(n_s, HOURS_PER_WEEK), sum_n2.reshape(n_s, HOURS_PER_WEEK),
        weeks_zone[frame.series_zone], moments, group_hours.reshape(n_groups, 2, n_h),
    )
