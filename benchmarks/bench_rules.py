"""S4 rules against S4 generation: CPU time (user + system, every thread) and wall.

    .venv/bin/python benchmarks/bench_rules.py --world reference \
        --start 2026-01-01 --end 2026-04-01 --out /tmp/arrival-rules --runs 5

First S1–S4 run once into ``--out`` (skipped with ``--reuse`` when the partition is already
published there). Then, ``--runs`` times, interleaved: S4 generation (``Run.state("s4")``,
which republishes the same bytes) and the S4 rules (``s4_rules(ctx, store, year)``: every S4
rule over every row, no memo), each in a fresh process. A process opens the run and builds
the world arrays and tz tables first; only the call itself is measured, as a
``getrusage(RUSAGE_SELF)`` delta (user + system of every thread of the process) and a
``perf_counter`` wall. Prints each run and the medians, and the ratio of the median CPU of
the rules to that of generation.

``--variant NAME=DIR`` (repeatable) adds the rules of another source tree (``DIR`` holds its
``engine_core`` package, put first on ``PYTHONPATH``), measured in the same interleaved
sequence: a before/after comparison on one machine state (``--gen-src DIR`` takes generation
from such a tree too, ``--only-variants`` leaves this tree's rules out: with snapshots of
both trees the source can change while the benchmark runs). A tree's first run compiles its
Numba cache unless ``--warm`` runs (unmeasured, generation and every variant) come first.
``--floor`` adds the floor (``benchmarks/floor.py`` over the same published S3 partition, in
a fresh process right after generation in each round) and prints generation / floor per run,
in CPU and in wall (on a quiet machine CPU is the steadier of the two; the wall of two
processes timed one after the other moves with the load between them).
``--verdicts FILE`` writes each variant's verdicts (code, passed, figures) of its last run as
JSON, so verdicts of two trees can be compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from run_args import add_partition_args

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import datetime as dt, json, resource, sys, time
from engine_core.pipeline import Run, RunConfig

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

cfg = RunConfig(world={world!r}, scenario={scenario!r},
                start=dt.datetime.fromisoformat({start!r}).replace(tzinfo=dt.UTC),
                end=dt.datetime.fromisoformat({end!r}).replace(tzinfo=dt.UTC),
                storage_root={out!r}, seed={seed})
run = Run.open(cfg)
run.ctx.arrays; run.ctx.tz
year = run.ctx.years[0]
what = {what!r}
out = {{"what": what}}
if what == "setup":
    for name in ("world", "s1", "s2", "s3", "s4"):
        t0 = time.perf_counter()
        res = run.state(name)
        out[name] = time.perf_counter() - t0
    out["events"] = res.events
elif what == "gen":
    c0, t0 = cpu(), time.perf_counter()
    res = run.state("s4")
    out.update(cpu=cpu() - c0, wall=time.perf_counter() - t0, events=res.events)
elif what == "floor":
    import shutil
    sys.path.insert(0, {bench!r})
    from floor import run_floor
    floor_out = {out!r} + "/_floor"
    c0, t0 = cpu(), time.perf_counter()
    res = run_floor(run, year, floor_out)
    out.update(cpu=cpu() - c0, wall=time.perf_counter() - t0, events=res["events"])
    shutil.rmtree(floor_out, ignore_errors=True)
else:
    from engine_core.checks.rules_s4 import s4_rules
    c0, t0 = cpu(), time.perf_counter()
    results = s4_rules(run.ctx, run.store, year)
    out.update(cpu=cpu() - c0, wall=time.perf_counter() - t0)
    out["verdicts"] = [
        {{"code": r.code, "passed": r.passed, "figures": r.figures}} for r in results
    ]
print(json.dumps(out, default=str))
"""


