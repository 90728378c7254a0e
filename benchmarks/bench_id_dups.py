"""The duplicate check of one id class (EVENTS_ID_UNIQUE) by the number of buckets it
scatters the ids into: CPU seconds of the process (every thread) per check.

    .venv/bin/python benchmarks/bench_id_dups.py --ids 7800000 --bits 8,10,12,14 --reps 3

``--ids`` random odd 64-bit ids (a seeded generator; arrival_ids are hash outputs, as even
over the top bits as these) go through ``duplicate_ids`` once per ``--bits`` value after a
warm-up call, ``--reps`` times; the best CPU and wall of each are printed, with the number of
duplicates found (0 unless ``--dups`` plants some). ``--dups N`` copies N ids over others, so
the check is seen finding them. The engine's setting is ``event_scan.DUP_BITS``; the reference
year's classes hold up to 8 M ids (``ID_CLASS_BUDGET``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numba
import numpy as np

from engine_core.checks.event_scan import DUP_BITS, duplicate_ids

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_args import process_cpu_s  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser()
    p.add_argument("--ids", type=int, default=7_800_000)
    p.add_argument("--bits", default="8,10,12,14")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--dups", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    ids = rng.integers(0, 2**63, size=args.ids, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    if args.dups:
        src = rng.choice(args.ids, size=args.dups, replace=False)
        ids[rng.choice(args.ids, size=args.dups, replace=False)] = ids[src]
    ids.setflags(write=False)  # as the class files are read: one kernel specialisation
    scratch = np.empty(ids.size, dtype=np.uint64)
    examples = np.zeros(8, dtype=np.uint64)
    chunks = 4 * numba.get_num_threads()
    print(f"{args.ids:,} ids, {numba.get_num_threads()} threads, engine DUP_BITS={DUP_BITS}")
    print("bits  buckets  CPU s (best)  wall s (best)  duplicates")
    rows = []
    for bits in (int(b) for b in args.bits.split(",")):
        duplicate_ids(ids, examples, chunks, scratch, bits)  # warm-up
        best_c = best_w = float("inf")
        found = 0
        for _ in range(args.reps):
            c0, t0 = process_cpu_s(), time.perf_counter()
            found, _ = duplicate_ids(ids, examples, chunks, scratch, bits)
            best_c = min(best_c, process_cpu_s() - c0)
            best_w = min(best_w, time.perf_counter() - t0)
        print(f"{bits:4d}  {1 << bits:7d}  {best_c:12.3f}  {best_w:13.3f}  {found:10d}")
        rows.append({"bits": bits, "cpu": best_c, "wall": best_w, "duplicates": found})
    return rows


if __name__ == "__main__":
    main()
