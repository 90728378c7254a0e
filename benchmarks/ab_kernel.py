"""A/B of two versions of the S4 kernel module, in one process, on real chunks.

    git show HEAD~1:engine_core/kernels/arrivals.py > /tmp/arrivals_a.py
    cp engine_core/kernels/arrivals.py /tmp/arrivals_b.py
    .venv/bin/python benchmarks/ab_kernel.py /tmp/arrivals_a.py /tmp/arrivals_b.py \
        --threads 1 --reps 12 --out /tmp/arrival-bench

Both files are imported as modules of their own (their kernels compile side by side), then
``realise_groups`` of each runs alternately on the first ``--chunks`` S4 chunks of a published
S3 partition (``--out``, as written by `arrival-engine run`), output buffers reused. On a
shared machine whose speed drifts by tens of percent within seconds, only such paired,
alternating timings compare; the script prints each side's minimum and median ns per event,
the median of the paired ratios B/A, and checks that both versions write identical outputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from types import ModuleType

import numba
import numpy as np
from run_args import add_partition_args, run_config

import engine_core.pipeline.s4_events as s4_mod
from engine_core.pipeline import Run
from engine_core.pipeline.jit import warm_up
from engine_core.schemas import EVENT_COLUMNS
from engine_core.timebase import US_PER_S

N_OUTPUTS = len(EVENT_COLUMNS)  # realise_groups' trailing output arrays


def load(name: str, path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        sys.exit(f"cannot import {path}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--reps", type=int, default=12)
    p.add_argument("--chunks", type=int, default=2)
    add_partition_args(p)
    p.add_argument("--out", default="/tmp/arrival-bench")
    args = p.parse_args()
    mod_a, mod_b = load("kernel_a", args.a), load("kernel_b", args.b)
    numba.set_num_threads(args.threads)
    eng = Run.open(run_config(args, args.out))
    warm_up()
    w = eng.ctx.window(eng.ctx.years[0])
    m = eng.ctx.arrays
    keys = {f: m.series_keys(f, eng.ctx.policy.namespace, args.seed)
            for f in ("S4.time.v1", "S4.site.v1", "S4.edge.v1", "S4.hybrid.v1")}
    calls: list[tuple] = []
    real = s4_mod.realise_groups

    def capture(*a: object) -> None:
        calls.append(a)
        real(*a)

    s4_mod.realise_groups = capture
    chunks = s4_mod.count_chunks(eng.ctx, eng.store, w, None)
    for _ in range(args.chunks):
        s4_mod.realise_chunk(eng.ctx, next(chunks), keys, w.bucket_seconds * US_PER_S, {},
                             dict.fromkeys(keys, 0))
    s4_mod.realise_groups = real
    n = sum(len(c[-1]) for c in calls)
    outs = {k: [[x.copy() for x in c[-N_OUTPUTS:]] for c in calls] for k in "ab"}

    def run(mod: ModuleType, side: str) -> float:
        t0 = time.perf_counter()
        for c, o in zip(calls, outs[side], strict=True):
            mod.realise_groups(*c[:-N_OUTPUTS], *o)
        return (time.perf_counter() - t0) / n * 1e9

    run(mod_a, "a"), run(mod_b, "b")  # compile or load both
    ta, tb = [], []
    for _ in range(args.reps):
        ta.append(run(mod_a, "a"))
        tb.append(run(mod_b, "b"))
    same = all(np.array_equal(x, y) for oa, ob in zip(outs["a"], outs["b"], strict=True)
               for x, y in zip(oa, ob, strict=True))
    print(f"{n:,} events, {args.threads} thread(s), {args.reps} paired reps")
    print(f"A {args.a}: min {min(ta):.1f}, median {statistics.median(ta):.1f} ns/event")
    print(f"B {args.b}: min {min(tb):.1f}, median {statistics.median(tb):.1f} ns/event")
    ratio = statistics.median(b / a for a, b in zip(ta, tb, strict=True))
    print(f"B/A, median of paired ratios: {ratio:.3f}")
    print("outputs identical" if same else "OUTPUTS DIFFER")


if __name__ == "__main__":
    main()
