"""Materialisation metadata of a state: the run figures people used to grep out of logs.

Numeric entries are plotted across partitions by the UI; the column schema is the contract
schema from ``engine_core.schemas``; plots are PNGs embedded as base64 Markdown images.
"""

from __future__ import annotations

import base64
import resource
import sys
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from engine_assets import plots
from engine_core import schemas
from engine_core.pipeline.run import Run
from engine_core.pipeline.types import StateResult

ROW_COUNT = "dagster/row_count"
COLUMN_SCHEMA = "dagster/column_schema"


@dataclass(frozen=True)
class DatasetStats:
    """Row count and size of a published dataset partition, from the Parquet footers."""

    path: str
    files: int
    rows: int
    bytes: int


def dataset_stats(path: str) -> DatasetStats:
    fs, _ = plots.filesystem_for(path)
    files = plots.dataset_files(path)
    rows = 0
    size = 0
    for name in files:
        with fs.open_input_file(name) as handle:
            size += handle.size()
            rows += pq.ParquetFile(handle).metadata.num_rows
    return DatasetStats(path=path, files=len(files), rows=rows, bytes=size)


def table_schema(schema: pa.Schema) -> dg.TableSchema:
    return dg.TableSchema(
        columns=[
            dg.TableColumn(
                name=f.name,
                type=str(f.type),
                constraints=dg.TableColumnConstraints(nullable=f.nullable),
            )
            for f in schema
        ]
    )


def png_markdown(png: bytes, title: str) -> dg.MetadataValue:
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"**{title}**\n\n![{title}](data:image/png;base64,{encoded})")


def process_peak_rss_mb() -> float:
    """High-water mark of this process's resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def identity_metadata(run: Run) -> dict[str, Any]:
    """What determines the bytes (SPEC §3) and where they live."""
    return {
        "world_fingerprint": dg.MetadataValue.text(run.ctx.world_fingerprint),
        "parameter_hash": dg.MetadataValue.text(run.ctx.parameter_hash),
        "tzdata_version": dg.MetadataValue.text(str(run.ctx.tzdata_version)),
        "seed": dg.MetadataValue.int(run.ctx.seed),
        "run_root": dg.MetadataValue.path(run.store.uri()),
    }


def state_metadata(
    run: Run,
    result: StateResult,
    dataset: str,
    stats: DatasetStats,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metadata of one published dataset produced by a state run."""
    elapsed = float(result.elapsed_s)
    events = int(result.events) if result.events is not None else None
    peak = result.metrics.get("peak_rss_mb")
    md: dict[str, Any] = {
        ROW_COUNT: dg.MetadataValue.int(stats.rows),
        "elapsed_s": dg.MetadataValue.float(round(elapsed, 3)),
        "rows_per_s": dg.MetadataValue.float(round(stats.rows / elapsed, 1) if elapsed else 0.0),
        "peak_rss_mb": dg.MetadataValue.float(
            round(float(peak) if peak is not None else process_peak_rss_mb(), 1)
        ),
        "jit_compile_s": dg.MetadataValue.float(round(float(result.jit_compile_s), 3)),
        "output_bytes": dg.MetadataValue.int(stats.bytes),
        "output_files": dg.MetadataValue.int(stats.files),
        "path": dg.MetadataValue.path(stats.path),
        COLUMN_SCHEMA: table_schema(schemas.DATASETS[dataset]),
    }
    if events is not None:
        md["events"] = dg.MetadataValue.int(events)
        md["events_per_s"] = dg.MetadataValue.float(round(events / elapsed, 1) if elapsed else 0.0)
    md.update(identity_metadata(run))
    md.update(extra or {})
    return md
