"""Where S4's wall time goes: S4 re-run over a published S3 partition, with its phases timed.

    .venv/bin/python benchmarks/s4_timeline.py --world reference --scenario baseline \
        --start 2026-01-01 --end 2026-04-01 --out /tmp/arrival-bench

Run it after an `arrival-engine run` (or `benchmarks/bench_pipeline.py`) into the same
``--out``: it republishes that run's S4 partition in place. It prints S4's wall and CPU
seconds, the seconds spent in each phase (the kernel and chunk preparation on the main
thread, the Arrow table build and Parquet write in the writer threads, the final fsync of
the staging tree), and the process CPU used in each second of the run (2.0 = both cores
busy), which is how an idle tail shows up.
"""

from __future__ import annotations

import argparse
import os
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from run_args import add_partition_args, run_config

import engine_core.io.publish as publish
import engine_core.pipeline.s4_events as s4_mod
from engine_core.pipeline import Run
from engine_core.pipeline.jit import warm_up

SPENT: dict[str, float] = defaultdict(float)
_LOCK = threading.Lock()


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            with _LOCK:
                SPENT[name] += time.perf_counter() - t0

    return wrapper


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_partition_args(p)
    p.add_argument("--out", default="/tmp/arrival-bench")
    args = p.parse_args()
    eng = Run.open(run_config(args, args.out))
    eng.ctx.arrays, eng.ctx.tz  # noqa: B018  (load the world before the clock starts)
    warm_up()
    s4_mod.realise_groups = timed("kernel (main thread)", s4_mod.realise_groups)
    s4_mod.write_events = timed("Parquet write (writer threads)", s4_mod.write_events)
    s4_mod.sync_file = timed("fsync of each part (writer threads)", s4_mod.sync_file)
    publish._fsync_tree = timed("fsync of the staging tree", publish._fsync_tree)
    s4_mod.realise_chunk = timed("chunk preparation + kernel", s4_mod.realise_chunk)
    s4_mod.events_table = timed("Arrow table build (writer threads)", s4_mod.events_table)

    samples: list[tuple[float, float]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            t = os.times()
            samples.append((time.perf_counter(), t.user + t.system))
            time.sleep(0.25)

    threading.Thread(target=sample, daemon=True).start()
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    res = eng.state("s4")
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    done.set()
    publish.wait_discards()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(f"S4: {res.events:,} events, wall {wall:.2f} s, CPU {cpu:.1f} s "
          f"(system {r1.ru_stime - r0.ru_stime:.1f} s), {res.events / wall / 1e6:.2f} M events/s")
    for name, secs in SPENT.items():
        print(f"  {name}: {secs:.2f} s")
    per_second: dict[int, float] = defaultdict(float)
    for (ta, ca), (_tb, cb) in zip(samples, samples[1:], strict=False):
        if ta >= t0:
            per_second[int(ta - t0)] += cb - ca
    print("CPU per second of wall time: "
          + " ".join(f"{per_second[k]:.1f}" for k in sorted(per_second)))


if __name__ == "__main__":
    main()
