"""Benchmark of S3 + S4 (+ the S4 rules) on a Dask cluster against the in-process run.

    .venv/bin/python benchmarks/bench_cluster.py --world reference --start 2026-01-01 \
        --end 2026-04-01 [--out DIR] [--shards N] [--json PATH]
    .venv/bin/python benchmarks/bench_cluster.py --overhead      # tiny partitions only
    .venv/bin/python benchmarks/bench_cluster.py --world reference --start 2026-03-02 \
        --end 2026-03-09 --shards 4 --profile-ab 3             # dask's profiler on/off

It prepares S1/S2 once in process, then times, over the same storage root:

- ``in-process``: S3, S4, the S4 rules with 2 Numba threads (as `arrival-engine run` does);
- ``cluster-1`` and ``cluster-2``: a real ``dask scheduler`` and 1 or 2 ``dask worker``
  processes on 127.0.0.1, each worker pinned to its own core (CPU affinity, inherited by its
  Numba and writer threads) with ``--nthreads 1``; S3 and S4 as merchant shards, the S4 rules
  as shards on the workers right after S4 is published (timed apart from S4's generation);

and prints the speed-up of 2 workers over 1 and the cluster's wall against the in-process
wall. ``--overhead`` runs tiny-world partitions of one day on 2 workers and reports
per-shard time, publish time and scheduler overhead (state wall − slowest shard − publish).
``--profile-ab N`` computes S3 once, then N rounds of: a fresh 1-worker cluster with dask's
statistical profiler on, one with it off (order alternating), each running S4 twice (the
second, warm, run counted) and reporting the CPU its shards cost the worker.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run_args import add_partition_args, run_config

from engine_core.cluster.coordinator import (
    ClusterSettings,
    compute_state,
    connect,
    disconnect,
    prepare_workers,
)
from engine_core.pipeline import Run, RunConfig

DASK = str(Path(sys.executable).parent / "dask")


class LocalCluster:
    """``dask scheduler`` + ``workers`` ``dask worker`` processes, worker i pinned to core i."""

    def __init__(self, workers: int, base: Path) -> None:
        self.base, self.n = base, workers
        self.sched_file = str(base / "scheduler.json")
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> LocalCluster:
        log = open(self.base / "cluster.log", "ab")  # noqa: SIM115
        self.procs.append(subprocess.Popen(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", self.sched_file],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        while not os.path.exists(self.sched_file):
            time.sleep(0.2)
        ncpu = os.cpu_count() or 1
        for i in range(self.n):
            core = i % ncpu
            self.procs.append(subprocess.Popen(
                [DASK, "worker", "--scheduler-file", self.sched_file, "--nthreads", "1",
                 "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "0"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=lambda core=core: os.sched_setaffinity(0, {core})))
        client = connect(ClusterSettings(self.sched_file))
        client.wait_for_workers(self.n, timeout=120)
        self.client = client
        return self

    def __exit__(self, *exc) -> None:
        disconnect(self.client)
        for p in reversed(self.procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _config(args: argparse.Namespace, root: str, threads: int | None) -> RunConfig:
    return run_config(args, root, threads=threads)


def time_variant(run: Run, cluster: LocalCluster | None, shards: int | None) -> dict:
    out: dict = {}
    if cluster is not None:  # steady state: every worker has opened the run (reported apart)
        t = time.perf_counter()
        prepare_workers(run, ClusterSettings(cluster.sched_file), cluster.client)
        out["prepare_workers_s"] = round(time.perf_counter() - t, 3)
    t0 = time.perf_counter()
    for state in ("s3", "s4"):
        t, cpu = time.perf_counter(), _cpu_s()
        if cluster is None:
            res = run.state(state)
        else:
            res = compute_state(run, state, ClusterSettings(cluster.sched_file, shards=shards),
                                cluster.client)
        # in process: this process's CPU over the state; on the cluster: the shards' CPU in
        # their workers (each a process of its own, one shard at a time)
        out[state] = {"wall_s": round(time.perf_counter() - t, 3), "rows": res.rows,
                      "cpu_s": round(res.metrics.get("shard_cpu_s_sum", _cpu_s() - cpu), 3),
                      **{k: v for k, v in res.metrics.items()
                         if k in ("shards", "publish_s", "shard_s_max", "shard_s_sum",
                                  "cluster_s", "worker_peak_rss_mb",
                                  "coordinator_rss_growth_mb")}}
    if cluster is None:
        t = time.perf_counter()
        rules = run.check("s4", remember=False, reuse=False)
        out["s4_rules"] = {"wall_s": round(time.perf_counter() - t, 3),
                           "passed": all(r.passed for r in rules), "where": "in process"}
        rules_s = 0.0
    else:  # the S4 rules ran on the workers inside the S4 step (engine_core/cluster/rules.py)
        m = res.metrics
        rules_s = float(m.get("rules_s", 0.0))
        out["s4_rules"] = {"wall_s": round(rules_s, 3),
                           "passed": bool(m.get("rules_on_cluster")) and not m.get("rules_failed"),
                           "where": ("workers" if m.get("rules_on_cluster")
                                     else f"not evaluated: {m.get('rules_error')}"),
                           "shards": m.get("rules_shards")}
    out["compute_wall_s"] = round(out["s3"]["wall_s"] + out["s4"]["wall_s"] - rules_s, 3)
    out["wall_s"] = round(time.perf_counter() - t0, 3)
    return out


def profile_ab(args: argparse.Namespace, base: Path) -> dict:
    """Warm S4 on one fresh worker with dask's profiler on and off, interleaved: the CPU its
    shards cost the worker (the sum of the shards' process CPU)."""
    run = Run.open(_config(args, str(base / "data"), 2))
    for state in ("world", "s1", "s2", "s3"):
        run.state(state)
    key = "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"
    saved = os.environ.get(key)
    out: dict = {"on": [], "off": []}
    try:
        for i in range(args.profile_ab):
            for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
                os.environ[key] = "True" if mode == "on" else "False"  # the workers inherit it
                where = base / f"ab{i}-{mode}"
                where.mkdir()
                with LocalCluster(1, where) as cluster:
                    settings = ClusterSettings(cluster.sched_file, shards=args.shards)
                    prepare_workers(run, settings, cluster.client)
                    compute_state(run, "s4", settings, cluster.client)  # warm
                    res = compute_state(run, "s4", settings, cluster.client)
                out[mode].append(round(res.metrics["shard_cpu_s_sum"], 3))
                print(f"round {i} profiler {mode}: S4 shards {out[mode][-1]} CPU-s",
                      file=sys.stderr, flush=True)
    finally:
        if saved is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_partition_args(p)
    p.add_argument("--shards", type=int, default=None)
    p.add_argument("--out", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--overhead", action="store_true",
                   help="tiny world, one-day partitions, 2 workers: overheads only")
    p.add_argument("--partitions", type=int, default=5, help="with --overhead")
    p.add_argument("--profile-ab", type=int, default=0, metavar="N",
                   help="N rounds of S4 on 1 worker, dask's profiler on / off")
    args = p.parse_args(argv)
    base = Path(args.out or tempfile.mkdtemp(prefix="bench-cluster-"))
    base.mkdir(parents=True, exist_ok=True)
    result: dict = {"world": args.world, "start": args.start, "end": args.end,
                    "cpus": os.cpu_count()}
    if args.profile_ab:
        result["profile_ab"] = profile_ab(args, base)
    elif args.overhead:
        args.world = "tiny"
        rows = []
        with LocalCluster(2, base) as cluster:
            for k in range(args.partitions):
                day = dt.date(2026, 3, 1) + dt.timedelta(days=k)
                args.start, args.end = str(day), str(day + dt.timedelta(days=1))
                run = Run.open(_config(args, str(base / "data"), 2))
                for state in ("world", "s1", "s2"):
                    run.state(state)
                v = time_variant(run, cluster, args.shards or 2)
                for state in ("s3", "s4"):
                    s = v[state]
                    rows.append({"day": args.start, "state": state, "wall_s": s["wall_s"],
                                 "shards": s["shards"], "shard_s_max": round(s["shard_s_max"], 3),
                                 "publish_s": round(s["publish_s"], 3),
                                 "scheduler_overhead_s": round(
                                     s["wall_s"] - s["shard_s_max"] - s["publish_s"], 3)})
        result["overhead"] = rows
    else:
        root = str(base / "data")
        run = Run.open(_config(args, root, 2))
        for state in ("world", "s1", "s2"):
            run.state(state)
        result["in_process_2_threads"] = time_variant(run, None, None)
        for n in (1, 2):
            (base / f"c{n}").mkdir(exist_ok=True)
            with LocalCluster(n, base / f"c{n}") as cluster:
                result[f"cluster_{n}"] = time_variant(run, cluster, args.shards)
        c1, c2 = result["cluster_1"], result["cluster_2"]
        ip = result["in_process_2_threads"]
        result["speedup_2_over_1"] = round(c1["compute_wall_s"] / c2["compute_wall_s"], 3)
        result["cluster_2_over_in_process"] = round(c2["wall_s"] / ip["wall_s"], 3)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
