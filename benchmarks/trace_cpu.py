"""A command's CPU use (cores: CPU seconds of every thread per wall second) and resident
memory over its run, sampled from /proc, in bins of a few seconds.

    .venv/bin/python benchmarks/trace_cpu.py --every 0.25 --bin 4 --samples trace.txt -- \\
        .venv/bin/arrival-engine-dagster --partition 'baseline|2026' --world reference \\
        --storage-root /tmp/year

The command runs as a child process; every ``--every`` seconds its utime + stime and VmRSS
are read from ``/proc/<pid>``. Printed at the end: per ``--bin`` seconds the mean cores and
the largest VmRSS, then the wall, the peak sampled RSS and the mean cores of the whole run.
``--samples FILE`` keeps every sample (seconds, cores since the previous sample, VmRSS KB).
Only the child itself is sampled (the engine's CLIs run every state in their own process).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time


def read(pid: int, tick: int) -> tuple[float, int] | None:
    """(CPU seconds, VmRSS KB) of ``pid``, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        rss = 0
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return (int(fields[11]) + int(fields[12])) / tick, rss


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser()
    p.add_argument("--every", type=float, default=0.25, help="seconds between samples")
    p.add_argument("--bin", type=float, default=4.0, help="seconds per printed line")
    p.add_argument("--samples", default=None, help="file for every sample")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- then the command")
    args = p.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        p.error("a command to run is needed after --")
    tick = os.sysconf("SC_CLK_TCK")
    t0 = time.perf_counter()
    child = subprocess.Popen(cmd)
    samples: list[tuple[float, float, int]] = []
    last: tuple[float, float] | None = None
    while child.poll() is None:
        got = read(child.pid, tick)
        now = time.perf_counter() - t0
        if got is not None:
            if last is not None and now > last[0]:
                samples.append((now, (got[0] - last[1]) / (now - last[0]), got[1]))
            last = (now, got[0])
        time.sleep(args.every)
    wall = time.perf_counter() - t0
    if args.samples:
        with open(args.samples, "w") as fh:
            fh.writelines(f"{t:.2f} {c:.3f} {r}\n" for t, c, r in samples)
    bins: dict[int, list[tuple[float, int]]] = {}
    for t, c, r in samples:
        bins.setdefault(int(t // args.bin), []).append((c, r))
    print(f"{'seconds':>13}  cores  max VmRSS KB", file=sys.stderr)
    for k in sorted(bins):
        cs = [c for c, _ in bins[k]]
        print(f"{k * args.bin:6g}-{(k + 1) * args.bin:5g}s  {sum(cs) / len(cs):5.2f}  "
              f"{max(r for _, r in bins[k]):12,d}", file=sys.stderr)
    peak = max((r for _, _, r in samples), default=0)
    mean = sum(c for _, c, _ in samples) / len(samples) if samples else 0.0
    print(f"exit {child.returncode}; wall {wall:.2f} s; peak sampled VmRSS {peak:,d} KB; "
          f"mean {mean:.2f} cores", file=sys.stderr)
    return {"returncode": child.returncode, "wall": wall, "peak_rss_kb": peak,
            "mean_cores": mean, "samples": len(samples)}


if __name__ == "__main__":
    sys.exit(main()["returncode"])
