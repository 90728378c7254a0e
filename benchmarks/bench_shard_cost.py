"""What S4 costs per core as merchant shards against the whole partition, without Dask.

    .venv/bin/python benchmarks/bench_shard_cost.py --world reference --start 2026-03-02 \
        --end 2026-03-09 --shards 4 --pairs 3 [--core 1] [--json PATH]

One process pinned to one core (``sched_setaffinity`` before anything starts a thread, so
the Numba and writer threads share it, as in a ``dask worker --nthreads 1`` pinned to a core)
and one Numba thread. S1–S3 are computed once; then, interleaved ``--pairs`` times (A B, then
B A, ...; three variants rotate):

- ``whole``: S4 over the whole partition (published, as in process);
- ``shards``: S4 over the partition's S4 shards (``plan_shards``), one after the other, each
  into its shard directory (dropped after), as a cluster worker runs them;
- ``shards_rekeyed``: the same with the world's series-key cache emptied before each shard,
  i.e. the keys derived once per shard as before they were kept with the world;

each timed as wall and process CPU (user + system, every thread), and split into phases by
wrapping S4's own functions: reading the counts (``count_chunks``), the kernel
(``realise_chunk``), writing part files (``_write_chunk``, CPU of the writer threads), the
series keys, and the rest. The ratio shards / whole of CPU is the per-core cost of cutting
the partition into shards, free of the scheduler, the network and other workers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import tempfile
import threading
import time
from collections import defaultdict

PHASES = ("counts", "kernel", "write_cpu", "keys")


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", default="reference")
    p.add_argument("--start", default="2026-03-02")
    p.add_argument("--end", default="2026-03-09")
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--pairs", type=int, default=3, help="rounds of every variant")
    p.add_argument("--core", type=int, default=None, help="pin to this core (default: last)")
    p.add_argument("--out", default=None, help="storage root (default: a temporary dir)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    core = args.core if args.core is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})  # before Numba or any pool starts a thread

    from engine_core.cluster.plan import plan_shards
    from engine_core.context import Shard
    from engine_core.pipeline import Run, RunConfig, s4_events
    from engine_core.world import arrays as world_arrays

    phases: dict[str, float] = defaultdict(float)
    lock = threading.Lock()

    def timed(name, fn, clock=time.perf_counter):
        def wrapper(*a, **k):
            t0 = clock()
            try:
                return fn(*a, **k)
            finally:
                with lock:
                    phases[name] += clock() - t0
        return wrapper

    orig_chunks = s4_events.count_chunks

    def count_chunks(*a, **k):
        it = orig_chunks(*a, **k)
        while True:
            t0 = time.perf_counter()
            try:
                chunk = next(it)
            except StopIteration:
                phases["counts"] += time.perf_counter() - t0
                return
            phases["counts"] += time.perf_counter() - t0
            yield chunk

    s4_events.count_chunks = count_chunks
    s4_events.realise_chunk = timed("kernel", s4_events.realise_chunk)
    s4_events._write_chunk = timed("write_cpu", s4_events._write_chunk, time.thread_time)
    world_arrays.WorldArrays.series_keys = timed("keys", world_arrays.WorldArrays.series_keys)

    root = args.out or tempfile.mkdtemp(prefix="bench-shard-cost-")
    cfg = RunConfig(world=args.world, scenario="baseline",
                    start=dt.datetime.fromisoformat(args.start).replace(tzinfo=dt.UTC),
                    end=dt.datetime.fromisoformat(args.end).replace(tzinfo=dt.UTC),
                    storage_root=root, threads=1)
    run = Run.open(cfg)
    for state in ("s1", "s2", "s3"):
        run.state(state)
    shards = plan_shards(run.ctx, run.store, "s4", args.shards)
    run.state("s4")  # warm: kernels compiled, page cache, allocator

    def whole() -> None:
        run.state("s4")

    def sharded(rekey: bool = False) -> None:
        for s in shards:
            if rekey:
                run.ctx.arrays._keys.clear()
            shard = Shard(s.lo, s.hi, "bench")
            run.state("s4", shard=shard)
            for w in run.ctx.windows:
                shutil.rmtree(run.store.shard_path("arrival_events", w.year, shard.name))

    variants = {"whole": whole, "shards": sharded,
                "shards_rekeyed": lambda: sharded(rekey=True)}
    results: dict[str, list[dict[str, float]]] = {k: [] for k in variants}
    names = list(variants)
    for i in range(args.pairs):
        order = names[i % 3:] + names[:i % 3]
        for name in order:
            phases.clear()
            t0, c0 = time.perf_counter(), _cpu()
            variants[name]()
            row = {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - c0,
                   **{ph: phases.get(ph, 0.0) for ph in PHASES}}
            row["rest_s"] = row["wall_s"] - row["counts"] - row["kernel"] - row["keys"]
            results[name].append(row)
            print(f"pair {i} {name:6s} " + " ".join(f"{k}={v:.3f}" for k, v in row.items()),
                  flush=True)
    med = {name: {k: statistics.median(r[k] for r in rows) for k in rows[0]}
           for name, rows in results.items()}
    ratios = {v: [s["cpu_s"] / w["cpu_s"] for s, w in zip(results[v], results["whole"],
                                                            strict=True)]
              for v in ("shards", "shards_rekeyed")}
    print(f"shards={len(shards)} core={core} load={os.getloadavg()[0]:.1f}")
    for name, m in med.items():
        print(f"median {name:6s} " + " ".join(f"{k}={v:.3f}" for k, v in m.items()))
    for v, rs in ratios.items():
        print(f"cpu {v}/whole per round: " + " ".join(f"{r:.3f}" for r in rs)
              + f"  median {statistics.median(rs):.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"args": vars(args), "shards": len(shards), "results": results,
                       "median": med, "cpu_ratio": ratios}, fh, indent=2)
    if args.out is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