def child(args: argparse.Namespace, what: str, src: str | None = None) -> dict:
    code = CHILD.format(world=args.world, scenario=args.scenario, start=args.start,
                        end=args.end, out=args.out, seed=args.seed, what=what,
                        bench=str(ROOT / "benchmarks"))
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    if args.threads:
        env["NUMBA_NUM_THREADS"] = str(args.threads)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT if src is None else src, env=env)
    if proc.returncode != 0:
        sys.exit(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser()
    add_partition_args(p)
    p.add_argument("--out", default="/tmp/arrival-rules-bench")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warm", type=int, default=0, help="unmeasured runs of each first")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--reuse", action="store_true", help="S1-S4 already published in --out")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--no-gen", action="store_true", help="measure the rules only")
    p.add_argument("--gen-src", default=None, metavar="DIR",
                   help="source tree of the generation measured (default this one)")
    p.add_argument("--only-variants", action="store_true",
                   help="measure the variants' rules, not this tree's")
    p.add_argument("--verdicts", default=None)
    p.add_argument("--floor", action="store_true",
                   help="also the floor (benchmarks/floor.py) after generation in each round")
    args = p.parse_args()
    if args.floor and args.no_gen:
        p.error("--floor compares the floor with generation: not with --no-gen")

    variants: list[tuple[str, str | None]] = [] if args.only_variants else [("rules", None)]
    for v in args.variant:
        name, _, src = v.partition("=")
        variants.append((name, os.path.abspath(src)))
    gen_src = os.path.abspath(args.gen_src) if args.gen_src else None
    if not args.reuse:
        setup = child(args, "setup")
        print(f"setup: {json.dumps(setup)}", flush=True)
    for _ in range(args.warm):
        if not args.no_gen:
            child(args, "gen", gen_src)
        for _name, src in variants:
            child(args, "rules", src)
    series: dict[str, list[dict]] = {"gen": []} if not args.no_gen else {}
    if args.floor:
        series["floor"] = []
    series.update({name: [] for name, _ in variants})
    last: dict[str, list] = {}
    for k in range(args.runs):
        order = ([("gen", gen_src, "gen")] if not args.no_gen else []) + (
            [("floor", None, "floor")] if args.floor else []) + [
            (name, src, "rules") for name, src in variants
        ]
        for name, src, what in order:
            r = child(args, what, src)
            series[name].append(r)
            if what == "rules":
                last[name] = r["verdicts"]
            print(f"run {k + 1} {name:>10}: cpu {r['cpu']:7.2f} s  wall {r['wall']:7.2f} s",
                  flush=True)
    med = {name: (statistics.median(r["cpu"] for r in rs),
                  statistics.median(r["wall"] for r in rs)) for name, rs in series.items()}
    print("\n| measured | CPU s (median) | wall s (median) | CPU / generation CPU |")
    print("| --- | --- | --- | --- |")
    for name, (c, w) in med.items():
        ratio = f"{c / med['gen'][0]:.3f}" if "gen" in med else "-"
        runs = ", ".join(f"{r['cpu']:.2f}" for r in series[name])
        print(f"| {name} | {c:.2f} ({runs}) | {w:.2f} | {ratio} |")
    if "gen" in med:
        for name, _ in variants:
            per_run = [r["cpu"] / g["cpu"] for r, g in zip(series[name], series["gen"],
                                                            strict=True)]
            print(f"{name}: per-run CPU ratios "
                  + ", ".join(f"{x:.3f}" for x in per_run)
                  + f"; median of ratios {statistics.median(per_run):.3f}")
    if args.floor:
        for key, label in (("cpu", "CPU"), ("wall", "wall")):
            per_run = [g[key] / f[key] for g, f in zip(series["gen"], series["floor"],
                                                       strict=True)]
            print(f"generation / floor, {label}: per run "
                  + ", ".join(f"{x:.3f}" for x in per_run)
                  + f"; median of ratios {statistics.median(per_run):.3f}")
    if args.verdicts:
        Path(args.verdicts).write_text(json.dumps(last, indent=1, default=str))
    print(f"(finished {time.strftime('%Y-%m-%d %H:%M:%S')})")


if __name__ == "__main__":
    main()
