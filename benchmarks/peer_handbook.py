"""Side by side with a peer: the Fraud-Detection-Handbook transaction simulator.

The Handbook (Le Borgne, Siblini, Lebichot, Bontempi: "Reproducible Machine Learning for Credit
Card Fraud Detection - Practical Handbook", section 3.2 "Transaction data simulator") draws, per
customer, a location on a 100 x 100 grid, a mean amount U(5, 100) and a mean number of
transactions per day U(0, 4); per day a Poisson number of transactions, each at a time
Normal(12:00, 20 000 s) of that day (times outside the day are dropped) and at a terminal drawn
uniformly among those within radius r of the customer. No weekday, holiday or payday effect.

Two steps, so the peer can live in its own environment:

    # 1. peer transactions to Parquet: the `synccfd` package (the simulator packaged, with a
    #    card-not-present variant) when importable, else the Handbook's design written out here
    python benchmarks/peer_handbook.py generate --out peer.parquet [--impl synccfd|handbook]
    # 2. the engine's fidelity report over them (project environment)
    python benchmarks/peer_handbook.py report peer.parquet --out DIR

Step 2 writes the peer's card-present transactions as an engine run directory (arrival events,
hourly bucket counts, a time grid) with a world of one series per terminal (zone UTC, the
Handbook has no time zones), and prints the report's verdicts. Checks that judge the engine's
own configuration (NB2 κ, latent co-movement, configured profile) have nothing to compare with
for the peer and come out "not judged". A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys

import numpy as np

START = "2026-01-01"
SECONDS_PER_DAY = 86400


def handbook_transactions(n_customers: int, n_terminals: int, days: int, radius: float,
                          seed: int):
    """The Handbook's simulator (card-present, legitimate transactions), vectorised."""
    import polars as pl

    rng = np.random.default_rng(seed)
    cxy = rng.uniform(0, 100, (n_customers, 2))
    rate = rng.uniform(0, 4, n_customers)
    txy = rng.uniform(0, 100, (n_terminals, 2))
    parts = []
    for c in range(n_customers):
        near = np.flatnonzero(((txy - cxy[c]) ** 2).sum(axis=1) < radius * radius)
        if near.size == 0:
            continue
        n_day = rng.poisson(rate[c], days)
        day = np.repeat(np.arange(days), n_day)
        t = rng.normal(SECONDS_PER_DAY / 2, 20000, day.size).astype(np.int64)
        keep = (t >= 0) & (t < SECONDS_PER_DAY)
        day, t = day[keep], t[keep]
        parts.append(pl.DataFrame({
            "TX_TIME_SECONDS": day * SECONDS_PER_DAY + t,
            "CUSTOMER_ID": np.full(day.size, c),
            "TERMINAL_ID": rng.choice(near, day.size),
        }))
    df = pl.concat(parts)
    origin = dt.datetime.fromisoformat(START)
    return df.with_columns(
        (pl.lit(origin) + pl.duration(seconds=pl.col("TX_TIME_SECONDS"))).alias("TX_DATETIME"),
        pl.lit("CP").alias("TX_TYPE"),
    )


def synccfd_transactions(n_customers: int, n_terminals: int, days: int, seed: int):
    import polars as pl
    from synccfd import DatasetGenerator

    gen = DatasetGenerator(n_customers=n_customers, n_terminals=n_terminals, nb_days=days,
                           start_date=START, random_state=seed)
    _, _, tx = gen.generate()
    tx = tx[tx["TX_FRAUD"] == 0] if "TX_FRAUD" in tx else tx
    return pl.from_pandas(tx[["TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_TYPE"]])


def cmd_generate(args: argparse.Namespace) -> None:
    impl = args.impl
    if impl == "auto":
        try:
            import synccfd  # noqa: F401

            impl = "synccfd"
        except ImportError:
            impl = "handbook"
    if impl == "synccfd":
        tx = synccfd_transactions(args.customers, args.terminals, args.days, args.seed)
    else:
        tx = handbook_transactions(args.customers, args.terminals, args.days, args.radius,
                                   args.seed)
    tx.select("TX_DATETIME", "CUSTOMER_ID", "TERMINAL_ID", "TX_TYPE").write_parquet(args.out)
    print(json.dumps({"impl": impl, "transactions": int(tx.height), "out": args.out}))


