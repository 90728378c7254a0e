"""Digests of a run's published files, to prove that a change leaves the output unchanged.

Two digests per file: ``sha256`` of the bytes, and ``content``: for Parquet a SHA-256 over
the table's values (every column, dictionaries decoded, nulls marked; not the chunks or the
bytes Arrow leaves past a buffer's end), for JSON one over its canonical form less what names
the version of a library (the local-clock rule's reference, ``polars <version>``, and the
PASS flag's digest of the report's bytes, which include it). Bytes are the contract within
one pyarrow and one polars release; the content digest still holds where another pyarrow
writes other bytes (its ``created_by`` footer) or the pages are cut differently, or another
polars is the reference, so the test compares bytes only when the pyarrow and the polars
that recorded them are the ones installed.

Record (only in a commit that says why the output changed)::

    python -m tests.pipeline.output_digests record
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

DIGESTS = Path(__file__).resolve().parents[1] / "data" / "output_digests.json"

# (name, world, start, end): a tiny-world year and a reference-world week
RUNS: tuple[tuple[str, str, str, str], ...] = (
    ("tiny_year", "tiny", "2026-01-01", "2027-01-01"),
    ("reference_week", "reference", "2026-03-02", "2026-03-09"),
)


def _string_hashes(values: list) -> np.ndarray:
    return np.array([int.from_bytes(hashlib.sha256(str(v).encode()).digest()[:8], "little")
                     for v in values], dtype=np.uint64)


def _column_digest(h, name: str, col: pa.ChunkedArray) -> None:
    """Fold one column's values into ``h``: its name, its (decoded) type, which rows are
    null, and the values of the others. Only values count: not the chunks, not a
    dictionary's order, not the bytes Arrow leaves past a buffer's last value."""
    arr = col.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    h.update(f"{name}:{arr.type}:{len(arr)}".encode())
    h.update(np.packbits(valid).tobytes())
    present = arr.filter(pa.array(valid))
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        enc = present.dictionary_encode()
        per_value = _string_hashes(enc.dictionary.to_pylist())
        h.update(per_value[enc.indices.to_numpy(zero_copy_only=False)].tobytes())
    elif pa.types.is_fixed_size_list(arr.type) or pa.types.is_list(arr.type):
        h.update(present.flatten().to_numpy(zero_copy_only=False).tobytes())
        h.update(np.asarray(present.value_lengths()).tobytes())
    else:
        h.update(present.to_numpy(zero_copy_only=False).tobytes())


def _content_digest(path: Path) -> str:
    table = pq.read_table(path)
    h = hashlib.sha256()
    for f in table.schema:
        _column_digest(h, f.name, table.column(f.name))
    return h.hexdigest()


# JSON fields that name a library's version: the local-clock rule's reference library, and
# the PASS flag's SHA-256 of the report's bytes
_REFERENCE_FIELD = "reference"
_REPORT_DIGEST_FIELD = "report_sha256"


def _without_versions(value):
    if isinstance(value, dict):
        return {k: (v.split(" ", 1)[0] if k == _REFERENCE_FIELD and isinstance(v, str)
                    else _without_versions(v))
                for k, v in value.items() if k != _REPORT_DIGEST_FIELD}
    if isinstance(value, list):
        return [_without_versions(v) for v in value]
    return value


def _json_digest(path: Path) -> str:
    canonical = json.dumps(_without_versions(json.loads(path.read_text())), sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def digest_run(run_dir: str | os.PathLike) -> dict[str, dict[str, str]]:
    """Digests of every published file under a run directory (staging and locks left out)."""
    root = Path(run_dir)
    out: dict[str, dict[str, str]] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if not path.is_file() or path.name.startswith(".") or "/." in f"/{rel}":
            continue
        entry = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        if path.suffix == ".parquet":
            entry["content"] = _content_digest(path)
        elif path.suffix == ".json" or path.name == "_passed.flag":  # the flag is JSON too
            entry["content"] = _json_digest(path)
        out[rel] = entry
    return out


def realise(world: str, start: str, end: str, root: str) -> str:
    """Run S1–S5 for the horizon and return the run directory (its path below ``root`` is
    ``<world_fp[:12]>/<parameter_hash[:12]>/seed=42``)."""
    from engine_core.pipeline import RunConfig, realise_arrivals

    utc = dt.UTC
    summary = realise_arrivals(RunConfig(
        world=world, scenario="baseline", seed=42, storage_root=root,
        start=dt.datetime.fromisoformat(start).replace(tzinfo=utc),
        end=dt.datetime.fromisoformat(end).replace(tzinfo=utc)))
    assert summary["passed"], summary["failed_rules"]
    return summary["out"]


def record(tmp: str) -> None:
    runs, identity = {}, {}
    for name, world, start, end in RUNS:
        root = os.path.join(tmp, name)
        run_dir = realise(world, start, end, root)
        runs[name] = digest_run(run_dir)
        identity[name] = os.path.relpath(run_dir, root)
    DIGESTS.write_text(json.dumps({"pyarrow": pa.__version__, "polars": pl.__version__,
                                   "identity": identity, "runs": runs},
                                  indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["record"]:
        raise SystemExit("usage: python -m tests.pipeline.output_digests record")
    with tempfile.TemporaryDirectory() as tmp:
        record(tmp)
