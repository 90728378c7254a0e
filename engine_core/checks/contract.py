"""The schema rules (*_SCHEMA): every published file has the dataset's contract schema.

Compared field by field against ``engine_core.schemas``: names, order, types (a timestamp
written as a string, µs written as ns, a plain string where a dictionary belongs all fail) and
nullability. Schema metadata is ignored. The check reads Parquet footers only.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from engine_core import schemas
from engine_core.checks.verdicts import Offences, RuleResult, verdict


def schema_differences(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """Human-readable differences between a file's schema and the contract (empty = equal)."""
    out: list[str] = []
    names = actual.names
    if names != expected.names:
        missing = [n for n in expected.names if n not in names]
        extra = [n for n in names if n not in expected.names]
        if missing:
            out.append(f"missing columns {missing}")
        if extra:
            out.append(f"unexpected columns {extra}")
        if not missing and not extra:
            out.append(f"column order {names} differs from {expected.names}")
    for field in expected:
        if field.name not in names:
            continue
        got = actual.field(field.name)
        if not got.type.equals(field.type):
            out.append(f"{field.name}: type {got.type} where the contract has {field.type}")
        elif got.nullable != field.nullable:
            want = "nullable" if field.nullable else "not null"
            out.append(f"{field.name}: nullability differs (contract: {want})")
    return out


def schema_rule(store, code: str, dataset: str, year: int) -> RuleResult:
    """Rule ``code``: every file of ``dataset``/year has ``schemas.DATASETS[dataset]``."""
    expected = schemas.DATASETS[dataset]
    files = (
        store.dataset_files(dataset, year)
        if store.storage.exists(store.dataset_path(dataset, year))
        else []
    )
    off = Offences()
    if not files:
        off.add(1, [f"{dataset}/year={year}; no Parquet file published"])
    rows = 0
    for f in files:
        pf = pq.ParquetFile(f, filesystem=store.storage.fs)
        rows += pf.metadata.num_rows
        diffs = schema_differences(pf.schema_arrow, expected)
        name = f.rsplit("/", 1)[-1]
        off.add(len(diffs), [f"{name}; {d}" for d in diffs])
    return verdict(
        code, off.ok, {"files": len(files), "rows": rows, "differences": off.count}, off.examples
    )
