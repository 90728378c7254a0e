"""JIT benchmark: compile time with an empty Numba cache, load time with a filled one.

    .venv/bin/python benchmarks/bench_jit.py --runs 3

Each measurement is a fresh process with its own ``NUMBA_CACHE_DIR`` (a new temporary
directory for "cold", the one the cold run filled for "warm"):

1. ``warm_up()`` — every pipeline kernel called once — with each kernel's first-call seconds;
2. a whole tiny-world run (``arrival-engine run``, S1–S5, so the validation kernels too),
   whose cold − warm wall time is what compiling costs a first run; and the same cold run
   with the background compiles switched off (their markers placed in the empty cache), so
   every kernel compiles in the run's own process, one after another, for comparison.

Medians over ``--runs`` are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine_core.kernels.precompile import GROUPS, marker_path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = str(ROOT / ".venv/bin/python") if (ROOT / ".venv/bin/python").exists() else sys.executable
WARM_UP = """
import json, time
t0 = time.perf_counter()
from engine_core.pipeline.jit import warm_up
t_import = time.perf_counter() - t0
timings = {}
total = warm_up(timings)
print(json.dumps({"import_s": t_import, "warm_up_s": total, **timings}))
"""
RUN = [
    "-m", "engine_core.cli", "run", "--world", "tiny", "--scenario", "baseline",
    "--start", "2026-01-01", "--end", "2026-01-08", "--quiet",
]


def in_process(code_or_args: list[str], cache: str) -> tuple[float, str]:
    env = {**os.environ, "NUMBA_CACHE_DIR": cache}
    t0 = time.perf_counter()
    proc = subprocess.run([PYTHON, *code_or_args], env=env, cwd=ROOT, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"failed: {proc.stderr[-2000:]}")
    return wall, proc.stdout.strip().splitlines()[-1]


def one_round() -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-jit-") as tmp:
        cache = os.path.join(tmp, "numba")
        for phase in ("cold", "warm"):
            _, line = in_process(["-c", WARM_UP], cache)
            for k, v in json.loads(line).items():
                out[f"{phase} {k}"] = v
        # a whole run with its own empty cache, then again with the cache it filled
        cache = os.path.join(tmp, "numba-run")
        for phase in ("cold", "warm"):
            wall, _ = in_process([*RUN, "--out", os.path.join(tmp, f"out-{phase}")], cache)
            out[f"{phase} tiny run wall_s"] = wall
        # the same cold run with every kernel compiled in the run's own process (as before
        # the background compiles): the markers say they are cached, so none starts
        cache = os.path.join(tmp, "numba-serial")
        os.makedirs(cache)
        for group in GROUPS:
            marker_path(cache, group).write_text("pretend\n")
        wall, _ = in_process([*RUN, "--out", os.path.join(tmp, "out-serial")], cache)
        out["cold tiny run, no background compile, wall_s"] = wall
    out["tiny run compile_s (cold - warm)"] = (
        out["cold tiny run wall_s"] - out["warm tiny run wall_s"]
    )
    out["tiny run compile_s without the background compile"] = (
        out["cold tiny run, no background compile, wall_s"] - out["warm tiny run wall_s"]
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rounds = []
    for i in range(args.runs):
        r = one_round()
        rounds.append(r)
        print(f"round {i + 1}: " + json.dumps({k: round(v, 2) for k, v in r.items()}),
              flush=True)
    print("\n| measurement | median s | runs |\n| --- | --- | --- |")
    for key in rounds[0]:
        vals = [r[key] for r in rounds]
        print(f"| {key} | {statistics.median(vals):.2f} | "
              f"{', '.join(f'{v:.2f}' for v in vals)} |")


if __name__ == "__main__":
    main()
