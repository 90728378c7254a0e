"""Apache Iceberg tables over the published arrival events and bucket counts (pyiceberg).

After S5 judges a partition, :func:`sync_partition` makes the tables agree with the verdict:

- **PASS**: the partition's Parquet files become the table's files for that year, in one
  snapshot: a first publish is an append, a re-publish an overwrite that removes the year's
  previous files and adds the new ones. The engine's files are *registered*, never rewritten
  (their footers give the statistics and the year partition).
- **FAIL**: the year's files leave the table (one delete snapshot) if it had any; a failed
  partition never appears.

Time travel needs the files an old snapshot names to outlive a re-publish, which replaces the
partition directory and deletes the previous one. So the files registered are not the ones in
the Hive directory but hard links to them (no copy, no extra bytes) under
``<root>/_iceberg/data/<world_fp[:12]>/<parameter_hash[:12]>/seed=<seed>/<dataset>/
scenario=<id>/year=<yyyy>/<publish id>/``, a directory named after the published files
(name, size, mtime, inode) that nothing but snapshot expiry removes. On an object store the
link is a server-side copy.

Tables: namespace ``engine_<world_fp[:12]>_<parameter_hash[:12]>_seed<seed>``, table
``<dataset>_<scenario>`` (e.g. ``arrival_events_baseline``), partitioned by
``year(bucket_start_utc)``. Iceberg has no unsigned integers: the u64 id columns are ``long``
in the table and stay UINT_64-annotated in the files (docs/consuming.md).

Catalog (``ENGINE_ICEBERG``): unset or ``sqlite`` = an SQLite catalog at
``<root>/_iceberg/catalog.db`` with its warehouse beside it (local roots; on an object-store
root the tables are kept only with a configured catalog); ``off`` = no tables; any other value
= the name of a catalog in pyiceberg's own configuration (``.pyiceberg.yaml`` or
``PYICEBERG_CATALOG__<NAME>__URI=...``), for instance a REST catalog.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from engine_core import schemas
from engine_core.errors import EngineError
from engine_core.io.layout import RunLayout
from engine_core.io.storage import Storage

ENV = "ENGINE_ICEBERG"
DATASETS = ("arrival_events", "bucket_counts")
PARTITION_SOURCE = "bucket_start_utc"
PARTITION_NAME = "year"
ICEBERG_DIR = "_iceberg"
CATALOG_NAME = "arrival_engine"
_EPOCH_YEAR = 1970
_COMMIT_ATTEMPTS = 5


@dataclass(frozen=True)
class TableRef:
    namespace: str
    name: str

    @property
    def identifier(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def __str__(self) -> str:
        return f"{self.namespace}.{self.name}"


def table_ref(layout: RunLayout, dataset: str, scenario: str) -> TableRef:
    ns = (f"engine_{layout.world_fingerprint[:12]}_{layout.parameter_hash[:12]}"
          f"_seed{int(layout.seed)}")
    return TableRef(ns, f"{dataset}_{scenario}")


def catalog_setting() -> str:
    return (os.environ.get(ENV) or "sqlite").strip()


def enabled_for(storage: Storage) -> bool:
    setting = catalog_setting()
    if setting == "off":
        return False
    return not (setting == "sqlite" and not storage.is_local)


def open_catalog(storage: Storage) -> Any:
    """The configured catalog: the SQLite one under the root by default."""
    setting = catalog_setting()
    if setting == "off":
        raise EngineError("ICEBERG_FAILED", f"{ENV}=off: no Iceberg catalog is configured")
    if setting != "sqlite":
        from pyiceberg.catalog import load_catalog

        try:
            return load_catalog(setting)
        except Exception as exc:
            raise EngineError("ICEBERG_FAILED", f"cannot load the Iceberg catalog {setting!r} "
                              f"({ENV}): {exc}", key=setting) from exc
    if not storage.is_local:
        raise EngineError(
            "ICEBERG_FAILED",
            f"the default SQLite Iceberg catalog needs a local storage root, not {storage.uri}; "
            f"set {ENV} to a configured catalog (e.g. REST) or to off",
        )
    from pyiceberg.catalog.sql import SqlCatalog

    base = os.path.join(storage.base, ICEBERG_DIR)
    os.makedirs(base, exist_ok=True)
    return SqlCatalog(CATALOG_NAME, uri=f"sqlite:///{base}/catalog.db",
                      warehouse=f"file://{base}/warehouse")


def iceberg_schema(dataset: str) -> Any:
    """The dataset's contract schema as Iceberg sees it: dictionaries are plain strings."""
    from pyiceberg.catalog import Catalog

    fields = [pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type,
                       nullable=f.nullable) for f in schemas.DATASETS[dataset]]
    return Catalog._convert_schema_if_needed(pa.schema(fields))