def cmd_report(args: argparse.Namespace) -> None:
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    from engine_core.fidelity import fidelity_report, load_targets, summary_line
    from engine_core.schemas import ARRIVAL_EVENTS, BUCKET_COUNTS, TIME_GRID
    from engine_core.world import World, canonical_world_tables
    from engine_core.world.fingerprint import fingerprint_canonical
    from engine_core.world.generator import generate_world

    tx = pl.read_parquet(args.peer).filter(pl.col("TX_TYPE") == "CP")
    ts = tx["TX_DATETIME"].cast(pl.Datetime("us")).cast(pl.Int64).to_numpy()
    order = np.lexsort((ts, tx["TERMINAL_ID"].to_numpy()))
    ts = ts[order]
    merchant = tx["TERMINAL_ID"].to_numpy()[order].astype(np.uint64) + 1
    n = ts.size
    hour_us = 3600 * 10**6
    bucket = ts // hour_us * hour_us
    start_us = int(bucket.min() // (86400 * 10**6) * 86400 * 10**6)
    n_hours = int((bucket.max() - start_us) // hour_us + 1)
    run = os.path.join(args.out, "peer000000000", "peer00000000", "seed=0")

    def part(ds: str) -> str:
        path = os.path.join(run, ds, "scenario=baseline", "year=2026")
        os.makedirs(path, exist_ok=True)
        return os.path.join(path, "part-00000.parquet")

    def dict_col(value: str) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), [value])

    seq = np.ones(n, np.int64)
    events = pa.table({
        "arrival_id": pa.array(np.arange(1, n + 1, dtype=np.uint64)),
        "merchant_id": pa.array(merchant),
        "legal_country_iso": dict_col("US"), "zone_tzid": dict_col("UTC"),
        "channel_group": dict_col("card_present"),
        "bucket_start_utc": pa.array(bucket, pa.timestamp("us", "UTC")),
        "arrival_seq": pa.array(seq),
        "ts_utc": pa.array(ts, pa.timestamp("us", "UTC")),
        "tzid": dict_col("UTC"), "ts_local": pa.array(ts, pa.timestamp("us")),
        "tzid_settlement": pa.nulls(n, pa.dictionary(pa.int32(), pa.string())),
        "ts_local_settlement": pa.nulls(n, pa.timestamp("us")),
        "site_id": pa.array(merchant), "edge_id": pa.nulls(n, pa.uint64()),
        "is_virtual": pa.array(np.zeros(n, bool)),
    }).cast(ARRIVAL_EVENTS)
    pq.write_table(events, part("arrival_events"), row_group_size=1 << 20)
    counts = (pl.DataFrame({"merchant_id": merchant, "b": bucket}).group_by("merchant_id", "b")
              .len().sort("merchant_id", "b"))
    m = counts.height

    def dict_m(value: str) -> pa.Array:
        return pa.DictionaryArray.from_arrays(pa.array(np.zeros(m, np.int32)), [value])

    pq.write_table(pa.table({
        "merchant_id": pa.array(counts["merchant_id"].to_numpy().astype(np.uint64)),
        "legal_country_iso": dict_m("US"), "zone_tzid": dict_m("UTC"),
        "channel_group": dict_m("card_present"),
        "bucket_start_utc": pa.array(counts["b"].to_numpy(), pa.timestamp("us", "UTC")),
        "mu": pa.array(np.zeros(m)),  # the peer states no mean: κ is not judged
        "count": pa.array(counts["len"].to_numpy().astype(np.int64)),
        "capped": pa.array(np.zeros(m, bool)),
    }).cast(BUCKET_COUNTS), part("bucket_counts"))
    starts = start_us + hour_us * np.arange(n_hours, dtype=np.int64)
    pq.write_table(pa.table({
        "bucket_index": pa.array(np.arange(n_hours, dtype=np.int64)),
        "bucket_abs": pa.array(starts // hour_us),
        "bucket_start_utc": pa.array(starts, pa.timestamp("us", "UTC")),
        "bucket_end_utc": pa.array(starts + hour_us, pa.timestamp("us", "UTC")),
        "duration_s": pa.array(np.full(n_hours, 3600, np.int64)),
    }).cast(TIME_GRID), part("time_grid"))

    # The peer's own world: one card-present series per terminal, the Handbook's time law
    # (Normal around noon, every day alike) as its configured shape.
    ids = np.unique(merchant)
    hours = np.arange(24) + 0.5
    day = np.exp(-0.5 * ((hours - 12) * 3600 / 20000) ** 2)
    shape = np.tile(day / day.sum() * 24, 7)
    weekly = np.bincount(np.searchsorted(ids, merchant), minlength=ids.size) / (n_hours / 168)
    cal = generate_world("tiny").tables["calendar"]
    tables = {
        "merchants": pa.table({"merchant_id": pa.array(ids), "demand_class": ["consumer_daytime"]
                               * ids.size, "virtual_mode": ["NON_VIRTUAL"] * ids.size,
                               "settlement_tzid": pa.nulls(ids.size, pa.string())}),
        "sites": pa.table({"merchant_id": pa.array(ids), "site_id": pa.array(ids),
                           "legal_country_iso": ["US"] * ids.size, "tzid": ["UTC"] * ids.size,
                           "weight": np.ones(ids.size)}),
        "edges": generate_world("tiny").tables["edges"].slice(0, 0),
        "series": pa.table({
            "merchant_id": pa.array(ids), "legal_country_iso": ["US"] * ids.size,
            "tzid": ["UTC"] * ids.size, "channel_group": ["card_present"] * ids.size,
            "shape": pa.array([shape.tolist()] * ids.size, pa.list_(pa.float64())),
            "scale": np.maximum(weekly, 1e-3)}),
        "calendar": cal.filter(pa.compute.equal(cal.column("legal_country_iso"), "__")),
        "scenarios": generate_world("tiny").tables["scenarios"],
    }
    tables = canonical_world_tables(tables)
    world = World(tables, fingerprint_canonical(tables), "handbook-peer")
    targets = load_targets()
    if args.fano_min_mean is not None:  # the peer's terminals are small: see docs
        targets = targets.model_copy(update={"dispersion": targets.dispersion.model_copy(
            update={"fano_min_mean": args.fano_min_mean})})
    report = fidelity_report(run, "baseline", dt.datetime.fromtimestamp(
        start_us / 1e6, dt.UTC).year, world=world, targets=targets)
    with open(os.path.join(args.out, "peer_fidelity.json"), "w", encoding="utf-8") as fh:
        json.dump(report, fh, indent=1, default=str)
    for c in report["checks"]:
        v = c["value"]
        print(f"{c['code']}: {c['passed']}  {json.dumps(v, default=str)[:160]}", file=sys.stderr)
    print(json.dumps(summary_line(report) | {"transactions": int(n)}, default=str))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", required=True)
    g.add_argument("--impl", choices=["auto", "synccfd", "handbook"], default="auto")
    g.add_argument("--customers", type=int, default=5000)
    g.add_argument("--terminals", type=int, default=10000)
    g.add_argument("--days", type=int, default=90)
    g.add_argument("--radius", type=float, default=5.0)
    g.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("report")
    r.add_argument("peer")
    r.add_argument("--out", required=True)
    r.add_argument("--fano-min-mean", type=float, default=None,
                   help="judge overdispersion over series-hours with a smaller mean count")
    args = p.parse_args()
    cmd_generate(args) if args.cmd == "generate" else cmd_report(args)


if __name__ == "__main__":
    main()
