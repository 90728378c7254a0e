"""The S4 rules over one published partition, phase by phase and thread by thread.

    .venv/bin/python benchmarks/bench_rules_phases.py --world reference \
        --start 2026-01-01 --end 2026-04-01 --out /tmp/arrival-rules

The partition must already be published in ``--out`` (``bench_rules.py --out`` publishes
S1–S4 there). The process opens the run and builds the world arrays and tz tables, then calls
``s4_rules`` (every S4 rule over every row, no memo) with the phases of its shards' passes
and of the merge wrapped in timers: each phase's CPU (``getrusage``, every thread of the
process, so threads working beside a phase count in it) and wall, summed over its calls.
Meanwhile every thread's CPU is read from ``/proc/self/task`` every ``--every`` seconds;
Python threads are named after ``threading``'s names, the others (Arrow's and the OpenMP
pool's) after the kernel's. Phases nest: ``run`` holds a shard's ``_scan`` and the others.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import engine_core.checks.rules_s4 as rules
from engine_core.pipeline import Run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_args import add_partition_args, process_cpu_s, run_config  # noqa: E402

MODULE_PHASES = ("plan_s4_rules", "clock_reference", "id_classes", "merge_partials")
SHARD_PHASES = ("run", "_scan", "_s3_cells", "_sample", "_rederive", "_conservation",
                "_weekend_events")


def timed(name: str, f: Callable, acc: dict[str, list[float]]) -> Callable:
    def wrapper(*a, **k):
        c0, t0 = process_cpu_s(), time.perf_counter()
        try:
            return f(*a, **k)
        finally:
            x = acc.setdefault(name, [0.0, 0.0, 0])
            x[0] += process_cpu_s() - c0
            x[1] += time.perf_counter() - t0
            x[2] += 1

    return wrapper


class ThreadCpu:
    """Every thread's CPU seconds, by name, read from /proc every ``every`` seconds (a thread
    counts with its last reading)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.last: dict[str, tuple[str, float]] = {}
        self.names: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
        self.tick = os.sysconf("SC_CLK_TCK")

    def _loop(self) -> None:
        while not self._stop.is_set():
            py = {t.native_id: t.name for t in threading.enumerate()}
            for tid in os.listdir("/proc/self/task"):
                try:
                    with open(f"/proc/self/task/{tid}/stat") as fh:
                        st = fh.read()
                except OSError:
                    continue
                if int(tid) in py:
                    self.names[tid] = py[int(tid)]
                name = self.names.get(tid, f"{st[st.index('(') + 1 : st.rindex(')')]}:{tid}")
                f = st.rsplit(")", 1)[1].split()
                self.last[tid] = (name, (int(f[11]) + int(f[12])) / self.tick)
            self._stop.wait(self.every)

    def __enter__(self) -> ThreadCpu:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def by_name(self) -> Counter:
        out: Counter = Counter()
        for name, c in self.last.values():
            out[name] += c
        return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    add_partition_args(p)
    p.add_argument("--out", required=True, help="storage root holding the published run")
    p.add_argument("--every", type=float, default=0.2)
    args = p.parse_args(argv)
    run = Run.open(run_config(args, args.out))
    _ = (run.ctx.arrays, run.ctx.tz)  # built before the rules are timed
    year = run.ctx.years[0]
    acc: dict[str, list[float]] = {}
    saved = {name: getattr(rules, name) for name in MODULE_PHASES}
    saved_shard = {name: getattr(rules.EventChecks, name) for name in SHARD_PHASES}
    for name, f in saved.items():
        setattr(rules, name, timed(name, f, acc))
    for name, f in saved_shard.items():
        setattr(rules.EventChecks, name, timed(name, f, acc))
    try:
        with ThreadCpu(args.every) as threads:
            c0, t0 = process_cpu_s(), time.perf_counter()
            results = rules.s4_rules(run.ctx, run.store, year)
            c1, t1 = process_cpu_s(), time.perf_counter()
    finally:  # the module as it was (the script is also called in-process)
        for name, f in saved.items():
            setattr(rules, name, f)
        for name, f in saved_shard.items():
            setattr(rules.EventChecks, name, f)
    ok = all(r.passed for r in results)
    print(f"S4 rules: CPU {c1 - c0:.2f} s, wall {t1 - t0:.2f} s, {(c1 - c0) / (t1 - t0):.2f} "
          f"cores; {len(results)} rules, {'every one passing' if ok else 'SOME FAILING'}")
    print(f"(the process before the rules: {c0:.2f} CPU-s, in the threads' figures below)")
    print("\nphase            calls   CPU s  wall s")
    for name, (c, w, n) in sorted(acc.items(), key=lambda kv: -kv[1][0]):
        print(f"{name:<16} {n:5d} {c:7.2f} {w:7.2f}")
    print("\nthread (whole process)           CPU s")
    by_thread = threads.by_name()
    for name, c in by_thread.most_common():
        if c >= 0.05:
            print(f"{name:<32} {c:6.2f}")
    return {"cpu": c1 - c0, "wall": t1 - t0, "passed": ok, "rules": len(results),
            "phases": {k: {"cpu": v[0], "wall": v[1], "calls": v[2]} for k, v in acc.items()},
            "threads": dict(by_thread)}


if __name__ == "__main__":
    main()
