"""Scaling benchmark: worlds × horizons, one fresh `arrival-engine run` process each.

    .venv/bin/python benchmarks/bench_scaling.py --worlds tiny,small,reference,large \
        --horizons week,month,quarter --out /tmp/arrival-scaling --results docs/scaling

For every (world, horizon) it records the process wall time, the events, events per second
(whole run: events / wall; and S4 alone), the peak RSS of the run (the summary's
``ru_maxrss``, with the state after which it was reached), and the bytes written per event
(the event partition; the JSON also has the whole run directory, hard links counted once).
The output of a run is deleted before the next one starts. A run whose estimated output
(expected arrivals × the bytes per event of the last run of a million events or more, × 1.5)
would not fit on the disk is skipped and listed as such.

Writes ``<results>.json`` (every row), ``<results>.md`` (the table) and ``<results>.png``
(events/s and peak RSS against events, one line per world). A warm-up run (tiny, one day)
goes first so that no measured run pays for the JIT compile.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START = dt.date(2026, 1, 1)
HORIZON_DAYS = {"day": 1, "week": 7, "month": 31, "quarter": 90, "year": 365}
STATES = ("s1", "s2", "s3", "s4", "s5")


def dir_bytes(path: str) -> int:
    """Bytes of the files under ``path``, a hard link counted once (the Iceberg catalogue
    links the published Parquet files rather than copying them)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def expected_arrivals(world: str, days: int) -> float:
    from engine_core.world.presets import load_preset

    return load_preset(world).weekly_arrivals * days / 7.0


def run_one(world: str, horizon: str, args: argparse.Namespace) -> dict:
    days = HORIZON_DAYS[horizon]
    end = START + dt.timedelta(days=days)
    out = os.path.join(args.out, f"{world}-{horizon}")
    shutil.rmtree(out, ignore_errors=True)
    cmd = [str(ROOT / ".venv/bin/arrival-engine"), "run", "--world", world, "--scenario",
           args.scenario, "--start", START.isoformat(), "--end", end.isoformat(), "--seed",
           str(args.seed), "--out", out, "--quiet"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.time_v:
        cmd = ["/usr/bin/time", "-v", *cmd]
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 1):
        shutil.rmtree(out, ignore_errors=True)
        sys.exit(f"{world} {horizon}: engine failed ({proc.returncode}): {proc.stderr[-2000:]}")
    s = json.loads(proc.stdout.strip().splitlines()[-1])
    time_v_kb = [int(line.split(":")[1]) for line in proc.stderr.splitlines()
                 if "Maximum resident set size" in line]
    st = s["states"]
    run_dir = s["out"]
    total_bytes = dir_bytes(out)
    events = int(s["events"])
    event_bytes = int(st["s4"]["output_bytes"])
    # ru_maxrss after each state: the state that first reached the run's peak raised it
    peaks = {k: float(st[k]["peak_rss_mb"]) for k in STATES if "peak_rss_mb" in st.get(k, {})}
    peak = float(s["peak_rss_mb"])
    peak_state = next((k for k in STATES if peaks.get(k, 0.0) >= peak), "s5")
    if peaks and min(peaks.values()) >= peak:
        peak_state = "world/S1"
    row = {
        "world": world, "horizon": horizon, "days": days,
        "start": START.isoformat(), "end": end.isoformat(),
        "events": events,
        "wall_s": round(wall, 2),
        "events_per_s": round(events / wall, 1) if wall else 0.0,
        "s4_s": round(float(st["s4"]["elapsed_s"]), 2),
        "s4_events_per_s": round(float(st["s4"]["events_per_s"]), 1),
        "s5_s": round(float(st["s5"]["elapsed_s"]), 2),
        "state_s": {k: round(float(st[k]["elapsed_s"]), 2) for k in STATES if k in st},
        "peak_rss_mb": peak,
        "time_v_max_rss_mb": round(time_v_kb[-1] / 1024, 1) if time_v_kb else None,
        "peak_rss_after_state_mb": peaks,
        "peak_state": peak_state,
        "event_bytes": event_bytes,
        "event_bytes_per_event": round(event_bytes / events, 3) if events else None,
        "run_bytes": total_bytes,
        "run_bytes_per_event": round(total_bytes / events, 3) if events else None,
        "passed": bool(s["passed"]),
        "failed_rules": s["failed_rules"],
        "load_avg_1m_at_start": round(load0, 2),
        "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
        "run_dir": run_dir,
    }
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
    return row


