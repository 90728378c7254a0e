"""The run context: everything a state or a rule may know about a run, frozen, no IO.

A :class:`RunConfig` selects a run; :func:`open_context` validates it, loads the world and the
policy and cuts the horizon into year windows. The :class:`RunContext` it returns carries the
run's identity (world fingerprint, parameter hash, seed, scenario), its windows, the policy
and — built on first use — the world as flat arrays, the latent grouping and the tz tables.
It computes the target intensity λ both S3 and its rules use. Where data lives is the dataset
store's business (engine_core/io/store.py); nothing here reads or writes a file of the run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numba
import numpy as np
import pyarrow as pa

from engine_core.config import Policy, load_policy, parameter_hash
from engine_core.errors import EngineError
from engine_core.kernels.counts import target_intensity
from engine_core.schemas import YEAR_MAX, YEAR_MIN, validate_scenario_id
from engine_core.timebase import EPOCH, SECONDS_PER_DAY, epoch_seconds, utc
from engine_core.tz import TzTables, build_tz_tables
from engine_core.world import World, load_world
from engine_core.world.arrays import WorldArrays, build_world_arrays
from engine_core.world.calendar import DayMultipliers, day_multipliers
from engine_core.world.grouping import Grouping, build_grouping


@dataclass(frozen=True)
class RunConfig:
    """Everything that selects a run. Only world, policy, seed, scenario and namespace
    (inside the policy) influence output bytes; threads and the horizon's split never do."""

    world: str  # preset name (tiny, small, reference, large) or a directory of world Parquet
    scenario: str
    start: dt.datetime  # UTC, bucket-aligned, inclusive
    end: dt.datetime  # UTC, bucket-aligned, exclusive
    storage_root: str = "./data"  # local path or URI (s3://bucket/prefix, file://...)
    seed: int = 42
    threads: int | None = None  # None = all cores
    policy_path: str | None = None  # None = the shipped configs/policy.yaml


@dataclass(frozen=True)
class Window:
    """The part of the horizon that falls in one year partition."""

    year: int
    first_bucket: int  # absolute bucket number of the first bucket
    n_buckets: int
    bucket_seconds: int

    @property
    def start_s(self) -> int:
        return self.first_bucket * self.bucket_seconds

    @property
    def end_s(self) -> int:
        return (self.first_bucket + self.n_buckets) * self.bucket_seconds


@dataclass(frozen=True)
class Shard:
    """A contiguous range ``[lo, hi)`` of merchant indices (merchants in ascending
    merchant_id order). A state run over a shard produces exactly the rows the whole run
    produces for those merchants: every draw is keyed by series and absolute bucket."""

    lo: int
    hi: int
    # Names one computation of the shard (a cluster task attempt): its files go to a
    # directory of their own, so an abandoned attempt never writes into another's.
    attempt: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi:
            raise ValueError(f"shard [{self.lo}, {self.hi}) is not a range of merchant indices")
        if self.attempt and not self.attempt.replace("-", "").isalnum():
            raise ValueError(f"shard attempt {self.attempt!r} is not a plain name")

    @property
    def name(self) -> str:
        base = f"m{self.lo:07d}-{self.hi:07d}"
        return f"{base}.{self.attempt}" if self.attempt else base