def load_or_create_table(catalog: Any, ref: TableRef, dataset: str) -> Any:
    from pyiceberg.exceptions import NoSuchTableError, TableAlreadyExistsError
    from pyiceberg.table import TableProperties
    from pyiceberg.transforms import YearTransform

    catalog.create_namespace_if_not_exists(ref.namespace)
    try:
        return catalog.load_table(ref.identifier)
    except NoSuchTableError:
        pass
    try:
        table = catalog.create_table(
            ref.identifier, schema=iceberg_schema(dataset),
            properties={"engine.dataset": dataset,
                        "comment": f"arrival engine {dataset}, S5-validated partitions only"},
        )
    except TableAlreadyExistsError:  # another process created it meanwhile
        return catalog.load_table(ref.identifier)
    with table.transaction() as tx:
        # The engine's files carry no Iceberg field ids: columns are matched by name.
        tx.set_properties(**{TableProperties.DEFAULT_NAME_MAPPING:
                             tx.table_metadata.schema().name_mapping.model_dump_json()})
        with tx.update_spec() as spec:
            spec.add_field(PARTITION_SOURCE, YearTransform(), PARTITION_NAME)
    return catalog.load_table(ref.identifier)


def year_files(table: Any, year: int) -> list[Any]:
    """The live data files of ``year`` in the table's current snapshot."""
    if table.current_snapshot() is None:
        return []
    out = []
    for task in table.scan().plan_files():
        part = task.file.partition
        if part is not None and len(part) and part[0] == year - _EPOCH_YEAR:
            out.append(task.file)
    return out


def publish_id(storage: Storage, files: list[str]) -> str:
    """Names one publish of a partition: changes whenever any of its files was replaced."""
    h = hashlib.sha256()
    for path in files:
        info = storage.fs.get_file_info(path)
        h.update(f"{path.rsplit('/', 1)[-1]}|{info.size}|{info.mtime_ns}".encode())
        if storage.is_local:
            h.update(f"|{os.stat(path).st_ino}".encode())
    return h.hexdigest()[:16]


def registered_dir(layout: RunLayout, dataset: str, scenario: str, year: int, pid: str) -> str:
    return layout.storage.join(
        ICEBERG_DIR, "data", layout.world_fingerprint[:12], layout.parameter_hash[:12],
        f"seed={int(layout.seed)}", dataset, f"scenario={scenario}", f"year={year:04d}", pid,
    )


def _link_files(storage: Storage, files: list[str], target: str) -> list[str]:
    """Hard links (local) or server-side copies (object store) of ``files`` in ``target``."""
    out = []
    if storage.is_local:
        os.makedirs(target, exist_ok=True)
    for src in files:
        dst = f"{target}/{src.rsplit('/', 1)[-1]}"
        if not storage.exists(dst):
            if storage.is_local:
                tmp = f"{dst}.tmp-{os.getpid()}"
                os.link(src, tmp)
                os.replace(tmp, dst)
            else:
                storage.fs.copy_file(src, dst)
        out.append(dst)
    return out


def _file_uri(storage: Storage, path: str) -> str:
    if storage.is_local:
        return f"file://{path}"
    scheme = storage.uri.split("://", 1)[0]
    return f"{scheme}://{path.lstrip('/')}"