def markdown(rows: list[dict], skipped: list[str]) -> str:
    lines = [
        "| world | horizon | events | wall | events/s (run) | S4 events/s | peak RSS | peak after "
        "| event bytes/event | load avg | checks |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['world']} | {r['horizon']} ({r['days']} d) | {r['events']:,} | "
            f"{r['wall_s']:.1f} s | {r['events_per_s'] / 1e6:.2f} M | "
            f"{r['s4_events_per_s'] / 1e6:.2f} M | {r['peak_rss_mb']:,.0f} MB | "
            f"{r['peak_state']} | {r['event_bytes_per_event']:.2f} | "
            f"{r['load_avg_1m_at_start']:.1f}–{r['load_avg_1m_at_end']:.1f} | "
            f"{'PASS' if r['passed'] else 'FAIL ' + ' '.join(r['failed_rules'])} |"
        )
    for s in skipped:
        lines.append(f"\nSkipped: {s}")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (w, a, b) = plt.subplots(1, 3, figsize=(15, 4.4))
    worlds = list(dict.fromkeys(r["world"] for r in rows))
    for k, wname in enumerate(worlds):
        rs = sorted((r for r in rows if r["world"] == wname and r["events"]),
                    key=lambda r: r["events"])
        if not rs:
            continue
        colour = f"C{k}"
        x = [r["events"] for r in rs]
        w.plot(x, [r["wall_s"] for r in rs], "o-", color=colour, label=wname)
        a.plot(x, [r["events_per_s"] / 1e6 for r in rs], "o-", color=colour,
               label=f"{wname}, whole run")
        a.plot(x, [r["s4_events_per_s"] / 1e6 for r in rs], "s--", color=colour, alpha=0.6,
               label=f"{wname}, S4")
        b.plot(x, [r["peak_rss_mb"] / 1024 for r in rs], "o-", color=colour,
               label=f"{wname}, run")
        b.plot(x, [r["peak_rss_after_state_mb"].get("s4", math.nan) / 1024 for r in rs], "s--",
               color=colour, alpha=0.6, label=f"{wname}, S1–S4")
        for r in rs:
            w.annotate(r["horizon"], (r["events"], r["wall_s"]), fontsize=7,
                       textcoords="offset points", xytext=(3, -9))
    lo = min(r["events"] for r in rows if r["events"])
    hi = max(r["events"] for r in rows)
    ref = max((r for r in rows if r["events"]), key=lambda r: r["events"])
    w.plot([lo, hi], [ref["wall_s"] * lo / ref["events"], ref["wall_s"] * hi / ref["events"]],
           ":", color="grey", label="∝ events")
    w.set_yscale("log")
    w.set_ylabel("wall of the run (s)")
    w.set_title("cost")
    for ax in (w, a, b):
        ax.set_xscale("log")
        ax.set_xlabel("events in the run")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    a.set_ylabel("events / s (M)")
    a.set_ylim(bottom=0)
    b.set_ylabel("peak RSS (GiB)")
    b.set_ylim(bottom=0)
    b.axhline(2.5, color="grey", ls=":", lw=0.8)
    a.set_title("throughput")
    b.set_title("memory: the run, and up to the end of S4")
    fig.suptitle("arrival-engine run: worlds × horizons (one process per run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", default="tiny,small,reference")
    p.add_argument("--horizons", default="week,month")
    p.add_argument("--scenario", default="baseline")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="/tmp/arrival-scaling", help="where runs write (deleted)")
    p.add_argument("--results", default="scaling",
                   help="path prefix of the .json, .md and .png written")
    p.add_argument("--append", action="store_true",
                   help="add to the rows already in <results>.json (same world and horizon "
                   "replaced) instead of starting afresh")
    p.add_argument("--keep", action="store_true", help="keep each run's output")
    p.add_argument("--no-warmup", action="store_true")
    p.add_argument("--render-only", action="store_true",
                   help="run nothing: write the table and plot of <results>.json again")
    p.add_argument("--time-v", action="store_true",
                   help="run each process under /usr/bin/time -v and record its max RSS too")
    args = p.parse_args()
    worlds = [w for w in args.worlds.split(",") if w]
    horizons = [h for h in args.horizons.split(",") if h]
    for h in horizons:
        if h not in HORIZON_DAYS:
            sys.exit(f"unknown horizon {h!r}: one of {', '.join(HORIZON_DAYS)}")
    os.makedirs(args.out, exist_ok=True)
    json_path = f"{args.results}.json"
    rows: list[dict] = []
    skipped: list[str] = []
    if (args.append or args.render_only) and os.path.exists(json_path):
        with open(json_path) as fh:
            doc = json.load(fh)
        rows, skipped = doc["rows"], doc.get("skipped", [])
    if args.render_only:
        worlds = []
    if worlds and not args.no_warmup:
        run_one("tiny", "day", argparse.Namespace(**{**vars(args), "keep": False}))
    per_event = 12.0  # bytes an event takes on disk until a run measured it
    for world in worlds:
        for h in horizons:
            need = expected_arrivals(world, HORIZON_DAYS[h]) * per_event * 1.5
            free = shutil.disk_usage(args.out).free
            if need > free:
                skipped.append(f"{world} × {h}: needs ≈ {need / 1e9:.0f} GB, "
                               f"{free / 1e9:.0f} GB free")
                print(skipped[-1], flush=True)
                continue
            r = run_one(world, h, args)
            if r["events"] >= 1_000_000:  # small runs are mostly fixed overhead
                per_event = r["event_bytes_per_event"]
            rows = [x for x in rows if (x["world"], x["horizon"]) != (world, h)] + [r]
            print(json.dumps({k: r[k] for k in ("world", "horizon", "events", "wall_s",
                                                 "events_per_s", "peak_rss_mb", "peak_state",
                                                 "run_bytes_per_event", "passed")}),
                  flush=True)
            order = {w: i for i, w in enumerate(["tiny", "small", "reference", "large"])}
            rows.sort(key=lambda x: (order.get(x["world"], 99), x["days"]))
            meta = {"command": " ".join(sys.argv), "cpus": os.cpu_count(),
                    "written": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
            with open(json_path, "w") as fh:
                json.dump({"meta": meta, "rows": rows, "skipped": skipped}, fh, indent=1)
    table = markdown(rows, skipped)
    with open(f"{args.results}.md", "w") as fh:
        fh.write(table)
    if rows:
        plot(rows, f"{args.results}.png")
    print(table)


if __name__ == "__main__":
    main()