def balanced_shards(work: np.ndarray, n_shards: int) -> list[Shard]:
    """Contiguous merchant ranges, each holding about ``sum(work) / n_shards``; at most one
    shard per merchant, no empty shard (unless there are no merchants at all)."""
    n = len(work)
    if n == 0:
        return [Shard(0, 0)]
    k = max(1, min(int(n_shards), n))
    cum = np.cumsum(np.asarray(work, dtype=np.float64))
    total = cum[-1]
    if total <= 0:  # no work anywhere: cut by merchant count
        cuts = [round(j * n / k) for j in range(k + 1)]
    else:
        targets = total * np.arange(1, k) / k
        cuts = [0, *(int(c) + 1 for c in np.searchsorted(cum, targets, side="left")), n]
    cuts = sorted(set(min(max(c, 0), n) for c in cuts))
    if cuts[0] != 0:
        cuts.insert(0, 0)
    return [Shard(a, b) for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def cut_horizon(start: dt.datetime, end: dt.datetime, bucket_seconds: int) -> list[Window]:
    """The horizon ``[start, end)`` as one window per calendar year it touches (UTC)."""
    s, e = epoch_seconds(start), epoch_seconds(end)
    if e <= s:
        raise EngineError("HORIZON_INVALID", f"end {end} must be after start {start}")
    if s % bucket_seconds or e % bucket_seconds or start.microsecond or end.microsecond:
        raise EngineError(
            "HORIZON_NOT_ALIGNED",
            f"horizon [{start}, {end}) is not aligned to {bucket_seconds}-second buckets",
        )
    if utc(start).year < YEAR_MIN or utc(end) > dt.datetime(YEAR_MAX + 1, 1, 1, tzinfo=dt.UTC):
        raise EngineError("HORIZON_INVALID",
                          f"horizon must lie within years {YEAR_MIN}..{YEAR_MAX}")
    out = []
    cur, stop_at = utc(start), utc(end)
    while cur < stop_at:
        stop = min(dt.datetime(cur.year + 1, 1, 1, tzinfo=dt.UTC), stop_at)
        a = epoch_seconds(cur) // bucket_seconds
        b = epoch_seconds(stop) // bucket_seconds
        out.append(Window(cur.year, a, b - a, bucket_seconds))
        cur = stop
    return out


@dataclass(frozen=True, eq=False)
class RunContext:
    """One run's identity, windows, policy and world (see the module docstring)."""

    config: RunConfig
    policy: Policy
    parameter_hash: str
    world: World
    band: str
    windows: tuple[Window, ...]
    threads: int

    # ------------------------------------------------------------------ identity
    @property
    def scenario(self) -> str:
        return self.config.scenario

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    @property
    def world_fingerprint(self) -> str:
        return self.world.fingerprint

    @property
    def bucket_seconds(self) -> int:
        return self.policy.time_grid.bucket_seconds

    @property
    def tzdata_version(self) -> str:
        return self.tz.tzdata_version

    @property
    def years(self) -> list[int]:
        return [w.year for w in self.windows]

    def window(self, year: int) -> Window:
        for w in self.windows:
            if w.year == year:
                return w
        raise EngineError("HORIZON_INVALID", f"year {year} is outside the horizon", key=year)

    def identity(self) -> dict[str, Any]:
        return {
            "world_fingerprint": self.world_fingerprint,
            "parameter_hash": self.parameter_hash,
            "seed": self.seed,
            "scenario": self.scenario,
            "namespace": self.policy.namespace,
            "tzdata_version": self.tzdata_version,
            "world": self.world.source,
        }

    # ------------------------------------------------------------------ built on first use
    @cached_property
    def arrays(self) -> WorldArrays:
        return build_world_arrays(self.world.tables)

    @cached_property
    def grouping(self) -> Grouping:
        return build_grouping(self.arrays, self.policy, self.band, self.seed)

    @cached_property
    def tz(self) -> TzTables:
        # one year either side: local dates of the first/last bucket may fall outside
        return build_tz_tables(self.arrays.tzids, utc(self.config.start).year - 1,
                               utc(self.config.end).year + 1)

    @cached_property
    def merchant_ids(self) -> np.ndarray:
        """Distinct merchant ids, ascending: merchant index i is ``merchant_ids[i]``."""
        return np.unique(self.arrays.merchant_id)

    # ------------------------------------------------------------------ shards
    def series_range(self, shard: Shard | None) -> tuple[int, int]:
        """The series rows ``[lo, hi)`` of a shard's merchants (all series without one)."""
        mid = self.arrays.merchant_id
        if shard is None:
            return 0, len(mid)
        if shard.hi > len(self.merchant_ids):
            raise ValueError(f"shard [{shard.lo}, {shard.hi}) beyond the world's "
                             f"{len(self.merchant_ids)} merchants")
        ids = self.merchant_ids
        lo = int(np.searchsorted(mid, ids[shard.lo])) if shard.lo < len(ids) else len(mid)
        hi = int(np.searchsorted(mid, ids[shard.hi])) if shard.hi < len(ids) else len(mid)
        return lo, hi

    def shard_merchants(self, shard: Shard | None) -> tuple[int, int] | None:
        """The merchant ids ``[first, last]`` a shard covers (None: every merchant)."""
        if shard is None:
            return None
        if shard.hi <= shard.lo:
            return (1, 0)  # empty
        return int(self.merchant_ids[shard.lo]), int(self.merchant_ids[shard.hi - 1])

    def series_chunks(self, target_cells: int, n_buckets: int, shard: Shard | None = None
                      ) -> list[tuple[int, int]]:
        """Contiguous series ranges holding whole merchants, ~target_cells series-buckets."""
        mid = self.arrays.merchant_id
        per = max(1, target_cells // max(n_buckets, 1))
        lo, n = self.series_range(shard)
        chunks = []
        while lo < n:
            hi = min(lo + per, n)
            while hi < n and mid[hi] == mid[hi - 1]:
                hi += 1
            chunks.append((lo, hi))
            lo = hi
        return chunks

    # ------------------------------------------------------------------ target intensity
    def day_multipliers(self, w: Window) -> tuple[DayMultipliers | np.ndarray, int]:
        """Calendar multipliers [series, local day] around the window, and the first day. The
        rows are computed when sliced (``mult[lo:hi]``, what :meth:`lambda_chunk` takes), so
        memory holds a chunk's rows, not series × days."""
        first_day = w.start_s // SECONDS_PER_DAY - 1
        n_days = (w.end_s - w.start_s) // SECONDS_PER_DAY + 3
        d0 = EPOCH.date() + dt.timedelta(days=int(first_day))
        return day_multipliers(self.world, self.scenario, d0, int(n_days)), int(first_day)

    def lambda_chunk(self, w: Window, lo: int, hi: int, day_mult: DayMultipliers | np.ndarray,
                     first_day: int) -> np.ndarray:
        """λ [series lo..hi, bucket] of the window (docs/model.md)."""
        m = self.arrays
        tz = self.tz
        lam = np.empty((hi - lo, w.n_buckets), dtype=np.float64)
        rows = np.ascontiguousarray(day_mult[lo:hi], dtype=np.float64)
        target_intensity(m.zone_idx[lo:hi], m.shape_norm[lo:hi], rows, first_day,
                         tz.zone_start, tz.trans_us, tz.offset_s, w.first_bucket, w.n_buckets,
                         w.bucket_seconds, lam)
        return lam

    # ------------------------------------------------------------------ series of rows
    def series_index_of(self, tbl: pa.Table) -> np.ndarray:
        """Map (merchant_id, country, zone, channel) rows to world series indices (vectorised
        through one integer code per series; unknown series are a domain-alignment error)."""
        m = self.arrays
        codes = []
        for col, vocab in (("legal_country_iso", m.countries), ("zone_tzid", m.tzids),
                           ("channel_group", m.channels)):
            arr = tbl.column(col).combine_chunks()
            if not isinstance(arr.type, pa.DictionaryType):
                arr = arr.dictionary_encode()
            pos = {v: i for i, v in enumerate(vocab)}
            remap = np.array([pos.get(v, -1) for v in arr.dictionary.to_pylist()] or [-1],
                             dtype=np.int64)
            codes.append(remap[np.asarray(arr.indices.to_numpy(zero_copy_only=False),
                                          dtype=np.int64)])
        mids = tbl.column("merchant_id").to_numpy()
        uniq = self.merchant_ids
        rank = np.searchsorted(uniq, mids)
        rank[rank >= len(uniq)] = 0
        ok = (uniq[rank] == mids) & (codes[0] >= 0) & (codes[1] >= 0) & (codes[2] >= 0)
        key = self._series_code(rank, codes[0], codes[1], codes[2])
        table_keys, table_idx = self._series_code_table
        pos = np.searchsorted(table_keys, key)
        pos[pos >= len(table_keys)] = 0
        ok &= table_keys[pos] == key
        if not ok.all():
            r = int(np.flatnonzero(~ok)[0])
            raise EngineError(
                "DOMAIN_ALIGN_FAILED", "bucket_counts row names a series that is not in the world",
                table="bucket_counts",
                key="|".join(str(tbl.column(c)[r].as_py()) for c in
                             ("merchant_id", "legal_country_iso", "zone_tzid", "channel_group")),
            )
        return table_idx[pos]

    def _series_code(self, rank, c, z, h) -> np.ndarray:
        m = self.arrays
        nz, nh = len(m.tzids), len(m.channels)
        return ((rank.astype(np.int64) * len(m.countries) + c) * nz + z) * nh + h

    @cached_property
    def _series_code_table(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.arrays
        rank = np.searchsorted(self.merchant_ids, m.merchant_id)
        key = self._series_code(rank, m.country_idx.astype(np.int64),
                                m.zone_idx.astype(np.int64), m.channel_idx.astype(np.int64))
        order = np.argsort(key, kind="stable")
        return key[order], order.astype(np.int64)


def open_context(config: RunConfig) -> RunContext:
    """Validate a run's configuration, load its policy and world, cut its horizon."""
    validate_scenario_id(config.scenario)
    if not 0 <= int(config.seed) < 2**64:
        raise EngineError("SEED_INVALID", f"seed {config.seed} is not a u64", key=config.seed)
    policy = load_policy(config.policy_path)
    windows = cut_horizon(config.start, config.end, policy.time_grid.bucket_seconds)
    world = load_world(config.world)
    scen = world.tables["scenarios"].to_pydict()
    bands = dict(zip(scen["scenario_id"], scen["band"], strict=True))
    if config.scenario not in bands:
        raise EngineError(
            "SCENARIO_UNKNOWN",
            f"scenario {config.scenario!r} is not in the world (known: {sorted(bands)})",
            table="scenarios", column="scenario_id", key=config.scenario,
        )
    if config.threads is not None:
        numba.set_num_threads(max(1, min(int(config.threads), numba.config.NUMBA_NUM_THREADS)))
    return RunContext(config=config, policy=policy, parameter_hash=parameter_hash(policy),
                      world=world, band=bands[config.scenario], windows=tuple(windows),
                      threads=numba.get_num_threads())
