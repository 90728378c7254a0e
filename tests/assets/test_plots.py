"""engine_assets.plots: bounded sampling of published datasets and PNG rendering."""

import datetime as dt

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from engine_assets import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write_parts(path, n_files=2, rows=10_000, row_group=1_000):
    path.mkdir(parents=True)
    for f in range(n_files):
        t = pa.table({"x": np.arange(rows) + f * rows, "y": np.ones(rows)})
        pq.write_table(t, path / f"part-{f:05d}.parquet", row_group_size=row_group)


def test_small_datasets_are_read_whole(tmp_path):
    _write_parts(tmp_path / "d")
    df = plots.read_sample(str(tmp_path / "d"), ["x"], max_rows=1_000_000)
    assert df.height == 20_000 and df["x"].to_list() == list(range(20_000))


def test_large_datasets_are_sampled_evenly_by_row_group(tmp_path):
    _write_parts(tmp_path / "d")
    df = plots.read_sample(str(tmp_path / "d"), ["x"], max_rows=5_000)
    assert 4_000 <= df.height <= 6_000
    # row groups from both files, not just the first ones
    assert df["x"].min() < 1_000 and df["x"].max() >= 10_000


def test_missing_dataset_gives_an_empty_frame(tmp_path):
    assert plots.read_sample(str(tmp_path / "nope"), ["x"]).is_empty()


def test_hour_of_week_starts_monday_midnight():
    ts = pl.Series(
        [
            dt.datetime(2026, 1, 5, 0, 30),
            dt.datetime(2026, 1, 11, 23, 59),
            dt.datetime(2026, 1, 7, 13),
        ]
    )
    assert plots.local_hour_of_week(ts).tolist() == [0, 167, 2 * 24 + 13]


def test_routing_shares_sum_to_one_per_series_and_merchant():
    events = pl.DataFrame(
        {
            "merchant_id": [1, 1, 1, 2, 2, 2],
            "legal_country_iso": ["DE", "DE", "DE", "FR", "FR", "FR"],
            "zone_tzid": ["Europe/Berlin"] * 3 + ["Europe/Paris"] * 3,
            "site_id": [10, 10, 11, None, None, 20],
            "edge_id": [None, None, None, 5, 6, None],
        }
    )
    shares = plots.realised_routing_shares(events)
    got = dict(zip(shares["target"], shares["share"], strict=True))
    assert got == {"site:10": 2 / 3, "site:11": 1 / 3, "site:20": 1.0, "edge:5": 0.5, "edge:6": 0.5}


def test_every_renderer_returns_a_png():
    rng = np.random.default_rng(0)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    hours = [start + dt.timedelta(hours=h) for h in range(24 * 30)]
    latent = pl.DataFrame(
        {
            "group_id": np.repeat(["a", "b"], len(hours)),
            "bucket_start_utc": hours * 2,
            "factor": np.exp(rng.normal(0, 0.3, 2 * len(hours))),
        }
    )
    mu = rng.lognormal(1.5, 1.0, 3_000)
    counts = pl.DataFrame(
        {
            "mu": mu,
            "count": rng.poisson(mu) + 1,
            "bucket_start_utc": [hours[i] for i in rng.integers(0, len(hours), 3_000)],
        }
    )
    grouping = pl.DataFrame({"group_id": ["a", "a", "b"], "demand_class": ["x", "y", "x"]})
    ts_local = pl.Series([h.replace(tzinfo=None) for h in hours])
    shares = pl.DataFrame({"target": ["site:1", "site:2"], "share": [0.4, 0.6]})
    expected = np.full(168, 1 / 168)
    for png in (
        plots.group_sizes_png(grouping),
        plots.latent_factor_png(latent),
        plots.count_dispersion_png(counts, kappa=30.0),
        plots.daily_arrivals_png(
            counts.group_by(pl.col("bucket_start_utc").dt.date().alias("day")).agg(
                pl.col("count").sum()
            )
        ),
        plots.weekly_profile_png(ts_local, expected),
        plots.routing_shares_png(shares, shares.with_columns(pl.lit(0.5).alias("share"))),
        plots.routing_shares_png(pl.DataFrame(schema={"target": pl.String, "share": pl.Float64})),
    ):
        assert png.startswith(PNG_MAGIC) and len(png) < 200_000


def test_expected_weekly_share_weights_shapes_by_scale_and_skips_virtual_only():
    flat, peaked = [1.0] * 168, [0.0] * 168
    peaked[10] = 5.0
    series = pl.DataFrame(
        {"merchant_id": [1, 2, 3], "shape": [flat, peaked, peaked], "scale": [168.0, 10.0, 1e6]}
    )
    merchants = pl.DataFrame(
        {"merchant_id": [1, 2, 3], "virtual_mode": ["NON_VIRTUAL", "HYBRID", "VIRTUAL_ONLY"]}
    )
    share = plots.expected_weekly_share(series, merchants)
    assert abs(share.sum() - 1.0) < 1e-12
    assert abs(share[0] - 1.0 / 178) < 1e-12 and abs(share[10] - 11.0 / 178) < 1e-12


def test_expected_routing_shares_follow_weights():
    sites = pl.DataFrame(
        {
            "merchant_id": [1, 1, 1],
            "site_id": [10, 11, 12],
            "legal_country_iso": ["DE", "DE", "FR"],
            "tzid": ["Europe/Berlin", "Europe/Berlin", "Europe/Paris"],
            "weight": [1.0, 3.0, 2.0],
        }
    )
    edges = pl.DataFrame({"merchant_id": [2, 2], "edge_id": [5, 6], "weight": [1.0, 1.0]})
    got = dict(plots.expected_routing_shares(sites, edges).iter_rows())
    assert got == {"site:10": 0.25, "site:11": 0.75, "site:12": 1.0, "edge:5": 0.5, "edge:6": 0.5}


def test_daily_counts_sum_every_row(tmp_path):
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    hours = [start + dt.timedelta(hours=h) for h in range(48)]
    path = tmp_path / "counts"
    path.mkdir()
    t = pa.table(
        {
            "bucket_start_utc": pa.array(hours, pa.timestamp("us", tz="UTC")),
            "count": pa.array([1] * 24 + [2] * 24, pa.int64()),
        }
    )
    pq.write_table(t, path / "part-00000.parquet", row_group_size=5)
    daily = plots.daily_counts(str(path))
    assert daily["count"].to_list() == [24, 48]


def test_few_huge_row_groups_are_sampled_across_their_rows(tmp_path):
    _write_parts(tmp_path / "d", n_files=1, rows=100_000, row_group=50_000)
    x = plots.read_sample(str(tmp_path / "d"), ["x"], max_rows=1_000)["x"].to_numpy()
    assert 900 <= len(x) <= 1_100
    assert x.min() < 1_000 and x.max() > 99_000  # spread, not the head of the first group
