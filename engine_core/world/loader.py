"""Reading a world (preset name or Parquet directory) and writing one to Parquet.

A directory world holds ``<table>.parquet`` for each of the six tables (other files are
ignored). Reading goes through the same validation and canonicalisation as a generated world,
so ``generate → export → load`` gives the same fingerprint.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine_core.errors import EngineError
from engine_core.schemas import WORLD_TABLES
from engine_core.world.fingerprint import fingerprint_canonical
from engine_core.world.generator import generate_world
from engine_core.world.model import World
from engine_core.world.presets import preset_names
from engine_core.world.validate import canonical_world_tables

PRESET_PREFIX = "preset:"
PARQUET_COMPRESSION = "zstd"
PARQUET_COMPRESSION_LEVEL = 3
PARQUET_ROW_GROUP_ROWS = 1 << 20
DIRECTORY_MODE = 0o755


def _read_table(path: Path, name: str) -> pa.Table:
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise EngineError(
            "WORLD_UNREADABLE",
            f"{path} is not a readable Parquet file ({type(exc).__name__}: {exc})",
            table=name,
        ) from exc


def read_world_dir(directory: str | Path) -> dict[str, pa.Table]:
    """The raw tables of a world directory (not yet validated)."""
    root = Path(directory)
    tables: dict[str, pa.Table] = {}
    for name in WORLD_TABLES:
        path = root / f"{name}.parquet"
        if not path.is_file():
            raise EngineError(
                "WORLD_MISSING_TABLE",
                f"{root} has no {name}.parquet (a world directory needs "
                f"{', '.join(t + '.parquet' for t in WORLD_TABLES)})",
                table=name,
            )
        tables[name] = _read_table(path, name)
    return tables


def load_world(spec: str | Path) -> World:
    """A preset name (``tiny``, ``small``, ``reference``, optionally ``preset:<name>``) is
    generated with its default seed; anything else must be a directory of world Parquet,
    which is read, validated and canonicalised. Neither → ``WORLD_NOT_FOUND``."""
    text = str(spec)
    name = text[len(PRESET_PREFIX) :] if text.startswith(PRESET_PREFIX) else text
    if not isinstance(spec, Path) and name in preset_names():
        return generate_world(name)
    path = Path(spec)
    if text.startswith(PRESET_PREFIX) or not path.is_dir():
        raise EngineError(
            "WORLD_NOT_FOUND",
            f"{text!r} is neither a world preset ({', '.join(preset_names())}) nor a "
            "directory of world Parquet files",
            key=text,
        )
    tables = canonical_world_tables(read_world_dir(path))
    return World(
        tables=tables, fingerprint=fingerprint_canonical(tables), source=str(path.resolve())
    )


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(
        table,
        path,
        compression=PARQUET_COMPRESSION,
        compression_level=PARQUET_COMPRESSION_LEVEL,
        row_group_size=PARQUET_ROW_GROUP_ROWS,
    )
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def export_world(world: World, out_dir: str | Path) -> list[Path]:
    """Write ``<table>.parquet`` (zstd) for each table into ``out_dir``; return the paths.

    Publishing is atomic per world: the six files are written and fsynced in a temporary
    sibling directory, which is then renamed into place. An existing world directory (one
    holding nothing but world table files) is replaced by renaming it aside first, so readers
    see the old world or the new one, never a mix; a crash leaves no partial file visible.
    A directory holding other files is refused. Same world → same bytes.
    """
    out = Path(out_dir).resolve()
    names = list(WORLD_TABLES)
    expected = {f"{name}.parquet" for name in names}
    if out.exists():
        if not out.is_dir():
            raise EngineError("WORLD_EXPORT_FAILED", f"{out} exists and is not a directory")
        foreign = sorted(p.name for p in out.iterdir() if p.name not in expected)
        if foreign:
            raise EngineError(
                "WORLD_EXPORT_FAILED",
                f"{out} holds files that are not world tables ({', '.join(foreign[:5])}); "
                "export into a new or empty directory",
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    stage.chmod(DIRECTORY_MODE)  # mkdtemp makes it private; a world is shared data
    aside: Path | None = None
    try:
        for name in names:
            _write_parquet(world.tables[name], stage / f"{name}.parquet")
        _fsync_dir(stage)
        if out.exists() and any(out.iterdir()):
            aside = out.parent / f".{out.name}.old-{os.getpid()}-{uuid.uuid4().hex}"
            os.replace(out, aside)
        os.replace(stage, out)  # rename(2) also replaces an empty directory
    except BaseException:
        if aside is not None and not out.exists():
            os.replace(aside, out)  # put the previous world back
        shutil.rmtree(stage, ignore_errors=True)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_dir(out.parent)
    return [out / f"{name}.parquet" for name in names]
