"""The fidelity report's fold of arrival rows, per row: the row groups of the first ``--files``
part files of a published partition held in memory, then fed to an ``EventTally`` in one
thread ``--reps`` times, each pass timed by ``time.thread_time``.

    .venv/bin/python benchmarks/bench_fidelity_fold.py RUN_DIR --year 2026 [--files 24]

``RUN_DIR`` is a run's ``<root>/<world>/<parameters>/seed=<n>`` (the ``out`` the CLI prints);
its world is taken from the run's validation report unless ``--world`` names it.
"""

from __future__ import annotations

import argparse
import time

import pyarrow.parquet as pq

from engine_core.fidelity.report import _resolve_inputs
from engine_core.fidelity.scan import (
    EVENT_SCAN_COLUMNS,
    EventTally,
    WorldFrame,
    horizon_of,
    partition_dir,
)
from engine_core.io.files import dataset_files


def main(argv: list[str] | None = None) -> list[float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--scenario", default="baseline")
    p.add_argument("--year", type=int, required=True)
    p.add_argument("--world", default=None)
    p.add_argument("--files", type=int, default=24)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args(argv)
    world, policy, _ = _resolve_inputs(args.run_dir, args.scenario, args.year, args.world, None)
    frame = WorldFrame(world, args.scenario, horizon_of(args.run_dir, args.scenario, args.year),
                       policy.routing.p_virtual_hybrid)
    path = partition_dir(args.run_dir, "arrival_events", args.scenario, args.year)
    tables = []
    for name in dataset_files(path)[: args.files]:
        pf = pq.ParquetFile(name)
        tables += [pf.read_row_group(g, columns=EVENT_SCAN_COLUMNS, use_threads=False)
                   for g in range(pf.metadata.num_row_groups)]
    rows = sum(t.num_rows for t in tables)
    print(f"{rows:,} rows in {len(tables)} row groups")
    per_row = []
    for _ in range(args.reps):
        tally = EventTally(frame)
        t0 = time.thread_time()
        for t in tables:
            tally(t)
        per_row.append((time.thread_time() - t0) / rows * 1e9)
        print(f"fold: {per_row[-1]:.2f} ns a row")
    return per_row


if __name__ == "__main__":
    main()
