"""Pipeline benchmark: per-state wall time, events/s and peak RSS, plus the S4 floor ratio.

    .venv/bin/python benchmarks/bench_pipeline.py --world reference --scenario baseline \
        --start 2026-01-01 --end 2026-04-01 --out /tmp/bench --runs 3

Each run is a fresh `arrival-engine run` process (so peak RSS is per run, from the summary's
ru_maxrss); the floor (benchmarks/floor.py) is timed in its own process over the same S3
output right after each run, so S4 / floor is a ratio measured on the same machine state.
Medians are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run_args import add_partition_args

ROOT = Path(__file__).resolve().parents[1]
FLOOR_CODE = """
import datetime as dt, json, sys
from engine_core.pipeline import Run, RunConfig
sys.path.insert(0, {bench!r})
from floor import run_floor
cfg = RunConfig(world={world!r}, scenario={scenario!r},
                start=dt.datetime.fromisoformat({start!r}).replace(tzinfo=dt.UTC),
                end=dt.datetime.fromisoformat({end!r}).replace(tzinfo=dt.UTC),
                storage_root={out!r}, seed={seed})
eng = Run.open(cfg)
eng.ctx.arrays; eng.ctx.tz
res = run_floor(eng, eng.ctx.years[0], {floor_out!r})
print(json.dumps(res))
"""


def run_engine(args: argparse.Namespace) -> dict:
    cmd = [str(ROOT / ".venv/bin/arrival-engine"), "run", "--world", args.world, "--scenario",
           args.scenario, "--start", args.start, "--end", args.end, "--seed", str(args.seed),
           "--out", args.out, "--quiet"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"engine failed: {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    summary["process_wall_s"] = wall
    return summary


def run_floor(args: argparse.Namespace) -> dict:
    floor_out = os.path.join(args.out, "_floor")
    shutil.rmtree(floor_out, ignore_errors=True)
    code = FLOOR_CODE.format(bench=str(ROOT / "benchmarks"), world=args.world,
                             scenario=args.scenario, start=args.start, end=args.end,
                             out=args.out, seed=args.seed, floor_out=floor_out)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    shutil.rmtree(floor_out, ignore_errors=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    add_partition_args(p)
    p.add_argument("--out", default="/tmp/arrival-bench")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-floor", action="store_true")
    args = p.parse_args()
    rows = []
    for i in range(args.runs):
        s = run_engine(args)
        f = None if args.no_floor else run_floor(args)
        st = s["states"]
        row = {f"{k}_s": st[k]["elapsed_s"] for k in ("s1", "s2", "s3", "s4", "s5") if k in st}
        row["s1_s4_s"] = sum(row.get(f"s{k}_s", 0.0) for k in range(1, 5))
        row["events"] = s["events"]
        row["s4_events_per_s"] = st["s4"]["events_per_s"]
        row["peak_rss_mb"] = s["peak_rss_mb"]
        row["jit_compile_s"] = s.get("jit_compile_s", 0.0)
        row["passed"] = s["passed"]
        if f:
            row["floor_s"] = f["elapsed_s"]
            row["s4_over_floor"] = row["s4_s"] / f["elapsed_s"]
        rows.append(row)
        print(f"run {i + 1}: " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                              for k, v in row.items()}), flush=True)
    keys = [k for k in rows[0] if k != "passed"]
    print("\n| metric | median | runs |\n| --- | --- | --- |")
    for k in keys:
        vals = [r[k] for r in rows]
        med = statistics.median(vals)
        fmt = (lambda v: f"{v:,.0f}") if k in ("events", "s4_events_per_s") else (
            lambda v: f"{v:.2f}")
        print(f"| {k} | {fmt(med)} | {', '.join(fmt(v) for v in vals)} |")
    print(f"| passed | {all(r['passed'] for r in rows)} | |")
    print(f"\nmachine: {os.cpu_count()} cpus; command: {' '.join(sys.argv)}")


if __name__ == "__main__":
    main()
