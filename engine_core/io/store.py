"""The dataset store: where a run's partitions live, how they are read and published.

One store serves one run identity (world fingerprint, parameter hash, seed) and scenario on a
storage root (local directory or object store). States publish through it — a partition
appears whole or not at all (engine_core/io/publish.py) — and rules read through it, a row
group at a time where a partition may be large. It also owns the partition's PASS flag:
``validation/.../_passed.flag`` is written only by S5 on PASS and withdrawn by every state
before it republishes anything, so the flag never vouches for data a later run replaced.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow.fs import FileSelector

from engine_core.errors import EngineError
from engine_core.io.batches import iter_batches
from engine_core.io.layout import RunLayout
from engine_core.io.publish import publish_dir, read_json, write_json_atomic
from engine_core.io.storage import Storage
from engine_core.schemas import PAGE_ROWS

if TYPE_CHECKING:
    from engine_core.context import Shard

PASSED_FLAG = "_passed.flag"
TOTALS = "_totals.json"
# A cluster run's claim on its shard area (``_lease.<run tag>.json``): the time until which
# its coordinator is alive; renewed while it waits for shards (engine_core/cluster).
LEASE_PREFIX = "_lease."
# Shard directories no lease vouches for (a worker that wrote after its run was cleaned up,
# or an area of a run of an older engine) are removed once nothing in them changed for this long.
STALE_SHARDS_S = 24 * 3600
PARQUET_OPTS: dict[str, Any] = {"compression": "zstd", "use_dictionary": True,
                                 "max_rows_per_page": PAGE_ROWS}


@dataclass(frozen=True)
class DatasetStore:
    storage: Storage
    layout: RunLayout
    scenario: str
    # where a worker keeps a shard's files before uploading them to an object store
    # (None: the system's temporary directory)
    local_shard_base: str | None = None

    @classmethod
    def open(cls, root: str, world_fingerprint: str, parameter_hash: str, seed: int,
             scenario: str) -> DatasetStore:
        storage = Storage.open(root)
        return cls(storage, RunLayout(storage, world_fingerprint, parameter_hash, int(seed)),
                   scenario)

    @property
    def run_root(self) -> str:
        return self.layout.run_root

    def uri(self, path: str | None = None) -> str:
        """A path of the store as another reader opens it (the run root by default)."""
        return self.storage.uri_for(self.run_root if path is None else path)

    def dataset_path(self, dataset: str, year: int) -> str:
        return self.layout.partition_dir(dataset, self.scenario, year)

    # ------------------------------------------------------------------ reading
    def _upstream_missing(self, dataset: str, year: int, what: str) -> EngineError:
        return EngineError(
            "UPSTREAM_MISSING",
            f"{dataset} for scenario={self.scenario} year={year} {what} under "
            f"{self.run_root}; run the upstream state first",
            table=dataset, key=f"{self.scenario}|{year}",
        )

    def is_published(self, dataset: str, year: int) -> bool:
        return self.storage.exists(self.dataset_path(dataset, year))

    def dataset_files(self, dataset: str, year: int) -> list[str]:
        """The partition's Parquet files in name order; UPSTREAM_MISSING when unpublished."""
        if not self.is_published(dataset, year):
            raise self._upstream_missing(dataset, year, "has not been published")
        infos = self.storage.fs.get_file_info(FileSelector(self.dataset_path(dataset, year)))
        return sorted(i.path for i in infos if i.path.endswith(".parquet"))

    def read_dataset(self, dataset: str, year: int, columns: list[str] | None = None
                     ) -> pa.Table:
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

    def dataset_rows(self, dataset: str, year: int) -> int:
        """Rows of the published partition, from the Parquet footers (no data read)."""
        return sum(pq.ParquetFile(f, filesystem=self.storage.fs).metadata.num_rows
                   for f in self.dataset_files(dataset, year))

    def read_totals(self, dataset: str, year: int) -> dict[str, Any]:
        path = f"{self.dataset_path(dataset, year)}/{TOTALS}"
        if not self.storage.exists(path):
            raise self._upstream_missing(dataset, year, "has not been published")
        return read_json(self.storage, path)

    def file_bytes(self, paths: list[str]) -> int:
        return int(sum(self.storage.fs.get_file_info(p).size or 0 for p in paths))

    # ------------------------------------------------------------------ publishing
    @contextmanager
    def publishing(self, dataset: str, year: int, discard_in_background: bool = False
                   ) -> Iterator[str]:
        """A local staging directory that replaces the partition whole when the block ends
        without an error (and is dropped when it raises)."""
        with publish_dir(self.storage, self.layout.staging_root,
                         self.dataset_path(dataset, year),
                         discard_in_background=discard_in_background) as stage:
            yield stage

    def publish_table(self, dataset: str, year: int, table: pa.Table,
                      totals: dict[str, Any] | None = None) -> list[str]:
        """Publish a partition of one part file (and its totals)."""
        with self.publishing(dataset, year) as stage:
            pq.write_table(table, os.path.join(stage, "part-00000.parquet"), **PARQUET_OPTS)
            if totals is not None:
                write_json_atomic(os.path.join(stage, TOTALS), totals)
        return [f"{self.dataset_path(dataset, year)}/part-00000.parquet"]

    def _shard_rel(self, dataset: str, year: int) -> list[str]:
        return [self.layout.world_fingerprint[:12], self.layout.parameter_hash[:12],
                f"seed={self.layout.seed}", dataset, f"scenario={self.scenario}",
                f"year={year:04d}"]

    def shard_path(self, dataset: str, year: int, shard_name: str) -> str:
        """Where one shard's part files live until the partition is published: outside every
        published partition (and outside the staging area, which publishing sweeps), under
        the storage root when it is local (so every worker of a cluster sharing the
        filesystem writes where the coordinator publishes from)."""
        if self.storage.is_local:
            return os.path.join(self.shard_area(dataset, year), shard_name)
        base = self.local_shard_base or tempfile.gettempdir()
        return os.path.join(base, "arrival-shards", *self._shard_rel(dataset, year), shard_name)

    def shard_area(self, dataset: str, year: int) -> str:
        """The partition's shard area under the storage root (``<root>/_shards/…``): every
        shard directory a coordinator publishes from, and the runs' leases."""
        return "/".join([self.storage.join("_shards"), *self._shard_rel(dataset, year)])

    def shard_dir(self, dataset: str, year: int, shard_name: str) -> str:
        """An empty local directory for one shard's part files (see :meth:`shard_path`): a
        shard's rows are published only together with the other shards'."""
        path = self.shard_path(dataset, year, shard_name)
        shutil.rmtree(path, ignore_errors=True)  # a re-run never keeps a part of the last one
        os.makedirs(path)
        return path

    def shard_object_dir(self, dataset: str, year: int, shard_name: str) -> str:
        """Where a finished shard waits on an object-store root (workers on other hosts
        cannot reach each other's local disks)."""
        return f"{self.shard_area(dataset, year)}/{shard_name}"

    def export_shard(self, dataset: str, year: int, shard_name: str) -> None:
        """Make a finished shard visible to the coordinator: on a local root it already is;
        on an object store its part files are uploaded, then its totals (last: a shard
        without them is incomplete), and the local copy is dropped."""
        if self.storage.is_local:
            return
        local = self.shard_path(dataset, year, shard_name)
        remote = self.shard_object_dir(dataset, year, shard_name)
        fs = self.storage.fs
        try:
            fs.delete_dir_contents(remote, missing_dir_ok=True)
            names = sorted(n for n in os.listdir(local) if n != TOTALS)
            for name in [*names, TOTALS]:
                with (open(os.path.join(local, name), "rb") as src,
                      fs.open_output_stream(f"{remote}/{name}") as dst):
                    shutil.copyfileobj(src, dst, 8 << 20)
        except OSError as exc:
            raise EngineError(
                "STORAGE_WRITE_FAILED",
                f"could not upload shard {shard_name} of {dataset} to {remote}: {exc}; nothing "
                "was published, re-run the partition",
                table=dataset, key=remote,
            ) from exc
        shutil.rmtree(local, ignore_errors=True)

    def _shard_totals(self, dataset: str, year: int, shard: Shard) -> dict[str, Any]:
        if self.storage.is_local:
            path = os.path.join(self.shard_path(dataset, year, shard.name), TOTALS)
            found = os.path.isfile(path)
        else:
            path = f"{self.shard_object_dir(dataset, year, shard.name)}/{TOTALS}"
            found = self.storage.exists(path)
        if not found:
            raise EngineError(
                "SHARD_INCOMPLETE",
                f"shard {shard.name} of {dataset} left no {TOTALS} at {path}; nothing was "
                "published: re-run the partition",
                table=dataset, key=f"{self.scenario}|{year}|{shard.name}",
            )
        if self.storage.is_local:
            with open(path, encoding="utf-8") as fh:
                return json.load(fh)
        return read_json(self.storage, path)

    def _take_shard_parts(self, dataset: str, year: int, shard: Shard, stage: str,
                          copies: dict[str, str]) -> list[str]:
        """A shard's part files, renamed ``part-<shard.lo>-<k>.parquet``; the new names. On a
        local root they are moved into the stage; on an object store they stay where they
        are and ``copies`` maps each new name to its object, copied server-side when the
        partition is published (no byte passes through this process)."""
        names = []
        if self.storage.is_local:
            d = self.shard_path(dataset, year, shard.name)
            for k, name in enumerate(sorted(n for n in os.listdir(d) if n.endswith(".parquet"))):
                names.append(f"part-{shard.lo:07d}-{k:05d}.parquet")
                shutil.move(os.path.join(d, name), os.path.join(stage, names[-1]))
            return names
        remote = self.shard_object_dir(dataset, year, shard.name)
        infos = self.storage.fs.get_file_info(FileSelector(remote))
        parts = sorted(i.base_name for i in infos if i.base_name.endswith(".parquet"))
        for k, name in enumerate(parts):
            names.append(f"part-{shard.lo:07d}-{k:05d}.parquet")
            copies[names[-1]] = f"{remote}/{name}"
        return names

    def _drop_shard(self, dataset: str, year: int, shard: Shard) -> None:
        if self.storage.is_local:
            shutil.rmtree(self.shard_path(dataset, year, shard.name), ignore_errors=True)
        else:
            self.storage.fs.delete_dir(self.shard_object_dir(dataset, year, shard.name))

    def publish_shards(self, dataset: str, year: int, shards: Sequence[Shard],
                       merge_totals: Callable[[list[dict[str, Any]]], dict[str, Any]],
                       discard_in_background: bool = False) -> list[str]:
        """Publish a partition made of shards' part files, atomically, only when every shard
        left its totals (a shard writes them last).

        The PASS flag is withdrawn first. Shards are taken in merchant order and their part
        files renamed ``part-<first merchant index>-<k>.parquet``, so the partition's files
        in name order are its sort order; the shards' totals are merged by the state's
        ``merge_totals``. Nothing of the partition changes unless every shard is complete.
        On an object store the part files are copied server-side to their final keys under
        the publish protocol (marker last), never downloaded.
        """
        ordered = sorted(shards, key=lambda s: s.lo)
        totals = [self._shard_totals(dataset, year, s) for s in ordered]
        self.withdraw_passed_flag(year)
        names: list[str] = []
        copies: dict[str, str] = {}
        with publish_dir(self.storage, self.layout.staging_root,
                         self.dataset_path(dataset, year),
                         discard_in_background=discard_in_background,
                         remote_copies=copies) as stage:
            for shard in ordered:
                names += self._take_shard_parts(dataset, year, shard, stage, copies)
            write_json_atomic(os.path.join(stage, TOTALS), merge_totals(totals))
        for shard in ordered:
            self._drop_shard(dataset, year, shard)
        final = self.dataset_path(dataset, year)
        return [f"{final}/{n}" for n in names]

    # ------------------------------------------------------------------ shard areas of runs
    @staticmethod
    def shard_run_tag(entry: str) -> str | None:
        """The run tag of a shard directory ``m<lo>-<hi>.<tag>-<attempt>`` or a lease
        ``_lease.<tag>.json``; None for any other name."""
        if entry.startswith(LEASE_PREFIX) and entry.endswith(".json"):
            return entry[len(LEASE_PREFIX):-len(".json")] or None
        if entry.startswith("m") and "." in entry:
            return entry.split(".", 1)[1].split("-", 1)[0] or None
        return None

    def lease_path(self, dataset: str, year: int, tag: str) -> str:
        return f"{self.shard_area(dataset, year)}/{LEASE_PREFIX}{tag}.json"

    def write_shard_lease(self, dataset: str, year: int, tag: str, until: float) -> None:
        """Claim the partition's shard area for run ``tag`` until ``until`` (epoch seconds):
        no other run's sweep removes the run's shards before then."""
        path = self.lease_path(dataset, year, tag)
        body = json.dumps({"run": tag, "until": until}).encode()
        if self.storage.is_local:
            tmp = f"{path}.tmp"
            for attempt in range(3):  # another run may prune the empty area in between
                os.makedirs(os.path.dirname(path), exist_ok=True)
                try:
                    with open(tmp, "wb") as fh:
                        fh.write(body)
                    os.replace(tmp, path)
                    return
                except FileNotFoundError:
                    if attempt == 2:
                        raise
        else:
            with self.storage.fs.open_output_stream(path) as out:
                out.write(body)

    def _area_entries(self, dataset: str, year: int) -> dict[str, list[Any]]:
        """The shard area's top-level names and the files under each (with their mtimes)."""
        area = self.shard_area(dataset, year)
        infos = self.storage.fs.get_file_info(
            FileSelector(area, recursive=True, allow_not_found=True))
        entries: dict[str, list[Any]] = {}
        for info in infos:
            top = info.path[len(area):].lstrip("/").split("/", 1)[0]
            entries.setdefault(top, []).append(info)
        return entries

    def _remove_entry(self, dataset: str, year: int, name: str) -> None:
        path = f"{self.shard_area(dataset, year)}/{name}"
        fs = self.storage.fs
        try:
            if name.startswith(LEASE_PREFIX):
                fs.delete_file(path)
            elif self.storage.is_local:
                shutil.rmtree(path, ignore_errors=True)
            else:
                fs.delete_dir(path)
        except FileNotFoundError:
            pass

    def drop_run_shards(self, dataset: str, year: int, tag: str) -> int:
        """Remove everything run ``tag`` left in the partition's shard area — attempts that
        were never published (a worker killed mid-shard, a recomputed shard, a failed run)
        and the run's lease; the number of entries removed. The area itself goes when
        nothing else is in it."""
        removed = 0
        entries = self._area_entries(dataset, year)
        for name in sorted(entries, key=lambda n: n.startswith(LEASE_PREFIX)):  # lease last
            if self.shard_run_tag(name) == tag:
                self._remove_entry(dataset, year, name)
                removed += 1
        if removed == len(entries):
            self.prune_empty_area(dataset, year)
        return removed

    def prune_empty_area(self, dataset: str, year: int) -> None:
        """On a local root, remove the partition's shard area and its parents up to
        ``_shards`` while they are empty (no other partition's or run's entry)."""
        top = self.storage.join("_shards")
        path = self.shard_area(dataset, year)
        if self.storage.is_local:
            while len(path) >= len(top):
                try:
                    os.rmdir(path)  # only ever an empty directory: never a concurrent run's
                except OSError:  # not empty (another run, another partition) or gone
                    return
                path = os.path.dirname(path)
        # On an object store nothing is pruned: "directories" there are at most empty
        # marker objects, and deleting a prefix is recursive, so it could take the files of
        # a run that started an instant ago.

    def sweep_stale_shards(self, dataset: str, year: int, keep: str,
                           now: float | None = None) -> list[str]:
        """Remove what crashed runs left in the partition's shard area; the names removed.

        A run's entries (its shard directories and its lease) are kept while its lease is
        live — its coordinator renews it while it waits — so a concurrent run of the same
        partition is never touched; they are removed once the lease has expired (the
        coordinator died without cleaning up). Entries no lease names are removed when
        nothing in them changed for ``STALE_SHARDS_S``. ``keep`` is the sweeping run's tag.
        """
        now = time.time() if now is None else now
        entries = self._area_entries(dataset, year)
        leases: dict[str, float] = {}
        for name in entries:
            if name.startswith(LEASE_PREFIX) and name.endswith(".json"):
                try:
                    leases[name] = float(read_json(
                        self.storage, f"{self.shard_area(dataset, year)}/{name}")["until"])
                except (OSError, ValueError, KeyError, TypeError):
                    leases[name] = 0.0  # unreadable: as good as expired
        live = {self.shard_run_tag(n) for n, until in leases.items() if until > now}
        leased = {self.shard_run_tag(n) for n in leases}
        removed = []
        for name, infos in sorted(entries.items(),
                                  key=lambda kv: kv[0].startswith(LEASE_PREFIX)):
            tag = self.shard_run_tag(name)
            if tag == keep or tag in live:
                continue
            if tag not in leased:
                changed = max((i.mtime.timestamp() for i in infos if i.mtime is not None),
                              default=now)
                if now - changed <= STALE_SHARDS_S:
                    continue
            self._remove_entry(dataset, year, name)
            removed.append(name)
        return removed

    # ------------------------------------------------------------------ the PASS flag
    def passed_flag_path(self, year: int) -> str:
        return f"{self.dataset_path('validation', year)}/{PASSED_FLAG}"

    def withdraw_passed_flag(self, year: int) -> bool:
        """Remove the partition's PASS flag; True when there was one."""
        flag = self.passed_flag_path(year)
        if self.storage.exists(flag):
            self.storage.fs.delete_file(flag)
            return True
        return False
