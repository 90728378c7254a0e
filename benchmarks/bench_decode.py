"""Reading and writing one published events part file: what the Parquet codec and Arrow's
memory pool cost.

    .venv/bin/python benchmarks/bench_decode.py PART_FILE [--reps 7]

Two experiments on one ``arrival_events`` part file of a published partition:

* ``codec``: the file's table written with the engine's settings (``EVENT_PARQUET_OPTIONS``)
  and with the columns zstd cannot shrink stored uncompressed (``arrival_id``, ``ts_utc``,
  ``ts_local``, ``ts_local_settlement``: random bits and delta-packed microseconds), the
  variants interleaved ``--reps`` times in this process; CPU (user + system) of the write and
  of a one-thread read of every row group, medians, and the bytes of each file.
* ``pool``: every row group of the file decoded twice (one thread, memory-mapped) in a fresh
  process per memory pool, taken in turn ``--reps`` times: Arrow's default (mimalloc),
  jemalloc (``ARROW_DEFAULT_MEMORY_POOL``), and mimalloc keeping freed pages
  (``MIMALLOC_PURGE_DELAY=-1``); CPU, system CPU and minor page faults, medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

import pyarrow as pa
import pyarrow.parquet as pq

from engine_core.pipeline.columns import EVENT_ROW_GROUP
from engine_core.schemas import EVENT_COLUMNS, EVENT_PARQUET_OPTIONS

RAW_COLUMNS = ("arrival_id", "ts_utc", "ts_local", "ts_local_settlement")
POOLS = {
    "mimalloc (default)": {},
    "jemalloc": {"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"},
    "mimalloc, pages kept": {"MIMALLOC_PURGE_DELAY": "-1"},
}
CHILD = """
import json, resource, sys
import pyarrow as pa, pyarrow.parquet as pq
r0 = resource.getrusage(resource.RUSAGE_SELF)
for _ in range(2):
    pf = pq.ParquetFile(pa.memory_map(sys.argv[1]))
    for g in range(pf.metadata.num_row_groups):
        pf.read_row_group(g, use_threads=False)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"pool": pa.default_memory_pool().backend_name,
                  "cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
                  "sys": r1.ru_stime - r0.ru_stime, "minflt": r1.ru_minflt - r0.ru_minflt}))
"""


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _read_all(path: str) -> None:
    pf = pq.ParquetFile(pa.memory_map(path))
    for g in range(pf.metadata.num_row_groups):
        pf.read_row_group(g, use_threads=False)


def codec(part: str, reps: int, tmp: str) -> dict:
    table = pq.read_table(part)
    raw = dict(EVENT_PARQUET_OPTIONS)
    raw["compression"] = {c.name: "none" if c.name in RAW_COLUMNS else "zstd"
                          for c in EVENT_COLUMNS}
    variants = {"engine (zstd)": dict(EVENT_PARQUET_OPTIONS), "four columns raw": raw}
    runs: dict[str, dict[str, list[float]]] = {k: {"write": [], "read": []} for k in variants}
    paths = {k: os.path.join(tmp, f"codec{i}.parquet") for i, k in enumerate(variants)}
    for _ in range(reps):
        for name, opts in variants.items():
            c0 = _cpu()
            pq.write_table(table, paths[name], row_group_size=EVENT_ROW_GROUP, **opts)
            c1 = _cpu()
            _read_all(paths[name])
            runs[name]["write"].append(c1 - c0)
            runs[name]["read"].append(_cpu() - c1)
    return {name: {"write_cpu_s": statistics.median(r["write"]),
                   "read_cpu_s": statistics.median(r["read"]),
                   "bytes": os.path.getsize(paths[name]), "rows": table.num_rows}
            for name, r in runs.items()}


def pool(part: str, reps: int) -> dict:
    runs: dict[str, list[dict]] = {k: [] for k in POOLS}
    for _ in range(reps):
        for name, env in POOLS.items():
            out = subprocess.run([sys.executable, "-c", CHILD, part], env={**os.environ, **env},
                                 check=True, capture_output=True, text=True).stdout
            runs[name].append(json.loads(out))
    return {name: {"backend": r[0]["pool"],
                   **{k: statistics.median(x[k] for x in r) for k in ("cpu", "sys", "minflt")}}
            for name, r in runs.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", help="one arrival_events part file")
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"codec": codec(args.part, args.reps, tmp), "pool": pool(args.part, args.reps)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
