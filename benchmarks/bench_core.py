"""Benchmark of the numeric core: Philox blocks/s and S4 arrival-kernel arrivals/s.

    python benchmarks/bench_core.py [--arrivals 20000000] [--series 1000] \
        [--blocks 200000000] [--repeat 3] [--json PATH]

Measures, after a warm-up, on 1 thread and on all cores:

- Philox2x64-10 blocks/s: an njit loop over counters (j, bucket) under one key, the pattern of
  every kernel (engine_core.rng.philox.philox_block);
- arrival-kernel arrivals/s: engine_core.kernels.arrivals.generate_events (placement, hybrid
  coin, alias routing, local and settlement clocks) on a synthetic world of ``--series``
  series over six zones, about ``--arrivals`` arrivals in one simulated year, fed in chunks of
  ~4 M events as S4 does; order_groups (the within-group sort) is timed separately.

Rates are given per wall-clock second and per CPU-second of the process (all threads): on a
shared machine the second is the better per-core figure.

JIT compile time is measured apart: two child processes share one fresh NUMBA_CACHE_DIR; the
first compiles everything (cold), the second loads the cache (warm). Each reports its import
time and the first-call time of the kernels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba as nb
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

US = 1_000_000
BUCKET_US = 3600 * US
YEAR_2026 = 490896  # first hourly bucket of 2026
HOURS = 8760
CHUNK_EVENTS = 4_000_000  # the S4 chunk size of the pipeline
TZIDS = [
    "UTC",
    "Europe/London",
    "Asia/Kolkata",
    "America/New_York",
    "Australia/Adelaide",
    "Asia/Tokyo",
]
P_HYBRID = 0.35


# ----------------------------------------------------------------------------- machine
def machine_info() -> dict:
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "numba": nb.__version__,
        "numpy": np.__version__,
        "numba_threads": nb.config.NUMBA_NUM_THREADS,
        "threading_layer": nb.config.THREADING_LAYER,
        "load_avg_1m_at_start": os.getloadavg()[0],
    }


# ----------------------------------------------------------------------------- Philox
def _philox_sweep_kernel():
    from engine_core.rng.philox import philox_block

    @nb.njit(parallel=True, nogil=True)
    def sweep(n_blocks, bucket, key):
        # Chunks are independent so threads share nothing; the XOR keeps the work alive.
        n_chunks = 256
        per = (n_blocks + n_chunks - 1) // n_chunks
        acc = np.zeros(n_chunks, np.uint64)
        for c in nb.prange(n_chunks):
            a = np.uint64(0)
            for j in range(c * per, min(n_blocks, (c + 1) * per)):
                o0, o1 = philox_block(np.uint64(j), np.uint64(bucket), key)
                a ^= o0 ^ o1
            acc[c] = a
        x = np.uint64(0)
        for c in range(n_chunks):
            x ^= acc[c]
        return x

    return sweep


def timed(fn, *args):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w0, time.process_time() - c0


def bench_philox(n_blocks: int, threads: int, repeat: int) -> dict:
    sweep = _philox_sweep_kernel()
    key = np.uint64(0x0123456789ABCDEF)
    nb.set_num_threads(threads)
    sweep(10_000, YEAR_2026, key)  # warm-up (compiles)
    walls, cpus = [], []
    for _ in range(repeat):
        _, wall, cpu = timed(sweep, n_blocks, YEAR_2026, key)
        walls.append(wall)
        cpus.append(cpu)
    return rates(n_blocks, walls, cpus, threads)


def rates(n: int, walls: list[float], cpus: list[float], threads: int) -> dict:
    best = min(range(len(walls)), key=walls.__getitem__)
    return {
        "threads": threads,
        "items": n,
        "wall_s_best": walls[best],
        "wall_s_median": statistics.median(walls),
        "per_s_best": n / walls[best],
        "per_s_median": n / statistics.median(walls),
        "per_cpu_s": n / cpus[best] if cpus[best] > 0 else float("nan"),
    }


# ----------------------------------------------------------------------------- world
def build_world(n_series: int, n_arrivals: int, seed: int = 7) -> dict:
    """A synthetic world: 2 series per merchant, 75 % physical / 15 % hybrid / 10 % virtual
    merchants, 1–8 sites per physical series, 1–6 edges per virtual-capable merchant, six zones
    (four with DST rules); rows on ~11 % of the year's hours, about 20 arrivals per row."""
    from engine_core.kernels.arrivals import MODE_HYBRID, MODE_PHYSICAL, MODE_VIRTUAL
    from engine_core.rng.samplers import alias_build
    from engine_core.rng.streams import series_stream, stream_keys

    rng = np.random.default_rng(seed)
    n_merchants = (n_series + 1) // 2
    m_mode = rng.choice(
        [MODE_PHYSICAL, MODE_HYBRID, MODE_VIRTUAL], size=n_merchants, p=[0.75, 0.15, 0.10]
    ).astype(np.int8)
    merchant = np.arange(n_series) // 2
    mode = m_mode[merchant]
    zone = rng.integers(0, len(TZIDS), n_series).astype(np.int32)

    site_n = np.where(mode == MODE_VIRTUAL, 0, rng.integers(1, 9, n_series)).astype(np.int64)
    site_lo = np.concatenate([[0], np.cumsum(site_n)[:-1]]).astype(np.int64)
    site_w = rng.lognormal(0.0, 1.0, int(site_n.sum()))
    site_zone = np.repeat(zone, site_n).astype(np.int32)

    m_edges = np.where(m_mode == MODE_PHYSICAL, 0, rng.integers(1, 7, n_merchants))
    m_edge_lo = np.concatenate([[0], np.cumsum(m_edges)[:-1]])
    edge_n = m_edges[merchant].astype(np.int64)
    edge_lo = np.where(edge_n > 0, m_edge_lo[merchant], 0).astype(np.int64)
    edge_w = rng.lognormal(0.0, 1.0, int(m_edges.sum()))
    edge_zone = rng.integers(0, len(TZIDS), int(m_edges.sum())).astype(np.int32)
    settle_zone = np.where((mode != MODE_PHYSICAL) & (merchant % 2 == 0), 0, -1).astype(np.int32)

    def tables(w, lo, n):
        prob = np.ones(w.size)
        alias = np.zeros(w.size, np.int64)
        for a, k in zip(lo.tolist(), n.tolist(), strict=True):
            if k:
                p, al = np.empty(k), np.empty(k, np.int64)
                alias_build(np.ascontiguousarray(w[a : a + k]), p, al)
                prob[a : a + k], alias[a : a + k] = p, al
        return prob, alias

    site_prob, site_alias = tables(site_w, site_lo, site_n)
    edge_prob, edge_alias = tables(edge_w, m_edge_lo, m_edges)

    names = [
        series_stream(int(m) + 1, "GB", TZIDS[z], ("card_present", "mixed")[i % 2])
        for i, (m, z) in enumerate(zip(merchant.tolist(), zone.tolist(), strict=True))
    ]
    keys = {
        f: stream_keys(f, "default", 42, names)
        for f in ("S4.time.v1", "S4.site.v1", "S4.edge.v1", "S4.hybrid.v1")
    }

    mean_count = 20
    rows_per_series = max(1, min(HOURS, n_arrivals // (n_series * mean_count)))
    series_col, bucket_col = [], []
    for s in range(n_series):
        hours = rng.choice(HOURS, size=rows_per_series, replace=False)
        series_col.append(np.full(rows_per_series, s, np.int64))
        bucket_col.append(YEAR_2026 + hours.astype(np.int64))
    row_series = np.concatenate(series_col)
    row_bucket = np.concatenate(bucket_col)
    counts = 1 + rng.negative_binomial(2.0, 2.0 / (2.0 + mean_count - 1), row_series.size)
    order = np.lexsort((row_series, row_bucket, merchant[row_series]))
    row_series, row_bucket, counts = row_series[order], row_bucket[order], counts[order]
    row_offset = np.zeros(row_series.size + 1, np.int64)
    np.cumsum(counts, out=row_offset[1:])
    return {
        "row_series": row_series,
        "row_bucket": row_bucket,
        "row_offset": row_offset,
        "merchant": merchant,
        "keys": keys,
        "mode": mode,
        "site_lo": site_lo,
        "site_n": site_n,
        "edge_lo": edge_lo,
        "edge_n": edge_n,
        "settle_zone": settle_zone,
        "site_prob": site_prob,
        "site_alias": site_alias,
        "site_zone": site_zone,
        "edge_prob": edge_prob,
        "edge_alias": edge_alias,
        "edge_zone": edge_zone,
    }


def chunks(world: dict) -> list[tuple[int, int]]:
    """Row ranges of ~CHUNK_EVENTS events, cut at (merchant, bucket) boundaries."""
    rs, rb, off = world["row_series"], world["row_bucket"], world["row_offset"]
    mids = world["merchant"][rs]
    new_group = np.ones(rs.size, np.bool_)
    new_group[1:] = (mids[1:] != mids[:-1]) | (rb[1:] != rb[:-1])
    starts = np.flatnonzero(new_group)
    out, a = [], 0
    while a < rs.size:
        target = off[a] + CHUNK_EVENTS
        k = np.searchsorted(off[starts], target, side="left")
        b = int(starts[k]) if k < starts.size else rs.size
        b = max(b, a + 1)
        out.append((a, b))
        a = b
    return out


class ArrivalBench:
    def __init__(self, world: dict, tz):
        from engine_core.kernels.arrivals import generate_events, order_groups

        self.w, self.tz = world, tz
        self.generate_events, self.order_groups = generate_events, order_groups
        self.parts = chunks(world)
        biggest = max(int(world["row_offset"][b] - world["row_offset"][a]) for a, b in self.parts)
        self.buf = {
            "ts": np.empty(biggest, np.int64),
            "aid": np.empty(biggest, np.uint64),
            "target": np.empty(biggest, np.int64),
            "virtual": np.empty(biggest, np.bool_),
            "zone": np.empty(biggest, np.int32),
            "local": np.empty(biggest, np.int64),
            "settle": np.empty(biggest, np.int64),
            "order": np.empty(biggest, np.int64),
        }

    def _chunk_rows(self, a: int, b: int):
        w = self.w
        off = w["row_offset"][a : b + 1] - w["row_offset"][a]
        return w["row_series"][a:b], w["row_bucket"][a:b], off

    def generate(self, a: int, b: int) -> int:
        w, tz, o = self.w, self.tz, self.buf
        rs, rb, off = self._chunk_rows(a, b)
        n = int(off[-1])
        k = w["keys"]
        self.generate_events(
            rs,
            rb,
            off,
            k["S4.time.v1"],
            k["S4.site.v1"],
            k["S4.edge.v1"],
            k["S4.hybrid.v1"],
            w["mode"],
            w["site_lo"],
            w["site_n"],
            w["edge_lo"],
            w["edge_n"],
            w["settle_zone"],
            w["site_prob"],
            w["site_alias"],
            w["site_zone"],
            w["edge_prob"],
            w["edge_alias"],
            w["edge_zone"],
            P_HYBRID,
            BUCKET_US,
            tz.zone_start,
            tz.trans_us,
            tz.offset_s,
            o["ts"][:n],
            o["aid"][:n],
            o["target"][:n],
            o["virtual"][:n],
            o["zone"][:n],
            o["local"][:n],
            o["settle"][:n],
        )
        return n

    def order(self, a: int, b: int) -> int:
        rs, rb, off = self._chunk_rows(a, b)
        n = int(off[-1])
        mids = self.w["merchant"][rs]
        new = np.ones(rs.size, np.bool_)
        new[1:] = (mids[1:] != mids[:-1]) | (rb[1:] != rb[:-1])
        first = np.flatnonzero(new)
        lo = np.append(off[first], n).astype(np.int64)
        self.order_groups(lo, rb[first] * BUCKET_US, self.buf["ts"][:n], self.buf["order"][:n])
        return n

    def run(self, threads: int, repeat: int) -> dict:
        nb.set_num_threads(threads)
        a, b = self.parts[0]
        self.generate(a, min(b, a + 100))  # warm-up
        self.order(a, min(b, a + 100))
        gen_w, gen_c, ord_w, ord_c = [], [], [], []
        total = 0
        for _ in range(repeat):
            gw = gc = ow = oc = 0.0
            total = 0
            for a, b in self.parts:
                n, w_, c_ = timed(self.generate, a, b)
                gw, gc = gw + w_, gc + c_
                total += n
                _, w_, c_ = timed(self.order, a, b)
                ow, oc = ow + w_, oc + c_
            gen_w.append(gw)
            gen_c.append(gc)
            ord_w.append(ow)
            ord_c.append(oc)
        return {
            "generate_events": rates(total, gen_w, gen_c, threads),
            "order_groups": rates(total, ord_w, ord_c, threads),
        }


# ----------------------------------------------------------------------------- JIT
def jit_probe() -> dict:
    """Run in a child process: import time and first-call time of each kernel.

    The benchmark's own Philox loop is not cached (it is defined here), so its first call is
    a compile in both runs; the engine kernels are cached (cache=True).
    """
    t0 = time.perf_counter()
    from engine_core.kernels.arrivals import order_groups  # noqa: F401
    from engine_core.rng import philox2x64_10
    from engine_core.tz import build_tz_tables

    out = {"engine_import_s": time.perf_counter() - t0}
    _, out["philox2x64_10_first_call_s"], _ = timed(
        philox2x64_10, np.arange(4, dtype=np.uint64), np.uint64(1), np.uint64(2)
    )
    sweep = _philox_sweep_kernel()
    _, out["bench_philox_loop_compile_s"], _ = timed(sweep, 1000, YEAR_2026, np.uint64(3))
    tz = build_tz_tables(TZIDS, 2026, 2026)
    world = build_world(20, 20_000, seed=1)
    bench = ArrivalBench(world, tz)
    a, b = bench.parts[0]
    _, out["generate_events_first_call_s"], _ = timed(bench.generate, a, b)
    _, out["order_groups_first_call_s"], _ = timed(bench.order, a, b)
    _, out["generate_events_second_call_s"], _ = timed(bench.generate, a, b)
    return out


def measure_jit() -> dict:
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache_dir:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
        res = {}
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--jit-probe"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
                cwd=REPO,
            )
            res[label] = json.loads(proc.stdout.strip().splitlines()[-1])
            res[label]["process_s"] = time.perf_counter() - t0
    return res


# ----------------------------------------------------------------------------- report
def fmt_rate(x: float) -> str:
    return f"{x / 1e6:8.1f} M/s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arrivals", type=int, default=20_000_000)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--blocks", type=int, default=200_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=str, default=None, help="also write the figures here")
    ap.add_argument("--jit-probe", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.jit_probe:
        print(json.dumps(jit_probe()))
        return 0

    from engine_core.tz import build_tz_tables

    info = machine_info()
    print(
        f"machine: {info['nproc']} CPUs, {info['cpu_model']}; python {info['python']}, "
        f"numba {info['numba']}, numpy {info['numpy']}; "
        f"load avg {info['load_avg_1m_at_start']:.2f}"
    )

    jit = measure_jit()
    print("\nJIT (fresh NUMBA_CACHE_DIR; cold = compile, warm = load from cache), seconds:")
    for key in (
        "engine_import_s",
        "philox2x64_10_first_call_s",
        "bench_philox_loop_compile_s",
        "generate_events_first_call_s",
        "order_groups_first_call_s",
        "generate_events_second_call_s",
        "process_s",
    ):
        print(f"  {key:32s} cold {jit['cold'][key]:7.3f}   warm {jit['warm'][key]:7.3f}")

    all_threads = nb.config.NUMBA_NUM_THREADS
    thread_counts = sorted({1, all_threads})

    philox = [bench_philox(args.blocks, t, args.repeat) for t in thread_counts]
    print(f"\nPhilox2x64-10 njit loop, {args.blocks:,} blocks, best of {args.repeat}:")
    for r in philox:
        print(
            f"  {r['threads']} thread(s): {fmt_rate(r['per_s_best'])} wall "
            f"(median {fmt_rate(r['per_s_median'])}), {fmt_rate(r['per_cpu_s'])} per CPU-s"
        )

    t0 = time.perf_counter()
    world = build_world(args.series, args.arrivals)
    tz = build_tz_tables(TZIDS, 2026, 2026)
    bench = ArrivalBench(world, tz)
    n_events = int(world["row_offset"][-1])
    print(
        f"\nsynthetic world: {args.series} series, {int(world['site_n'].sum())} sites, "
        f"{int(world['edge_n'].max(initial=0))} max edges/series, {len(TZIDS)} zones, "
        f"{world['row_series'].size:,} rows, {n_events:,} arrivals, "
        f"{len(bench.parts)} chunks (built in {time.perf_counter() - t0:.1f} s)"
    )
    arrivals = [bench.run(t, args.repeat) for t in thread_counts]
    for name in ("generate_events", "order_groups"):
        print(f"{name}, best of {args.repeat}:")
        for r in arrivals:
            x = r[name]
            print(
                f"  {x['threads']} thread(s): {fmt_rate(x['per_s_best'])} wall "
                f"({x['wall_s_best']:.2f} s; median {fmt_rate(x['per_s_median'])}), "
                f"{fmt_rate(x['per_cpu_s'])} per CPU-s"
            )
    info["load_avg_1m_at_end"] = os.getloadavg()[0]
    print(f"\nload avg at end {info['load_avg_1m_at_end']:.2f}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": info,
                    "args": vars(args),
                    "jit": jit,
                    "philox": philox,
                    "arrivals": arrivals,
                    "events": n_events,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
