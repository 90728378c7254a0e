"""S4 against its floor part by part: the same chunks, one process, CPU seconds.

    .venv/bin/python benchmarks/bench_floor_phases.py --world reference \
        --start 2026-01-01 --end 2026-04-01 --out /tmp/arrival-rules --chunks 8 --reps 3

``bench_rules.py --floor`` gives S4 generation / floor for a whole partition; this script
says where the difference lies. The S3 partition is published into ``--out`` first when it
is missing there (S1–S3; a directory ``bench_rules.py`` filled serves as it is). The first
``--chunks`` chunks of S4's cut of it are held in memory; then, ``--reps`` times, every
chunk goes through

- S4: ``realise_chunk`` (the kernel with its set-up: series, groups, arrival_seq), then
  ``events_table``, then a Parquet encode into memory with S4's settings;
- the floor (``floor.py``): its kernel, its table, the same encode;

each part timed by ``getrusage`` (user + system of every thread). Encoding into memory
leaves the disk out. Then each column of one chunk's two tables is encoded alone (best of
``--col-reps``), with its bytes per event: the floor writes the same columns from data laid
out row after row, S4 in the contract's order. Prints the medians over the repetitions and
their ratios; ``--json FILE`` keeps every figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))

from floor import FloorChunks  # noqa: E402
from run_args import add_partition_args, process_cpu_s, run_config  # noqa: E402

from engine_core.io.memory import chunk_heap  # noqa: E402
from engine_core.pipeline import Run  # noqa: E402
from engine_core.pipeline.columns import events_table, write_events  # noqa: E402
from engine_core.pipeline.s4_events import FAMILIES, count_chunks, realise_chunk  # noqa: E402
from engine_core.timebase import US_PER_S  # noqa: E402

PARTS = ("kernel", "table", "encode")


def encode(tbl: pa.Table) -> int:
    """Bytes of ``tbl`` as an S4 part file, written into memory."""
    sink = pa.BufferOutputStream()
    write_events(tbl, sink)
    return sink.getvalue().size


def open_run(args: argparse.Namespace) -> Run:
    """The run over ``--out``, with S1–S3 published there if they are not yet."""
    run = Run.open(run_config(args, args.out))
    year = run.ctx.years[0]
    if not run.store.is_published("bucket_counts", year):
        for state in ("world", "s1", "s2", "s3"):
            run.state(state)
    return run


class Phases:
    """S4's and the floor's parts over the held chunks."""

    def __init__(self, run: Run, chunks: list[pa.Table]) -> None:
        self.run = run
        self.chunks = chunks
        ctx = run.ctx
        year = ctx.years[0]
        self.bucket_us = ctx.window(year).bucket_seconds * US_PER_S
        self.keys = {f: ctx.arrays.series_keys(f, ctx.policy.namespace, ctx.seed)
                     for f in FAMILIES}
        self.floor = FloorChunks(run, year)

    def s4_table(self, chunk: pa.Table, seq_next: dict[int, int]) -> tuple[pa.Table, dict]:
        c0 = process_cpu_s()
        out = realise_chunk(self.run.ctx, chunk, self.keys, self.bucket_us, seq_next,
                            dict.fromkeys(FAMILIES, 0))
        c1 = process_cpu_s()
        tbl = events_table(out, self.run.ctx.arrays)
        return tbl, {"kernel": c1 - c0, "table": process_cpu_s() - c1}

    def floor_table(self, chunk: pa.Table) -> tuple[pa.Table, dict]:
        c0 = process_cpu_s()
        k = self.floor.kernel(chunk)
        c1 = process_cpu_s()
        tbl = self.floor.table(k)
        return tbl, {"kernel": c1 - c0, "table": process_cpu_s() - c1}

    def rep(self) -> dict[str, dict[str, float]]:
        """One pass over every chunk: CPU seconds by side and part, bytes and events."""
        tot = {side: dict.fromkeys((*PARTS, "bytes", "events"), 0.0)
               for side in ("s4", "floor")}
        seq_next: dict[int, int] = {}
        for chunk in self.chunks:
            for side in ("s4", "floor"):
                tbl, t = (self.s4_table(chunk, seq_next) if side == "s4"
                          else self.floor_table(chunk))
                c0 = process_cpu_s()
                t["bytes"] = encode(tbl)
                t["encode"] = process_cpu_s() - c0
                t["events"] = tbl.num_rows
                for key, v in t.items():
                    tot[side][key] += v
                del tbl
        return tot

    def columns(self, col_reps: int) -> dict[str, dict[str, float]]:
        """Each column of the first chunk encoded alone: best CPU seconds and bytes per
        event, S4 against the floor."""
        chunk = self.chunks[0]
        tables = {"s4": self.s4_table(chunk, {})[0], "floor": self.floor_table(chunk)[0]}
        out: dict[str, dict[str, float]] = {}
        for name in tables["s4"].column_names:
            row: dict[str, float] = {}
            for side, tbl in tables.items():
                one = tbl.select([name])
                best = float("inf")
                for _ in range(col_reps):
                    c0 = process_cpu_s()
                    size = encode(one)
                    best = min(best, process_cpu_s() - c0)
                row[f"{side}_cpu_s"] = best
                row[f"{side}_bytes_per_event"] = size / tbl.num_rows
            out[name] = row
        return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_partition_args(p)
    p.add_argument("--out", required=True, help="storage root (S3 published there if missing)")
    p.add_argument("--chunks", type=int, default=8, help="S4 chunks held and measured")
    p.add_argument("--reps", type=int, default=3, help="passes over the chunks")
    p.add_argument("--col-reps", type=int, default=5, help="encodes per column (best kept)")
    p.add_argument("--json", help="write every figure to this file")
    args = p.parse_args(argv)

    run = open_run(args)
    ctx = run.ctx
    chunks = []
    for chunk in count_chunks(ctx, run.store, ctx.window(ctx.years[0]), None):
        chunks.append(chunk)
        if len(chunks) == args.chunks:
            break
    ph = Phases(run, chunks)
    with chunk_heap():  # the allocator as S4 and the floor have it
        ph.rep()  # unmeasured: compiles or loads both kernels, touches the heap
        reps = [ph.rep() for _ in range(args.reps)]
        cols = ph.columns(args.col_reps)

    events = int(reps[0]["s4"]["events"])
    med = {side: {k: statistics.median(r[side][k] for r in reps) for k in (*PARTS, "bytes")}
           for side in ("s4", "floor")}
    total = {side: sum(med[side][k] for k in PARTS) for side in med}
    print(f"{len(chunks)} chunks, {events:,} events; CPU s, median of {args.reps} passes")
    print(f"{'part':10s} {'S4':>8s} {'floor':>8s} {'S4/floor':>9s} {'S4 ns/ev':>9s}")
    for k in (*PARTS, "total"):
        a, b = (total["s4"], total["floor"]) if k == "total" else (med["s4"][k], med["floor"][k])
        print(f"{k:10s} {a:8.3f} {b:8.3f} {a / b:9.3f} {a / events * 1e9:9.1f}")
    print(f"bytes/event: S4 {med['s4']['bytes'] / events:.2f}, "
          f"floor {med['floor']['bytes'] / events:.2f}")
    print(f"\neach column alone, first chunk, best of {args.col_reps} (CPU ms, bytes/event)")
    print(f"{'column':22s} {'S4 ms':>7s} {'floor ms':>8s} {'ratio':>6s} {'S4 B':>6s} "
          f"{'floor B':>7s}")
    for name, c in cols.items():
        print(f"{name:22s} {c['s4_cpu_s'] * 1e3:7.2f} {c['floor_cpu_s'] * 1e3:8.2f} "
              f"{c['s4_cpu_s'] / c['floor_cpu_s']:6.2f} {c['s4_bytes_per_event']:6.2f} "
              f"{c['floor_bytes_per_event']:7.2f}")
    result = {"world": args.world, "start": args.start, "end": args.end,
              "chunks": len(chunks), "events": events, "passes": reps, "median": med,
              "total": total, "ratio": total["s4"] / total["floor"], "columns": cols}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
