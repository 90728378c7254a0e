"""The engine: S1–S5 as plain methods over a horizon, each publishing year partitions.

A horizon [start, end) is cut at New Year into *windows*, one per year partition; every state
processes each window and publishes ``<dataset>/scenario=<id>/year=<yyyy>`` atomically. Each
state reads what the previous state published, so a Dagster asset or a notebook can run any
state on its own (docs/architecture.md).
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine_core import schemas
from engine_core.config import load_policy, parameter_hash
from engine_core.errors import EngineError
from engine_core.io import (
    RunLayout,
    Storage,
    iter_batches,
    publish_dir,
    read_json,
    validate_scenario_id,
)
from engine_core.io.layout import YEAR_MAX, YEAR_MIN
from engine_core.io.publish import sync_file, write_json_atomic
from engine_core.kernels import precompile
from engine_core.kernels.arrivals import (
    MAX_GROUP_EVENTS,
    MODE_HYBRID,
    balanced_blocks,
    realise_groups,
)
from engine_core.kernels.counts import bucket_counts, target_intensity
from engine_core.kernels.jit import readonly, warm_up
from engine_core.kernels.latent import latent_field
from engine_core.pipeline.model import (
    Grouping,
    WorldModel,
    build_grouping,
    build_world_model,
)
from engine_core.pipeline.progress import ProgressReporter
from engine_core.pipeline.types import ProgressCallback, RunConfig, StateResult
from engine_core.tz import TzTables, build_tz_tables
from engine_core.world import load_world, series_day_multipliers

US = 1_000_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
PARQUET_OPTS: dict[str, Any] = {"compression": "zstd", "use_dictionary": True}
# Events: dictionary pages only where values repeat; sorted µs timestamps delta-encode well;
# min/max statistics only on the columns readers sort and prune by. Measured in CPU seconds on
# an 8.4 M-row reference chunk, against dictionaries and statistics everywhere: 0.52x the CPU
# and 18.3 instead of 24.2 B/row (docs/benchmarks.md).
_EVENT_DELTA = ("arrival_seq", "ts_utc", "ts_local", "ts_local_settlement")
EVENT_PARQUET_OPTS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": [f.name for f in schemas.ARRIVAL_EVENTS
                       if f.name not in (*_EVENT_DELTA, "arrival_id")],
    "column_encoding": dict.fromkeys(_EVENT_DELTA, "DELTA_BINARY_PACKED"),
    "write_statistics": ["merchant_id", "bucket_start_utc", "ts_utc", "arrival_seq"],
}
S3_CELLS_PER_CHUNK = 4_000_000
S4_EVENTS_PER_CHUNK = 3_000_000
S4_WRITERS = 2
TOTALS = "_totals.json"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def release_memory() -> None:
    """Hand memory Arrow's allocator keeps for reuse back to the OS between states, so the
    next state's peak does not stack on the previous state's freed buffers."""
    pa.default_memory_pool().release_unused()


def _utc(ts: dt.datetime) -> dt.datetime:
    if ts.tzinfo is None:
        return ts.replace(tzinfo=dt.UTC)
    return ts.astimezone(dt.UTC)


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


def _ts_array(us: np.ndarray, typ: pa.DataType = schemas.TS_UTC) -> pa.Array:
    return pa.array(np.ascontiguousarray(us, dtype=np.int64), type=pa.int64()).view(typ)


def _dict_array(indices: np.ndarray, dictionary: list[str], mask: np.ndarray | None = None
                ) -> pa.DictionaryArray:
    idx = pa.array(np.ascontiguousarray(indices, dtype=np.int32), type=pa.int32(), mask=mask)
    return pa.DictionaryArray.from_arrays(idx, pa.array(dictionary, type=pa.string()))


def _bitmap(flags: np.ndarray) -> pa.Buffer:
    """An Arrow bitmap (least significant bit first) of a boolean array."""
    return pa.py_buffer(np.packbits(flags, bitorder="little"))


def _with_validity(values: np.ndarray, typ: pa.DataType, valid: pa.Buffer | None,
                   n_null: int) -> pa.Array:
    """A fixed-width array over ``values`` (no copy) with a ready validity bitmap: one
    bitmap serves every column with the same nulls, where ``pa.array(mask=)`` would invert
    and pack the mask again for each."""
    return pa.Array.from_buffers(typ, len(values), [valid if n_null else None,
                                                    pa.py_buffer(values)], null_count=n_null)


def _kernel_dict(indices: np.ndarray, dictionary: pa.Array, valid: pa.Buffer | None = None,
                 n_null: int = 0) -> pa.DictionaryArray:
    """Dictionary column over int32 codes the kernel produced (in range by construction,
    so not validated again)."""
    return pa.DictionaryArray.from_arrays(
        _with_validity(indices, pa.int32(), valid, n_null), dictionary, safe=False)


def _file_bytes(paths: list[str], storage: Storage) -> int:
    return int(sum(storage.fs.get_file_info(p).size or 0 for p in paths))


def _write_events(table: pa.Table, path: str) -> None:
    pq.write_table(table, path, row_group_size=1 << 20, **EVENT_PARQUET_OPTS)


class Engine:
    """One run configuration: world, policy, seed, scenario and horizon."""

    def __init__(self, config: RunConfig, progress: ProgressCallback | None = None) -> None:
        self.config = config
        self.progress = progress
        validate_scenario_id(config.scenario)
        if not 0 <= int(config.seed) < 2**64:
            raise EngineError("SEED_INVALID", f"seed {config.seed} is not a u64", key=config.seed)
        self.policy = load_policy(config.policy_path)
        self.parameter_hash = parameter_hash(self.policy)
        self.bucket_seconds = self.policy.time_grid.bucket_seconds
        self.start = _utc(config.start)
        self.end = _utc(config.end)
        self._check_horizon()
        self.world = load_world(config.world)
        self.world_fingerprint = self.world.fingerprint
        scen = self.world.tables["scenarios"].to_pydict()
        bands = dict(zip(scen["scenario_id"], scen["band"], strict=True))
        if config.scenario not in bands:
            raise EngineError(
                "SCENARIO_UNKNOWN",
                f"scenario {config.scenario!r} is not in the world (known: {sorted(bands)})",
                table="scenarios", column="scenario_id", key=config.scenario,
            )
        self.band = bands[config.scenario]
        self.storage = Storage.open(config.storage_root)
        self.layout = RunLayout(self.storage, self.world_fingerprint, self.parameter_hash,
                                int(config.seed))
        self.windows = self._windows()
        if config.threads is not None:
            numba.set_num_threads(max(1, min(int(config.threads), numba.config.NUMBA_NUM_THREADS)))
        self.threads = numba.get_num_threads()
        self._model: WorldModel | None = None
        self._grouping: Grouping | None = None
        self._tz: TzTables | None = None
        self.jit_compile_s = 0.0

    # ------------------------------------------------------------------ identity & layout
    @property
    def run_root(self) -> str:
        return self.layout.run_root

    @property
    def tzdata_version(self) -> str:
        return self.tz.tzdata_version

    @property
    def years(self) -> list[int]:
        return [w.year for w in self.windows]

    def dataset_path(self, dataset: str, year: int) -> str:
        return self.layout.partition_dir(dataset, self.config.scenario, year)

    def identity(self) -> dict[str, Any]:
        return {
            "world_fingerprint": self.world_fingerprint,
            "parameter_hash": self.parameter_hash,
            "seed": int(self.config.seed),
            "scenario": self.config.scenario,
            "namespace": self.policy.namespace,
            "tzdata_version": self.tzdata_version,
            "world": self.world.source,
        }

    def _check_horizon(self) -> None:
        bs = self.bucket_seconds
        s = int((self.start - EPOCH).total_seconds())
        e = int((self.end - EPOCH).total_seconds())
        if e <= s:
            raise EngineError("HORIZON_INVALID", f"end {self.end} must be after start {self.start}")
        if s % bs or e % bs or self.start.microsecond or self.end.microsecond:
            raise EngineError(
                "HORIZON_NOT_ALIGNED",
                f"horizon [{self.start}, {self.end}) is not aligned to {bs}-second buckets",
            )
        if self.start.year < YEAR_MIN or self.end > dt.datetime(YEAR_MAX + 1, 1, 1, tzinfo=dt.UTC):
            raise EngineError(
                "HORIZON_INVALID", f"horizon must lie within years {YEAR_MIN}..{YEAR_MAX}"
            )

    def _windows(self) -> list[Window]:
        bs = self.bucket_seconds
        out = []
        cur = self.start
        while cur < self.end:
            ny = dt.datetime(cur.year + 1, 1, 1, tzinfo=dt.UTC)
            stop = min(ny, self.end)
            a = int((cur - EPOCH).total_seconds()) // bs
            b = int((stop - EPOCH).total_seconds()) // bs
            out.append(Window(cur.year, a, b - a, bs))
            cur = stop
        return out

    def window(self, year: int) -> Window:
        for w in self.windows:
            if w.year == year:
                return w
        raise EngineError("HORIZON_INVALID", f"year {year} is outside the horizon", key=year)

    # ------------------------------------------------------------------ lazily built inputs
    @property
    def model(self) -> WorldModel:
        if self._model is None:
            self._model = build_world_model(self.world.tables)
        return self._model

    @property
    def grouping(self) -> Grouping:
        if self._grouping is None:
            self._grouping = build_grouping(self.model, self.policy, self.band,
                                            int(self.config.seed))
        return self._grouping

    @property
    def tz(self) -> TzTables:
        if self._tz is None:
            # one year either side: local dates of the first/last bucket may fall outside
            self._tz = build_tz_tables(self.model.tzids, self.start.year - 1, self.end.year + 1)
        return self._tz

    def withdraw_pass_flag(self, year: int) -> None:
        """Re-publishing any state of a partition withdraws its PASS flag: consumers gating on
        ``_passed.flag`` must never see one that S5 did not write for the current data."""
        flag = f"{self.dataset_path('validation', year)}/_passed.flag"
        if self.storage.exists(flag):
            self.storage.fs.delete_file(flag)

    def _warm_up(self) -> float:
        """Compile (or load from cache) every kernel once; the time is reported once. With
        an empty cache the S2/S3 and validation kernels compile meanwhile in background
        processes (engine_core/kernels/precompile.py) while this one compiles S4's; their
        waits count as compile time."""
        t0 = time.perf_counter()
        if "kernels" in precompile.start():
            warm_up(names=("realise_groups",))
            precompile.wait("kernels")
        warm_up()  # loads what the background compiled; compiles what it could not
        jit_s = time.perf_counter() - t0
        self.jit_compile_s += jit_s
        return jit_s

    def _await_validation_kernels(self) -> None:
        """Before any rule runs: let a background compile of the validation kernels finish
        (its wait counts as compile time), so the checks load them instead of compiling."""
        self.jit_compile_s += precompile.wait("validation")

    def _reporter(self, state: str, total: int, unit: str) -> ProgressReporter:
        return ProgressReporter(self.progress, state, total, unit)

    # ------------------------------------------------------------------ S1
    def run_s1(self) -> StateResult:
        """Time grid and grouping (no RNG)."""
        t0 = time.perf_counter()
        m = self.model
        g = self.grouping
        paths: list[str] = []
        rows = 0
        rep = self._reporter("s1", len(self.windows), "partitions")
        for k, w in enumerate(self.windows):
            self.withdraw_pass_flag(w.year)
            b = np.arange(w.first_bucket, w.first_bucket + w.n_buckets, dtype=np.int64)
            grid = pa.table(
                {
                    "bucket_index": pa.array(b - w.first_bucket, pa.int64()),
                    "bucket_abs": pa.array(b, pa.int64()),
                    "bucket_start_utc": _ts_array(b * w.bucket_seconds * US),
                    "bucket_end_utc": _ts_array((b + 1) * w.bucket_seconds * US),
                    "duration_s": pa.array(np.full(w.n_buckets, w.bucket_seconds), pa.int64()),
                },
                schema=schemas.TIME_GRID,
            )
            paths += self._publish_table("time_grid", w.year, grid)
            gid = np.asarray(g.series_group)
            grouping = pa.table(
                {
                    "merchant_id": pa.array(m.merchant_id, pa.uint64()),
                    "legal_country_iso": _dict_array(m.country_idx, m.countries),
                    "zone_tzid": _dict_array(m.zone_idx, m.tzids),
                    "channel_group": _dict_array(m.channel_idx, m.channels),
                    "demand_class": pa.array(m.demand_class).dictionary_encode(),
                    "virtual_band": pa.array(g.vband).dictionary_encode(),
                    "zone_group": pa.array(g.zone_group, pa.int32()),
                    "hash_bucket": pa.array(g.hash_bucket, pa.int32()),
                    "group_id": pa.array([g.group_ids[i] for i in gid], pa.string()),
                    "sigma": pa.array(g.sigma[gid], pa.float64()),
                    "length_scale": pa.array(g.length_scale[gid], pa.float64()),
                    "kappa": pa.array(g.kappa, pa.float64()),
                },
                schema=schemas.GROUPING,
            )
            paths += self._publish_table("grouping", w.year, grouping)
            rows += grid.num_rows
            rep.update(k + 1)
        rep.finish()
        return StateResult(
            state="s1", rows=rows, elapsed_s=time.perf_counter() - t0,
            output_bytes=_file_bytes(paths, self.storage), paths=paths,
            metrics={"series": m.n_series, "groups": len(g.group_ids),
                     "peak_rss_mb": peak_rss_mb()},
        )

    def _publish_table(self, dataset: str, year: int, table: pa.Table,
                       totals: dict[str, Any] | None = None) -> list[str]:
        final = self.dataset_path(dataset, year)
        with publish_dir(self.storage, self.layout.staging_root, final) as stage:
            pq.write_table(table, os.path.join(stage, "part-00000.parquet"), **PARQUET_OPTS)
            if totals is not None:
                write_json_atomic(os.path.join(stage, TOTALS), totals)
        return [f"{final}/part-00000.parquet"]

    # ------------------------------------------------------------------ readers
    def _upstream_missing(self, dataset: str, year: int, what: str) -> EngineError:
        return EngineError(
            "UPSTREAM_MISSING",
            f"{dataset} for scenario={self.config.scenario} year={year} {what} under "
            f"{self.run_root}; run the upstream state first",
            table=dataset, key=f"{self.config.scenario}|{year}",
        )

    def _require_published(self, dataset: str, year: int) -> None:
        if not self.storage.exists(self.dataset_path(dataset, year)):
            raise self._upstream_missing(dataset, year, "has not been published")

    def read_dataset(self, dataset: str, year: int, columns: list[str] | None = None) -> pa.Table:
        files = self.dataset_files(dataset, year)
        tables = [pq.read_table(f, columns=columns, filesystem=self.storage.fs) for f in files]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def dataset_batches(self, dataset: str, year: int, columns: list[str]) -> Iterator[pa.Table]:
        """The rows of a published dataset in file order, a row group at a time (memory
        holds two row groups, never the partition)."""
        files = self.dataset_files(dataset, year)
        if not files:
            raise self._upstream_missing(dataset, year, "has no Parquet file")
        yield from iter_batches(files, self.storage.fs, columns)

    def dataset_files(self, dataset: str, year: int) -> list[str]:
        """The partition's Parquet files in name order; UPSTREAM_MISSING when unpublished."""
        self._require_published(dataset, year)
        path = self.dataset_path(dataset, year)
        from pyarrow.fs import FileSelector

        infos = self.storage.fs.get_file_info(FileSelector(path))
        return sorted(i.path for i in infos if i.path.endswith(".parquet"))

    def dataset_rows(self, dataset: str, year: int) -> int:
        """Rows of the published partition, from the Parquet footers (no data read)."""
        return sum(pq.ParquetFile(f, filesystem=self.storage.fs).metadata.num_rows
                   for f in self.dataset_files(dataset, year))

    def read_totals(self, dataset: str, year: int) -> dict[str, Any]:
        path = f"{self.dataset_path(dataset, year)}/{TOTALS}"
        if not self.storage.exists(path):
            raise self._upstream_missing(dataset, year, "has not been published")
        return read_json(self.storage, path)

    def _group_table(self, year: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Distinct groups (sorted) with σ and L, as published by S1."""
        t = self.read_dataset("grouping", year, ["group_id", "sigma", "length_scale"])
        ids = t.column("group_id").to_pylist()
        sig = t.column("sigma").to_numpy()
        ls = t.column("length_scale").to_numpy()
        first: dict[str, int] = {}
        for i, gid in enumerate(ids):
            first.setdefault(gid, i)
        order = sorted(first)
        idx = np.array([first[gidx] for gidx in order], dtype=np.int64)
        return order, sig[idx], ls[idx]

    # ------------------------------------------------------------------ S2
    def run_s2(self) -> StateResult:
        """Latent LGCP factor per (group, bucket)."""
        from engine_core.rng.streams import group_stream, stream_keys

        jit_s = self._warm_up()
        t0 = time.perf_counter()
        lat = self.policy.latent
        paths: list[str] = []
        rows = 0
        rep = self._reporter("s2", len(self.windows), "partitions")
        for k, w in enumerate(self.windows):
            self.withdraw_pass_flag(w.year)
            gids, sig, ls = self._group_table(w.year)
            keys = stream_keys("S2.latent.v1", self.policy.namespace, int(self.config.seed),
                               (group_stream(g.split("|", 1)[1]) for g in gids))
            z = np.empty((len(gids), w.n_buckets), dtype=np.float64)
            f = np.empty_like(z)
            latent_field(keys, sig, ls, w.first_bucket, w.n_buckets, lat.block_buckets,
                         lat.factor_clip[0], lat.factor_clip[1], z, f)
            b = np.arange(w.first_bucket, w.first_bucket + w.n_buckets, dtype=np.int64)
            g_idx = np.repeat(np.arange(len(gids), dtype=np.int32), w.n_buckets)
            tbl = pa.table(
                {
                    "group_id": _dict_array(g_idx, gids),
                    "bucket_start_utc": _ts_array(np.tile(b * w.bucket_seconds * US, len(gids))),
                    "z": pa.array(z.ravel(), pa.float64()),
                    "factor": pa.array(f.ravel(), pa.float64()),
                },
                schema=schemas.LATENT_INTENSITY,
            )
            paths += self._publish_table("latent_intensity", w.year, tbl)
            rows += tbl.num_rows
            rep.update(k + 1)
        rep.finish()
        return StateResult(
            jit_compile_s=jit_s,
            state="s2", rows=rows, elapsed_s=time.perf_counter() - t0,
            output_bytes=_file_bytes(paths, self.storage), paths=paths,
            metrics={"peak_rss_mb": peak_rss_mb()},
        )

    def read_factors(self, year: int) -> tuple[list[str], np.ndarray]:
        """Dense [group, bucket] factors of a published S2 partition (checked for shape)."""
        w = self.window(year)
        t = self.read_dataset("latent_intensity", year, ["group_id", "factor"])
        gcol = t.column("group_id").combine_chunks()
        gids = gcol.dictionary.to_pylist()
        n_groups = len(gids)
        if t.num_rows != n_groups * w.n_buckets:
            raise EngineError(
                "DOMAIN_ALIGN_FAILED",
                f"latent_intensity has {t.num_rows} rows, expected {n_groups} groups x "
                f"{w.n_buckets} buckets",
                table="latent_intensity", key=f"{self.config.scenario}|{year}",
            )
        return gids, readonly(t.column("factor").to_numpy().reshape(n_groups, w.n_buckets))

    # ------------------------------------------------------------------ S3
    def day_multipliers(self, w: Window) -> tuple[np.ndarray, int]:
        """Calendar multipliers [series, local day] around the window, and the first day."""
        first_day = w.start_s // 86400 - 1
        n_days = (w.end_s - w.start_s) // 86400 + 3
        d0 = dt.date(1970, 1, 1) + dt.timedelta(days=int(first_day))
        mult = series_day_multipliers(self.world, self.config.scenario, d0, int(n_days))
        return np.ascontiguousarray(mult, dtype=np.float64), int(first_day)

    def _series_chunks(self, target_cells: int, n_buckets: int) -> list[tuple[int, int]]:
        """Contiguous series ranges holding whole merchants, ~target_cells series-buckets."""
        mid = self.model.merchant_id
        per = max(1, target_cells // max(n_buckets, 1))
        chunks = []
        lo = 0
        n = len(mid)
        while lo < n:
            hi = min(lo + per, n)
            while hi < n and mid[hi] == mid[hi - 1]:
                hi += 1
            chunks.append((lo, hi))
            lo = hi
        return chunks

    def lambda_chunk(self, w: Window, lo: int, hi: int, day_mult: np.ndarray,
                     first_day: int) -> np.ndarray:
        m = self.model
        tz = self.tz
        lam = np.empty((hi - lo, w.n_buckets), dtype=np.float64)
        target_intensity(m.zone_idx[lo:hi], m.shape_norm[lo:hi], day_mult[lo:hi], first_day,
                         tz.zone_start, tz.trans_us, tz.offset_s, w.first_bucket, w.n_buckets,
                         w.bucket_seconds, lam)
        return lam

    def run_s3(self) -> StateResult:
        """NB2 / Poisson bucket counts; only rows with count > 0 are written."""
        jit_s = self._warm_up()
        t0 = time.perf_counter()
        m = self.model
        cnt = self.policy.counts
        keys = m.series_keys("S3.count.v1", self.policy.namespace, int(self.config.seed))
        paths: list[str] = []
        rows_total = 0
        events_total = 0
        series_total = m.n_series * len(self.windows)
        rep = self._reporter("s3", series_total, "series")
        done = 0
        for w in self.windows:
            self.withdraw_pass_flag(w.year)
            grid = self.read_dataset("time_grid", w.year, ["bucket_abs"])
            grid_b = grid.column("bucket_abs").to_numpy()
            if len(grid_b) != w.n_buckets or (len(grid_b) and grid_b[0] != w.first_bucket):
                raise EngineError("DOMAIN_ALIGN_FAILED", "time grid does not match the horizon",
                                  table="time_grid", key=f"{self.config.scenario}|{w.year}")
            gids, factor = self.read_factors(w.year)
            group_of_series = self._series_groups(w.year, gids)
            kappa = self.grouping.kappa
            day_mult, first_day = self.day_multipliers(w)
            final = self.dataset_path("bucket_counts", w.year)
            totals = {"series": m.n_series, "buckets": w.n_buckets, "cells_sampled": 0,
                      "blocks": 0, "rows": 0, "sum_count": 0, "sum_mu": 0.0, "capped": 0,
                      "sum_mu_all": 0.0}
            with publish_dir(self.storage, self.layout.staging_root, final) as stage:
                fpath = os.path.join(stage, "part-00000.parquet")
                with pq.ParquetWriter(fpath, schemas.BUCKET_COUNTS, **PARQUET_OPTS) as writer:
                    for lo, hi in self._series_chunks(S3_CELLS_PER_CHUNK, w.n_buckets):
                        lam = self.lambda_chunk(w, lo, hi, day_mult, first_day)
                        n = hi - lo
                        mu = np.empty_like(lam)
                        counts = np.empty(lam.shape, dtype=np.int64)
                        capped = np.empty(lam.shape, dtype=np.bool_)
                        blocks = np.empty(n, dtype=np.int64)
                        bucket_counts(lam, factor, group_of_series[lo:hi], keys[lo:hi],
                                      kappa[lo:hi], w.first_bucket, cnt.lambda_max,
                                      cnt.mu_epsilon, cnt.law == "poisson",
                                      cnt.max_count_per_bucket, mu, counts, capped, blocks)
                        si, bj = np.nonzero(counts)
                        order = np.lexsort((si, bj, m.merchant_id[lo:hi][si]))
                        si = si[order]
                        bj = bj[order]
                        gs = si + lo
                        c = counts[si, bj]
                        tbl = pa.table(
                            {
                                "merchant_id": pa.array(m.merchant_id[gs], pa.uint64()),
                                "legal_country_iso": _dict_array(m.country_idx[gs], m.countries),
                                "zone_tzid": _dict_array(m.zone_idx[gs], m.tzids),
                                "channel_group": _dict_array(m.channel_idx[gs], m.channels),
                                "bucket_start_utc": _ts_array(
                                    (bj + w.first_bucket) * w.bucket_seconds * US),
                                "mu": pa.array(mu[si, bj], pa.float64()),
                                "count": pa.array(c, pa.int64()),
                                "capped": pa.array(capped[si, bj], pa.bool_()),
                            },
                            schema=schemas.BUCKET_COUNTS,
                        )
                        writer.write_table(tbl, row_group_size=1 << 20)
                        totals["cells_sampled"] += int(n * w.n_buckets)
                        totals["blocks"] += int(blocks.sum())
                        totals["rows"] += int(len(c))
                        totals["sum_count"] += int(c.sum())
                        totals["sum_mu"] += float(mu[si, bj].sum())
                        totals["sum_mu_all"] += float(mu.sum())
                        totals["capped"] += int(capped.sum())
                        done += n
                        rep.update(done)
                write_json_atomic(os.path.join(stage, TOTALS), totals)
            paths.append(f"{final}/part-00000.parquet")
            rows_total += totals["rows"]
            events_total += totals["sum_count"]
        release_memory()
        rep.finish()
        return StateResult(
            jit_compile_s=jit_s,
            state="s3", rows=rows_total, events=events_total,
            elapsed_s=time.perf_counter() - t0,
            output_bytes=_file_bytes(paths, self.storage), paths=paths,
            metrics={"peak_rss_mb": peak_rss_mb(), "expected_events": None},
        )

    def _series_groups(self, year: int, gids: list[str]) -> np.ndarray:
        """Series → row of the published S2 factors, via the published S1 grouping."""
        t = self.read_dataset("grouping", year, ["merchant_id", "group_id"])
        if t.num_rows != self.model.n_series or not np.array_equal(
            t.column("merchant_id").to_numpy(), self.model.merchant_id
        ):
            raise EngineError(
                "DOMAIN_ALIGN_FAILED",
                "published grouping does not match the world's series; re-run S1",
                table="grouping", key=f"{self.config.scenario}|{year}",
            )
        index = {g: i for i, g in enumerate(gids)}
        out = np.empty(t.num_rows, dtype=np.int64)
        for i, g in enumerate(t.column("group_id").to_pylist()):
            if g not in index:
                raise EngineError("DOMAIN_ALIGN_FAILED", "group has no latent factors",
                                  table="latent_intensity", column="group_id", key=g)
            out[i] = index[g]
        return out

    # ------------------------------------------------------------------ S4
    def series_index_of(self, tbl: pa.Table) -> np.ndarray:
        """Map (merchant_id, country, zone, channel) rows to world series indices (vectorised
        through one integer code per series; unknown series are a domain-alignment error)."""
        m = self.model
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
        uniq = self._merchant_ranks()
        rank = np.searchsorted(uniq, mids)
        rank[rank >= len(uniq)] = 0
        ok = (uniq[rank] == mids) & (codes[0] >= 0) & (codes[1] >= 0) & (codes[2] >= 0)
        key = self._series_code(rank, codes[0], codes[1], codes[2])
        table_keys, table_idx = self._series_code_table()
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

    def _merchant_ranks(self) -> np.ndarray:
        return np.unique(self.model.merchant_id)

    def _series_code(self, rank, c, z, h) -> np.ndarray:
        m = self.model
        nz, nh = len(m.tzids), len(m.channels)
        return ((rank.astype(np.int64) * len(m.countries) + c) * nz + z) * nh + h

    def _series_code_table(self) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "_code_table"):
            m = self.model
            rank = np.searchsorted(self._merchant_ranks(), m.merchant_id)
            key = self._series_code(rank, m.country_idx.astype(np.int64),
                                    m.zone_idx.astype(np.int64), m.channel_idx.astype(np.int64))
            order = np.argsort(key, kind="stable")
            self._code_table = (key[order], order.astype(np.int64))
        return self._code_table

    def run_s4(self) -> StateResult:
        """Arrival events, streamed chunk by chunk into sorted Parquet row groups."""
        jit_s = self._warm_up()
        t0 = time.perf_counter()
        paths: list[str] = []
        events_total = 0
        totals_s3 = {w.year: self.read_totals("bucket_counts", w.year) for w in self.windows}
        grand = sum(int(t["sum_count"]) for t in totals_s3.values())
        rep = self._reporter("s4", grand, "events")
        writer_state = {"done": 0}
        for w in self.windows:
            self.withdraw_pass_flag(w.year)
            n_events, files = self._run_s4_window(w, rep, writer_state)
            events_total += n_events
            paths += files
        release_memory()
        rep.finish()
        elapsed = time.perf_counter() - t0
        return StateResult(
            jit_compile_s=jit_s,
            state="s4", rows=events_total, events=events_total, elapsed_s=elapsed,
            output_bytes=_file_bytes(paths, self.storage), paths=paths,
            metrics={"peak_rss_mb": peak_rss_mb(),
                     "events_per_s": events_total / elapsed if elapsed else 0.0,
                     "threads": self.threads},
        )

    def _s4_batches(self, w: Window):
        """S3 rows in order, cut at (merchant, bucket) boundaries into chunks of about
        S4_EVENTS_PER_CHUNK events (more only when one (merchant, bucket) alone is larger)."""
        cols = ["merchant_id", "legal_country_iso", "zone_tzid", "channel_group",
                "bucket_start_utc", "count"]
        carry: pa.Table | None = None
        for f in self.dataset_files("bucket_counts", w.year):
            pf = pq.ParquetFile(f, filesystem=self.storage.fs)
            for rb in pf.iter_batches(batch_size=1 << 16, columns=cols):
                t = pa.Table.from_batches([rb])
                carry = t if carry is None else pa.concat_tables([carry, t]).combine_chunks()
                while True:
                    cum = np.cumsum(carry.column("count").to_numpy())
                    if cum[-1] < S4_EVENTS_PER_CHUNK:
                        break
                    reach = int(np.searchsorted(cum, S4_EVENTS_PER_CHUNK)) + 1
                    cut = self._group_boundary_at_or_after(carry, reach)
                    if cut >= carry.num_rows:
                        break  # the group may continue in the next batch
                    yield carry.slice(0, cut)
                    carry = carry.slice(cut)
        if carry is not None and carry.num_rows:
            yield carry

    @staticmethod
    def _group_boundary_at_or_after(t: pa.Table, i: int) -> int:
        """The first row index >= i that starts a new (merchant, bucket) group."""
        mid = t.column("merchant_id").to_numpy()
        b = t.column("bucket_start_utc").cast(pa.int64()).to_numpy()
        n = len(mid)
        if i <= 0:
            return 0
        if i >= n:
            return n
        new = (mid[i:] != mid[i - 1 : n - 1]) | (b[i:] != b[i - 1 : n - 1])
        hit = np.flatnonzero(new)
        return i + int(hit[0]) if len(hit) else n

    def _run_s4_window(self, w: Window, rep: ProgressReporter,
                       state: dict) -> tuple[int, list[str]]:
        """One partition: chunks are generated in order on the main thread (Numba, all cores)
        while a small pool writes each finished chunk as its own part file; file names carry
        the chunk number, so reading the files in name order gives the sorted partition."""
        m = self.model
        ns = self.policy.namespace
        seed = int(self.config.seed)
        keys = {f: m.series_keys(f, ns, seed) for f in
                ("S4.time.v1", "S4.site.v1", "S4.edge.v1", "S4.hybrid.v1")}
        bucket_us = w.bucket_seconds * US
        final = self.dataset_path("arrival_events", w.year)
        seq_next: dict[int, int] = {}
        names: list[str] = []
        n_events = 0
        blocks = {"S4.time.v1": 0, "S4.site.v1": 0, "S4.edge.v1": 0, "S4.hybrid.v1": 0}
        # the replaced partition (a re-run) is removed while the next state runs: deleting
        # gigabytes is disk work that the publish need not wait for
        with publish_dir(self.storage, self.layout.staging_root, final,
                         discard_in_background=True) as stage, \
                ThreadPoolExecutor(max_workers=S4_WRITERS) as pool:
            pending: list[Future] = []
            for chunk in self._s4_batches(w):
                out = self._s4_chunk_arrays(chunk, w, keys, bucket_us, seq_next, blocks)
                n = len(out["aid"])
                name = f"part-{len(names):05d}.parquet"
                names.append(name)
                # the writer builds the Arrow table too: the main thread goes straight on
                # to the next chunk's kernel
                pending.append(pool.submit(self._write_chunk, out, os.path.join(stage, name)))
                n_events += n
                state["done"] += n
                rep.update(state["done"])
                # bound memory: at most S4_WRITERS chunks wait to be written
                while len(pending) > S4_WRITERS:
                    pending.pop(0).result()
            for fut in pending:
                fut.result()
            if not names:  # an empty partition still gets a (typed, empty) file
                names.append("part-00000.parquet")
                _write_events(schemas.ARRIVAL_EVENTS.empty_table(),
                              os.path.join(stage, names[0]))
            write_json_atomic(os.path.join(stage, TOTALS),
                              {"events": n_events, "merchants": len(seq_next), "blocks": blocks,
                               "files": len(names)})
        return n_events, [f"{final}/{n}" for n in names]

    def _write_chunk(self, out: dict[str, np.ndarray], path: str) -> None:
        _write_events(self._events_table(out), path)
        if self.storage.is_local:  # else the stage is a local temporary copy to upload
            sync_file(path)

    def _s4_chunk_arrays(self, chunk: pa.Table, w: Window, keys: dict[str, np.ndarray],
                         bucket_us: int, seq_next: dict[int, int],
                         blocks: dict[str, int]) -> dict[str, np.ndarray]:
        """The kernel outputs of one chunk (column arrays in event order)."""
        m = self.model
        tz = self.tz
        row_series = self.series_index_of(chunk)
        row_bucket = chunk.column("bucket_start_utc").cast(pa.int64()).to_numpy() // bucket_us
        counts = chunk.column("count").to_numpy().astype(np.int64)
        row_offset = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=row_offset[1:])
        n = int(row_offset[-1])
        # (merchant, bucket) groups: rows are sorted by merchant, bucket, series
        mids = m.merchant_id[row_series]
        new_group = np.ones(len(counts), dtype=np.bool_)
        new_group[1:] = (mids[1:] != mids[:-1]) | (row_bucket[1:] != row_bucket[:-1])
        g_first_row = np.flatnonzero(new_group)
        group_row_lo = np.append(g_first_row, len(counts)).astype(np.int64)
        group_evt_lo = row_offset[group_row_lo]
        if np.any(np.diff(group_evt_lo) >= MAX_GROUP_EVENTS):
            raise EngineError("CAPACITY_EXCEEDED", "a (merchant, bucket) holds more than "
                              f"{MAX_GROUP_EVENTS - 1} events", table="bucket_counts")
        # arrival_seq: 1.. per merchant, continuing across the chunks of the partition
        g_mid = mids[g_first_row]
        m_first = np.ones(len(g_mid), dtype=np.bool_)
        m_first[1:] = g_mid[1:] != g_mid[:-1]
        m_start_group = np.flatnonzero(m_first)
        groups_per_m = np.diff(np.append(m_start_group, len(g_mid)))
        m_evt_lo = group_evt_lo[m_start_group]
        m_evt_hi = group_evt_lo[np.append(m_start_group[1:], len(g_mid))]
        base = np.array([seq_next.get(int(x), 1) for x in g_mid[m_start_group]], dtype=np.int64)
        group_seq0 = (group_evt_lo[:-1] - np.repeat(m_evt_lo, groups_per_m)
                      + np.repeat(base, groups_per_m))
        for k, mid_ in enumerate(g_mid[m_start_group].tolist()):
            seq_next[int(mid_)] = int(base[k] + m_evt_hi[k] - m_evt_lo[k])
        out = {
            "aid": np.empty(n, np.uint64), "mid": np.empty(n, np.uint64),
            "country": np.empty(n, np.int32), "zone": np.empty(n, np.int32),
            "channel": np.empty(n, np.int32), "bucket": np.empty(n, np.int64),
            "seq": np.empty(n, np.int64), "ts": np.empty(n, np.int64),
            "tz": np.empty(n, np.int32), "local": np.empty(n, np.int64),
            "settle_tz": np.empty(n, np.int32), "settle_local": np.empty(n, np.int64),
            "site": np.empty(n, np.uint64), "edge": np.empty(n, np.uint64),
            "virtual": np.empty(n, np.bool_),
        }
        blocks_lo = balanced_blocks(group_evt_lo, 8 * self.threads)
        realise_groups(
            blocks_lo, group_row_lo, group_evt_lo, group_seq0, row_series, row_bucket, counts,
            keys["S4.time.v1"], keys["S4.site.v1"], keys["S4.edge.v1"], keys["S4.hybrid.v1"],
            m.mode, m.site_lo, m.site_n, m.edge_lo, m.edge_n, m.settle_zone,
            m.merchant_id, m.country_idx, m.zone_idx, m.channel_idx,
            m.site_prob, m.site_alias, m.site_zone, m.site_id,
            m.edge_prob, m.edge_alias, m.edge_zone, m.edge_id,
            self.policy.routing.p_virtual_hybrid, bucket_us,
            tz.zone_start, tz.trans_us, tz.offset_s,
            out["aid"], out["mid"], out["country"], out["zone"], out["channel"], out["bucket"],
            out["seq"], out["ts"], out["tz"], out["local"], out["settle_tz"],
            out["settle_local"], out["site"], out["edge"], out["virtual"],
        )
        n_virtual = int(out["virtual"].sum())
        blocks["S4.time.v1"] += n
        blocks["S4.hybrid.v1"] += int(counts[m.mode[row_series] == MODE_HYBRID].sum())
        blocks["S4.edge.v1"] += n_virtual
        blocks["S4.site.v1"] += n - n_virtual
        return out

    def _events_table(self, out: dict[str, np.ndarray]) -> pa.Table:
        """The contract table of one chunk's kernel outputs (built in a writer thread)."""
        m = self.model
        v = out["virtual"]
        n = len(v)
        n_virtual = int(np.count_nonzero(v))
        settled = out["settle_tz"] >= 0
        n_unsettled = n - int(np.count_nonzero(settled))
        settled_bits = _bitmap(settled) if n_unsettled else None
        virtual_bits = _bitmap(v)
        physical_bits = _bitmap(~v) if n_virtual else None
        tzids = pa.array(m.tzids, type=pa.string())
        return pa.table(
            {
                "arrival_id": pa.array(out["aid"], pa.uint64()),
                "merchant_id": pa.array(out["mid"], pa.uint64()),
                "legal_country_iso": _kernel_dict(out["country"],
                                                  pa.array(m.countries, type=pa.string())),
                "zone_tzid": _kernel_dict(out["zone"], tzids),
                "channel_group": _kernel_dict(out["channel"],
                                              pa.array(m.channels, type=pa.string())),
                "bucket_start_utc": _ts_array(out["bucket"]),
                "arrival_seq": pa.array(out["seq"], pa.int64()),
                "ts_utc": _ts_array(out["ts"]),
                "tzid": _kernel_dict(out["tz"], tzids),
                "ts_local": _ts_array(out["local"], schemas.TS_LOCAL),
                "tzid_settlement": _kernel_dict(np.maximum(out["settle_tz"], 0), tzids,
                                                settled_bits, n_unsettled),
                "ts_local_settlement": _with_validity(out["settle_local"], schemas.TS_LOCAL,
                                                      settled_bits, n_unsettled),
                "site_id": _with_validity(out["site"], pa.uint64(), physical_bits, n_virtual),
                "edge_id": _with_validity(out["edge"], pa.uint64(), virtual_bits,
                                          n - n_virtual),
                "is_virtual": pa.Array.from_buffers(pa.bool_(), n, [None, virtual_bits]),
            },
            schema=schemas.ARRIVAL_EVENTS,
        )

    # ------------------------------------------------------------------ checks and S5
    def run_world(self) -> tuple[StateResult, list]:
        """World rules (input validity, RNG key uniqueness, tz coverage) for this run."""
        from engine_core.checks import world_rules

        precompile.start()  # the first state of a run: background compiles start here
        t0 = time.perf_counter()
        rules = world_rules(self)
        return (
            StateResult(state="world", rows=self.model.n_series,
                        elapsed_s=time.perf_counter() - t0, output_bytes=0, paths=[],
                        metrics={"merchants": self.world.tables["merchants"].num_rows,
                                 "series": self.model.n_series,
                                 "tzids": len(self.model.tzids)}),
            rules,
        )

    def check(self, state: str, year: int | None = None, remember: bool = True) -> list:
        """Every rule of ``state`` over the published data (all years unless ``year``). The
        verdicts are remembered for S5 under a signature of the files they judged
        (engine_core/checks/memo.py)."""
        from engine_core.checks import evaluate, memo

        self._await_validation_kernels()
        years = [year] if year is not None else self.years
        out = []
        for y in years:
            sig = memo.signature(self, state, y) if remember and state in memo.STATES else None
            results = evaluate(self, state, y)
            if sig is not None:
                memo.record(self, state, y, results, sig)
            out += results
        return out

    def run_s5(self, reuse: bool = False) -> tuple[StateResult, dict[str, Any], bool]:
        """Validation report per year partition; ``_passed.flag`` only on PASS.

        With ``reuse``, a state's verdicts recorded by :meth:`check` over exactly the files
        still published (same signature) are taken as they are instead of evaluated again —
        the Dagster path, where every state's rules already ran as asset checks."""
        from engine_core.checks import evaluate, memo
        from engine_core.checks.report import publish_report
        from engine_core.io.iceberg import sync_partition as sync_iceberg_partition

        self._await_validation_kernels()
        t0 = time.perf_counter()
        paths: list[str] = []
        reports = []
        rows = 0
        reused: list[str] = []
        rep = self._reporter("s5", len(self.windows) * 5, "rule groups")
        k = 0
        for w in self.windows:
            results = []
            for state in ("world", "s1", "s2", "s3", "s4"):
                recalled = memo.recall(self, state, w.year) if reuse and state != "world" else None
                if recalled is not None:
                    reused.append(f"{state}|{w.year}")
                results += recalled if recalled is not None else evaluate(self, state, w.year)
                k += 1
                rep.update(k)
            report, files = publish_report(self, w.year, results)
            # Iceberg: after S5 publishes its verdict, register a PASS / withdraw a FAIL
            sync_iceberg_partition(self.layout, self.config.scenario, w.year, report["passed"])
            reports.append(report)
            paths += files
            rows += len(results)
        rep.finish()
        passed = all(r["passed"] for r in reports)
        merged = {
            "passed": passed,
            "years": [r["year"] for r in reports],
            "rules": [rule for r in reports for rule in r["rules"]],
            "reports": reports,
        }
        return (
            StateResult(state="s5", rows=rows, elapsed_s=time.perf_counter() - t0,
                        output_bytes=_file_bytes(paths, self.storage), paths=paths,
                        metrics={"passed": passed, "peak_rss_mb": peak_rss_mb(),
                                 "reused_verdicts": reused}),
            merged,
            passed,
        )


def realise_arrivals(config: RunConfig, progress: ProgressCallback | None = None
                     ) -> dict[str, Any]:
    """Run S1–S5 for a horizon and return the run summary (the CLI's JSON)."""
    from engine_core.pipeline.run import run_all

    return run_all(Engine(config, progress))


__all__ = ["Engine", "Window", "peak_rss_mb", "realise_arrivals", "pc"]
