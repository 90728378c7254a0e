"""Read what the engine published, validated partitions only, as a ``polars.LazyFrame``.

    import engine_core
    events = engine_core.read_arrivals("./data", world="tiny", scenario="baseline", years=[2026])
    events.filter(pl.col("is_virtual")).group_by("tzid").len().collect()

The reader resolves the output location the way the engine names it (SPEC §8): the world's
fingerprint (``world`` is a preset name or a directory of world Parquet, or the fingerprint
itself), the policy pack's parameter hash (``policy``: a YAML path, default the shipped pack,
or the hash itself) and the seed. Every partition read must carry S5's ``_passed.flag``; a
partition without it is refused with ``PARTITION_NOT_VALIDATED`` naming it, unless
``require_passed=False``. Local roots and object-store URIs (``s3://bucket/prefix``, with the
endpoint in the URI query or the AWS environment) are read alike. No Dagster here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import polars as pl
from pyarrow.fs import FileSelector, FileType

from engine_core.errors import EngineError
from engine_core.io.layout import RunLayout
from engine_core.io.storage import Storage
from engine_core.schemas import validate_scenario_id

PASSED_FLAG = "_passed.flag"
_HEX = re.compile(r"^[0-9a-f]{12,64}$")
_YEAR_DIR = re.compile(r"^year=(\d{4})$")
READABLE = ("arrival_events", "bucket_counts")


def world_fingerprint_of(world: str) -> str:
    """The fingerprint of a preset or a world directory; a hex digest is taken as it is."""
    if _HEX.fullmatch(world) and not os.path.isdir(world):
        return world
    from engine_core.world import load_world

    return load_world(world).fingerprint


def parameter_hash_of(policy: str | None) -> str:
    """The parameter hash of a policy YAML (default: the shipped pack); a hex digest is taken
    as it is."""
    if policy is not None and _HEX.fullmatch(policy) and not os.path.isfile(policy):
        return policy
    from engine_core.config import load_policy, parameter_hash

    return parameter_hash(load_policy(policy))


@dataclass(frozen=True)
class Partition:
    """One published (dataset, scenario, year) partition and its validation state."""

    dataset: str
    scenario: str
    year: int
    path: str  # directory in the storage's filesystem
    files: tuple[str, ...]  # its Parquet files, name order
    passed: bool


def _years_published(storage: Storage, scenario_dir: str) -> list[int]:
    infos = storage.fs.get_file_info(FileSelector(scenario_dir, allow_not_found=True))
    years = []
    for info in infos:
        m = _YEAR_DIR.match(info.base_name)
        if m and info.type == FileType.Directory:
            years.append(int(m.group(1)))
    return sorted(years)


def _parquet_files(storage: Storage, path: str) -> tuple[str, ...]:
    infos = storage.fs.get_file_info(FileSelector(path, allow_not_found=True))
    return tuple(sorted(i.path for i in infos
                        if i.type == FileType.File and i.base_name.endswith(".parquet")))


def published_partitions(
    root: str, *, world: str, scenario: str, dataset: str = "arrival_events", seed: int = 42,
    years: Iterable[int] | None = None, policy: str | None = None,
) -> list[Partition]:
    """The partitions of ``dataset`` under ``root`` (all published years unless ``years``),
    each with its files and whether S5 passed it. A requested year that was never published
    raises ``PARTITION_NOT_FOUND``."""
    if dataset not in READABLE:
        raise EngineError("READ_INVALID", f"dataset {dataset!r} is not one of {READABLE}",
                          key=dataset)
    validate_scenario_id(scenario)
    storage = Storage.open(root)
    layout = RunLayout(storage, world_fingerprint_of(world), parameter_hash_of(policy), int(seed))
    scenario_dir = "/".join([layout.run_root, dataset, f"scenario={scenario}"])
    found = _years_published(storage, scenario_dir)
    wanted = found if years is None else sorted({int(y) for y in years})
    if not wanted:
        raise EngineError(
            "PARTITION_NOT_FOUND",
            f"no {dataset} partition of scenario={scenario} under {storage.uri_for(scenario_dir)};"
            " check root, world, policy and seed, or run the engine first",
            table=dataset, key=scenario,
        )
    out = []
    for year in wanted:
        path = layout.partition_dir(dataset, scenario, year)
        if year not in found:
            raise EngineError(
                "PARTITION_NOT_FOUND",
                f"{dataset} scenario={scenario} year={year} has not been published under "
                f"{storage.uri_for(layout.run_root)} (published years: {found or 'none'})",
                table=dataset, key=f"{scenario}|{year}",
            )
        flag = f"{layout.partition_dir('validation', scenario, year)}/{PASSED_FLAG}"
        out.append(Partition(dataset, scenario, year, path, _parquet_files(storage, path),
                             storage.exists(flag)))
    return out


def _polars_storage_options(storage: Storage) -> dict[str, str] | None:
    """polars' object-store options for the same endpoint and credentials pyarrow uses."""
    if storage.is_local:
        return None
    query = {k: v[-1] for k, v in parse_qs(urlsplit(storage.uri).query).items()}
    opts: dict[str, str] = {}
    endpoint = query.get("endpoint_override")
    if endpoint:
        scheme = query.get("scheme", "https")
        opts["aws_endpoint_url"] = endpoint if "://" in endpoint else f"{scheme}://{endpoint}"
    elif os.environ.get("AWS_ENDPOINT_URL"):
        opts["aws_endpoint_url"] = os.environ["AWS_ENDPOINT_URL"]
    if opts.get("aws_endpoint_url", "").startswith("http://"):
        opts["aws_allow_http"] = "true"
    region = query.get("region") or os.environ.get("AWS_REGION") \
        or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        opts["aws_region"] = region
    for env, key in (("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
                     ("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
                     ("AWS_SESSION_TOKEN", "aws_session_token")):
        if os.environ.get(env):
            opts[key] = os.environ[env]
    return opts


def validated_files(
    root: str, *, world: str, scenario: str, dataset: str = "arrival_events", seed: int = 42,
    years: Iterable[int] | None = None, policy: str | None = None, require_passed: bool = True,
) -> list[str]:
    """The Parquet files of the validated partitions, as paths (local root) or
    ``s3://bucket/key`` URIs, for readers that take a file list (DuckDB, pyarrow, Spark)."""
    parts = published_partitions(root, world=world, scenario=scenario, dataset=dataset,
                                 seed=seed, years=years, policy=policy)
    if require_passed:
        _refuse_unvalidated(parts)
    storage = Storage.open(root)
    return [_plain_uri(storage, f) for p in parts for f in p.files]


def _plain_uri(storage: Storage, path: str) -> str:
    if storage.is_local:
        return path
    return f"{urlsplit(storage.uri).scheme}://{path.lstrip('/')}"


def _refuse_unvalidated(parts: Sequence[Partition]) -> None:
    bad = [p for p in parts if not p.passed]
    if bad:
        names = ", ".join(f"{p.dataset} scenario={p.scenario} year={p.year}" for p in bad)
        raise EngineError(
            "PARTITION_NOT_VALIDATED",
            f"{names}: no {PASSED_FLAG} (S5 has not passed this data: it failed validation, "
            "or a state was re-run after it). Run S5 / the whole chain again, or pass "
            "require_passed=False to read it anyway",
            table=bad[0].dataset, key=f"{bad[0].scenario}|{bad[0].year}",
        )


def _scan(
    dataset: str, root: str, world: str, seed: int, scenario: str,
    years: Iterable[int] | None, columns: Sequence[str] | None, policy: str | None,
    require_passed: bool,
) -> pl.LazyFrame:
    from engine_core import schemas

    schema = schemas.DATASETS[dataset]
    if columns is not None:
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise EngineError("READ_INVALID", f"unknown {dataset} columns {unknown} (known: "
                              f"{schema.names})", table=dataset, column=unknown[0])
    files = validated_files(root, world=world, scenario=scenario, dataset=dataset, seed=seed,
                            years=years, policy=policy, require_passed=require_passed)
    storage = Storage.open(root)
    lf = pl.scan_parquet(files, hive_partitioning=False,
                         storage_options=_polars_storage_options(storage))
    return lf.select(list(columns)) if columns is not None else lf


def read_arrivals(
    root: str, *, world: str, seed: int = 42, scenario: str,
    years: Iterable[int] | None = None, columns: Sequence[str] | None = None,
    policy: str | None = None, require_passed: bool = True,
) -> pl.LazyFrame:
    """The arrival events of ``scenario`` (all published years unless ``years``) as a lazy
    frame over the validated partitions' Parquet files, in partition and file order (each
    partition sorted by merchant_id, ts_utc, arrival_seq). Raises ``PARTITION_NOT_VALIDATED``
    naming a partition without ``_passed.flag`` (``require_passed=False`` reads it anyway)
    and ``PARTITION_NOT_FOUND`` for a year that was never published."""
    return _scan("arrival_events", root, world, seed, scenario, years, columns, policy,
                 require_passed)


def read_bucket_counts(
    root: str, *, world: str, seed: int = 42, scenario: str,
    years: Iterable[int] | None = None, columns: Sequence[str] | None = None,
    policy: str | None = None, require_passed: bool = True,
) -> pl.LazyFrame:
    """The non-zero bucket counts of ``scenario``, as :func:`read_arrivals` reads events."""
    return _scan("bucket_counts", root, world, seed, scenario, years, columns, policy,
                 require_passed)