@contextlib.contextmanager
def _catalog_lock(storage: Storage) -> Iterator[None]:
    """Runs on one machine take turns at the default SQLite catalog (SQLite would otherwise
    refuse a second writer with "database is locked"); other catalogs order commits
    themselves (a conflicting commit is retried)."""
    if catalog_setting() != "sqlite":
        yield
        return
    import fcntl

    base = os.path.join(storage.base, ICEBERG_DIR)
    os.makedirs(base, exist_ok=True)
    fd = os.open(os.path.join(base, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def _quiet_pyiceberg() -> Iterator[None]:
    """pyiceberg warns once per column without Parquet statistics; the engine writes
    statistics only where readers prune (engine.EVENT_PARQUET_OPTS), so that is expected."""
    logger = logging.getLogger("pyiceberg")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _commit_year(table: Any, year: int, add_uris: list[str], props: dict[str, str]) -> bool:
    """Replace the year's files with ``add_uris`` in one snapshot; False when unchanged."""
    from pyiceberg.io.pyarrow import parquet_files_to_data_files

    current = year_files(table, year)
    if sorted(f.file_path for f in current) == sorted(add_uris):
        return False
    if not current and not add_uris:
        return False
    added = list(parquet_files_to_data_files(table.io, table.metadata, iter(add_uris)))
    with table.transaction() as tx:
        update = tx.update_snapshot(snapshot_properties=props)
        with (update.overwrite() if current else update.fast_append()) as snap:
            for f in current:
                snap.delete_data_file(f)
            for f in added:
                snap.append_data_file(f)
    return True


def sync_partition(layout: RunLayout, scenario: str, year: int, passed: bool) -> dict[str, Any]:
    """Make the Iceberg tables of the run at ``layout`` agree with S5's verdict on
    ``scenario``/``year``: register the published files on PASS, withdraw the year on FAIL.
    Returns what it did per table (``{}`` when tables are off). Needs nothing but the layout,
    so any caller that knows the run's location can keep the tables."""
    from pyiceberg.exceptions import CommitFailedException

    storage = layout.storage
    if not enabled_for(storage):
        return {}
    out: dict[str, Any] = {}
    try:
        with _quiet_pyiceberg(), _catalog_lock(storage):
            catalog = open_catalog(storage)
            for dataset in DATASETS:
                ref = table_ref(layout, dataset, scenario)
                uris = _register_files(layout, dataset, scenario, year) if passed else []
                props = {"engine.partition": f"{scenario}|{year}",
                         "engine.verdict": "PASS" if passed else "FAIL"}
                for attempt in range(_COMMIT_ATTEMPTS):
                    table = load_or_create_table(catalog, ref, dataset)
                    try:
                        changed = _commit_year(table, year, uris, props)
                        break
                    except CommitFailedException:  # a concurrent commit: reload and redo
                        if attempt == _COMMIT_ATTEMPTS - 1:
                            raise
                        time.sleep(0.2 * (attempt + 1))
                table = catalog.load_table(ref.identifier)
                snap = table.current_snapshot()
                out[str(ref)] = {"changed": changed,
                                 "snapshot_id": snap.snapshot_id if snap else None,
                                 "files": len(uris)}
    except EngineError:
        raise
    except Exception as exc:
        raise EngineError(
            "ICEBERG_FAILED",
            f"the Parquet partition scenario={scenario} year={year} is published and its "
            f"validation recorded, but the Iceberg table could not be updated: "
            f"{type(exc).__name__}: {exc}. Re-run S5 to retry, or set {ENV}=off",
            key=f"{scenario}|{year}",
        ) from exc
    return out


def _published_files(layout: RunLayout, dataset: str, scenario: str, year: int) -> list[str]:
    from pyarrow.fs import FileSelector, FileType

    path = layout.partition_dir(dataset, scenario, year)
    infos = layout.storage.fs.get_file_info(FileSelector(path))
    return sorted(i.path for i in infos
                  if i.type == FileType.File and i.base_name.endswith(".parquet"))


def _register_files(layout: RunLayout, dataset: str, scenario: str, year: int,
                    attempts: int = 3) -> list[str]:
    """Link the partition's published files under their publish id; the URIs to register.
    A concurrent run of the same partition may swap the directory while it is being read:
    then the listing is taken again (the bytes are the same by determinism)."""
    storage = layout.storage
    for attempt in range(attempts):
        try:
            files = [f for f in _published_files(layout, dataset, scenario, year)
                     if _has_rows(storage, f)]
            target = registered_dir(layout, dataset, scenario, year, publish_id(storage, files))
            return [_file_uri(storage, p) for p in _link_files(storage, files, target)]
        except FileNotFoundError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    return []


def _has_rows(storage: Storage, path: str) -> bool:
    """An empty partition still has one typed, empty file; it has no statistics to place it
    in a year, and nothing to read, so it is not registered."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, filesystem=storage.fs).metadata.num_rows > 0


def describe_partition(layout: RunLayout, scenario: str, year: int) -> dict[str, Any]:
    """Per table of the run: its identifier, current snapshot and the year's file count
    (``{}`` when tables are off). For metadata; never raises."""
    if not enabled_for(layout.storage):
        return {}
    out: dict[str, Any] = {}
    try:
        with _quiet_pyiceberg():
            catalog = open_catalog(layout.storage)
            for dataset in DATASETS:
                ref = table_ref(layout, dataset, scenario)
                table = catalog.load_table(ref.identifier)
                snap = table.current_snapshot()
                out[str(ref)] = {"snapshot_id": snap.snapshot_id if snap else None,
                                 "year_files": len(year_files(table, year))}
    except Exception as exc:  # metadata only
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def load_table(root: str, *, world_fingerprint: str, parameter_hash: str, seed: int,
               dataset: str, scenario: str) -> Any:
    """The pyiceberg table of one dataset and scenario of a run (for readers and tests)."""
    storage = Storage.open(root)
    layout = RunLayout(storage, world_fingerprint, parameter_hash, int(seed))
    return open_catalog(storage).load_table(table_ref(layout, dataset, scenario).identifier)
