"""Small diagnostic plots of published datasets, rendered to PNG bytes.

Readers here take a bounded, evenly spread sample of a dataset (whole row groups picked at a
regular stride over all part files), so a plot costs the same for a tiny world and for
half a billion events. Renderers use matplotlib's object API with the Agg canvas: no pyplot
state, no GUI backend, safe inside worker processes and threads. Only the Dagster surface draws
plots (the bytes go into asset metadata), so matplotlib is imported here and nowhere in
`engine_core`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from engine_core.io.files import dataset_files, filesystem_for

HOURS_PER_WEEK = 168
DEFAULT_SAMPLE_ROWS = 400_000
SAMPLE_MIN_GROUPS = 16
_DPI = 90
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# ----------------------------------------------------------------------------- reading
def read_sample(
    path: str, columns: Sequence[str], max_rows: int = DEFAULT_SAMPLE_ROWS
) -> pl.DataFrame:
    """Up to about ``max_rows`` rows of ``columns``: every row when the dataset is small (or
    ``max_rows`` <= 0); otherwise evenly spaced rows from at least ``SAMPLE_MIN_GROUPS`` row
    groups spread evenly over all part files. Rows are sorted by merchant in the large
    datasets, so spreading the sample is what keeps it representative."""
    fs, _ = filesystem_for(path)
    opened = [pq.ParquetFile(fs.open_input_file(name)) for name in dataset_files(path)]
    groups = [(pf, g) for pf in opened for g in range(pf.metadata.num_row_groups)]
    if not groups:
        return pl.DataFrame()
    total = sum(pf.metadata.row_group(g).num_rows for pf, g in groups)
    if max_rows <= 0 or total <= max_rows:
        tables = [pf.read_row_group(g, columns=list(columns)) for pf, g in groups]
    else:
        mean_rows = total / len(groups)
        n_pick = min(len(groups), max(SAMPLE_MIN_GROUPS, math.ceil(max_rows / mean_rows)))
        picks = np.unique(np.linspace(0, len(groups) - 1, n_pick).round().astype(np.int64))
        per_group = math.ceil(max_rows / len(picks))
        tables = []
        for i in picks:
            pf, g = groups[i]
            t = pf.read_row_group(g, columns=list(columns))
            if t.num_rows > per_group:
                t = t.take(np.linspace(0, t.num_rows - 1, per_group).astype(np.int64))
            tables.append(t)
    for pf in opened:
        pf.close()
    return pl.from_arrow(pa.concat_tables(tables))


# ----------------------------------------------------------------------------- rendering
def _figure(width: float = 8.0, height: float = 3.2, ncols: int = 1) -> tuple[Figure, list]:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def _empty(title: str) -> bytes:
    fig, (ax,) = _figure(6.0, 1.6)
    ax.set_axis_off()
    ax.text(0.5, 0.5, f"{title}: no rows", ha="center", va="center")
    return _png(fig)


def group_sizes_png(grouping: pl.DataFrame) -> bytes:
    """S1: how many series each latent group holds, and series per demand class."""
    if grouping.is_empty():
        return _empty("grouping")
    sizes = grouping.group_by("group_id").len()["len"].to_numpy()
    by_class = grouping.group_by(pl.col("demand_class").cast(pl.String)).len().sort("demand_class")
    fig, (ax0, ax1) = _figure(ncols=2)
    bins = np.arange(0.5, sizes.max() + 1.5) if sizes.max() <= 40 else 30
    ax0.hist(sizes, bins=bins, color="#4477aa")
    ax0.set_xlabel("series per group")
    ax0.set_ylabel("groups")
    ax0.set_title(f"{len(sizes)} groups, {int(sizes.sum())} series")
    ax1.barh(by_class["demand_class"].to_list(), by_class["len"].to_numpy(), color="#66ccee")
    ax1.set_xlabel("series")
    ax1.tick_params(axis="y", labelsize=7)
    ax1.set_title("series per demand class")
    return _png(fig)


def latent_factor_png(latent: pl.DataFrame, n_groups: int = 3, days: int = 14) -> bytes:
    """S2: the latent factor over the first ``days`` days for a few groups, and the
    distribution of every sampled factor (log scale; its mean should be close to 1)."""
    if latent.is_empty():
        return _empty("latent intensity")
    latent = latent.with_columns(pl.col("group_id").cast(pl.String))
    ids = latent["group_id"].unique().sort().to_list()
    pick = [ids[i] for i in np.linspace(0, len(ids) - 1, min(n_groups, len(ids))).astype(int)]
    t0 = latent["bucket_start_utc"].min()
    window = latent.filter(
        pl.col("group_id").is_in(pick),
        pl.col("bucket_start_utc") < t0 + pl.duration(days=days),
    ).sort("bucket_start_utc")
    fig, (ax0, ax1) = _figure(ncols=2)
    for gid in pick:
        part = window.filter(pl.col("group_id") == gid)
        ax0.plot(
            part["bucket_start_utc"].to_numpy(),
            part["factor"].to_numpy(),
            lw=0.8,
            label=gid if len(gid) <= 28 else gid[:25] + "...",
        )
    ax0.set_yscale("log")
    ax0.set_ylabel("factor")
    ax0.set_title(f"latent factor, first {days} days")
    ax0.legend(fontsize=6, loc="upper right")
    ax0.tick_params(axis="x", labelsize=7, rotation=30)
    factors = latent["factor"].to_numpy()
    ax1.hist(np.log(factors), bins=60, color="#4477aa")
    ax1.axvline(
        math.log(float(factors.mean())), color="#cc3311", lw=1, label=f"mean {factors.mean():.3f}"
    )
    ax1.set_xlabel("ln factor")
    ax1.set_ylabel("group-hours")
    ax1.legend(fontsize=7)
    ax1.set_title("factor distribution")
    return _png(fig)


def count_dispersion_png(
    counts: pl.DataFrame, kappa: float | None = None, scatter_rows: int = 20_000
) -> bytes:
    """S3: realised count against its mean μ, and the index of dispersion var/mean per μ bin,
    with the NB2 reference 1 + μ/κ for a typical ``kappa`` when given.

    Only rows with N > 0 are published, so bins with small μ are zero-truncated; the dispersion
    panel keeps bins with μ >= 5 where truncation is negligible (P(N=0) < 1 %)."""
    if counts.is_empty():
        return _empty("bucket counts")
    mu = counts["mu"].to_numpy()
    n = counts["count"].to_numpy().astype(np.float64)
    fig, (ax0, ax1) = _figure(ncols=2)
    step = max(1, len(mu) // scatter_rows)
    ax0.scatter(mu[::step], n[::step], s=2, alpha=0.3, color="#4477aa", rasterized=True)
    lo, hi = max(min(mu.min(), n.min()), 1e-3), max(mu.max(), n.max())
    ax0.plot([lo, hi], [lo, hi], color="#cc3311", lw=1, label="count = μ")
    ax0.set_xscale("log")
    ax0.set_yscale("log")
    ax0.set_xlabel("μ")
    ax0.set_ylabel("count")
    ax0.legend(fontsize=7)
    ax0.set_title(f"{len(mu):,} non-zero buckets")
    keep = mu >= 5.0
    if keep.sum() >= 50:
        edges = np.geomspace(5.0, mu[keep].max() * 1.0001, 16)
        idx = np.digitize(mu[keep], edges)
        xs, ys = [], []
        for b in np.unique(idx):
            sel = n[keep][idx == b]
            if len(sel) >= 20:
                xs.append(float(mu[keep][idx == b].mean()))
                ys.append(float(sel.var(ddof=1) / sel.mean()))
        ax1.plot(xs, ys, "o-", color="#4477aa", ms=3, label="realised var/mean")
        ax1.axhline(1.0, color="#999999", lw=1, ls="--", label="Poisson")
        if kappa and xs:
            grid = np.geomspace(min(xs), max(xs), 50)
            ax1.plot(
                grid, 1.0 + grid / kappa, color="#cc3311", lw=1, ls=":", label=f"NB2, κ = {kappa:g}"
            )
        ax1.set_xscale("log")
        ax1.legend(fontsize=7)
    else:
        ax1.text(
            0.5,
            0.5,
            "too few buckets with μ >= 5",
            ha="center",
            va="center",
            transform=ax1.transAxes,
        )
    ax1.set_xlabel("μ (bin mean)")
    ax1.set_ylabel("var / mean")
    ax1.set_title("index of dispersion")
    return _png(fig)


def daily_counts(path: str) -> pl.DataFrame:
    """Arrivals per UTC day of a bucket-counts dataset, aggregated by a streaming scan over
    every row (a day's total is only right when no row is skipped; memory stays flat)."""
    fs, _ = filesystem_for(path)
    parts = []
    for name in dataset_files(path):
        with fs.open_input_file(name) as handle:
            pf = pq.ParquetFile(handle)
            for g in range(pf.metadata.num_row_groups):
                t = pl.from_arrow(pf.read_row_group(g, columns=["bucket_start_utc", "count"]))
                parts.append(t.group_by(pl.col("bucket_start_utc").dt.date().alias("day"))
                             .agg(pl.col("count").sum()))
    if not parts:
        return pl.DataFrame(schema={"day": pl.Date, "count": pl.Int64})
    return pl.concat(parts).group_by("day").agg(pl.col("count").sum()).sort("day")


def daily_arrivals_png(daily: pl.DataFrame) -> bytes:
    """S3: arrivals per UTC day over the partition (columns day, count)."""
    if daily.is_empty():
        return _empty("bucket counts")
    fig, (ax,) = _figure(8.0, 2.6)
    ax.plot(daily["day"].to_numpy(), daily["count"].to_numpy(), lw=0.9, color="#4477aa")
    ax.set_ylabel("arrivals / day")
    ax.set_title(f"arrivals per UTC day ({int(daily['count'].sum()):,} total)")
    ax.tick_params(axis="x", labelsize=7)
    return _png(fig)


def local_hour_of_week(ts_local: pl.Series) -> np.ndarray:
    """Hour of week (Monday 00:00 = 0) of naive local timestamps."""
    weekday = ts_local.dt.weekday().to_numpy().astype(np.int64) - 1  # polars: Monday = 1
    return weekday * 24 + ts_local.dt.hour().to_numpy().astype(np.int64)


def weekly_profile_png(ts_local: pl.Series, expected_share: np.ndarray | None = None) -> bytes:
    """S4: share of arrivals per local hour of week, realised against expected.

    Pass the ``ts_local`` of physical arrivals: a site lies in its series' zone, so their
    local clock is the series' clock that the weekly shape is written in. ``expected_share``
    (168 values summing to 1) is the world's scale-weighted weekly shape; calendar effects and
    latent factors make the realised line wander around it."""
    if ts_local.len() == 0:
        return _empty("arrival events")
    how = local_hour_of_week(ts_local)
    realised = np.bincount(how, minlength=HOURS_PER_WEEK)[:HOURS_PER_WEEK].astype(np.float64)
    realised /= realised.sum()
    fig, (ax,) = _figure(8.0, 3.0)
    hours = np.arange(HOURS_PER_WEEK)
    ax.step(hours, realised, where="post", lw=1.0, color="#4477aa", label="realised")
    if expected_share is not None:
        ax.step(
            hours,
            expected_share,
            where="post",
            lw=1.0,
            color="#cc3311",
            ls="--",
            label="expected (weekly shape x scale)",
        )
    ax.set_xticks(np.arange(0, HOURS_PER_WEEK, 24), _WEEKDAYS)
    ax.set_xlim(0, HOURS_PER_WEEK)
    ax.set_ylabel("share of arrivals")
    ax.set_title(f"local hour-of-week profile ({ts_local.len():,} sampled physical arrivals)")
    ax.legend(fontsize=7)
    return _png(fig)


def routing_shares_png(realised: pl.DataFrame, expected: pl.DataFrame | None = None) -> bytes:
    """S4: per routing target, the realised share of its series' arrivals against the share
    its weight promises. ``realised`` has columns (target, share); ``expected`` (target,
    share) when the world's weights are at hand, else a histogram of realised shares."""
    if realised.is_empty():
        return _empty("routing")
    fig, (ax,) = _figure(5.0, 3.6)
    if expected is not None and not expected.is_empty():
        both = realised.join(expected, on="target", suffix="_expected")
        x = both["share_expected"].to_numpy()
        y = both["share"].to_numpy()
        ax.scatter(x, y, s=6, alpha=0.5, color="#4477aa")
        ax.plot([0, 1], [0, 1], color="#cc3311", lw=1, label="realised = weight share")
        ax.set_xlabel("weight share within series")
        ax.set_ylabel("realised share")
        ax.legend(fontsize=7)
    else:
        ax.hist(realised["share"].to_numpy(), bins=40, color="#4477aa")
        ax.set_xlabel("realised share within series")
        ax.set_ylabel("targets")
    ax.set_title(f"routing shares ({realised.height:,} targets)")
    return _png(fig)


def realised_routing_shares(events: pl.DataFrame) -> pl.DataFrame:
    """Per routing target (``site:<id>`` or ``edge:<id>``), its share of the arrivals its
    merchant routed to targets of the same kind (sites within (merchant, country, zone), edges
    within the merchant). Columns: target, share, arrivals."""
    if events.is_empty():
        return pl.DataFrame(
            schema={"target": pl.String, "share": pl.Float64, "arrivals": pl.UInt32}
        )
    sites = (
        events.filter(pl.col("site_id").is_not_null())
        .group_by(
            "merchant_id",
            pl.col("legal_country_iso").cast(pl.String),
            pl.col("zone_tzid").cast(pl.String),
            "site_id",
        )
        .len("arrivals")
        .with_columns(
            (
                pl.col("arrivals")
                / pl.col("arrivals").sum().over("merchant_id", "legal_country_iso", "zone_tzid")
            ).alias("share"),
            pl.format("site:{}", "site_id").alias("target"),
        )
    )
    edges = (
        events.filter(pl.col("edge_id").is_not_null())
        .group_by("merchant_id", "edge_id")
        .len("arrivals")
        .with_columns(
            (pl.col("arrivals") / pl.col("arrivals").sum().over("merchant_id")).alias("share"),
            pl.format("edge:{}", "edge_id").alias("target"),
        )
    )
    cols = ["target", "share", "arrivals"]
    return pl.concat([sites.select(cols), edges.select(cols)]).sort("target")


def expected_weekly_share(series: pl.DataFrame, merchants: pl.DataFrame) -> np.ndarray:
    """Expected share of physical arrivals per local hour of week: every series that can route
    to sites (merchant not VIRTUAL_ONLY), its normalised weekly shape weighted by its scale.
    Calendar effects and latent factors are left out: they move the realised line around it."""
    physical = series.join(
        merchants.select("merchant_id", "virtual_mode"), on="merchant_id", how="left"
    ).filter(pl.col("virtual_mode") != "VIRTUAL_ONLY")
    if physical.is_empty():
        return np.full(HOURS_PER_WEEK, 1.0 / HOURS_PER_WEEK)
    shapes = np.asarray(physical["shape"].to_list(), dtype=np.float64)
    scale = physical["scale"].to_numpy().astype(np.float64)
    weights = shapes / shapes.sum(axis=1, keepdims=True) * scale[:, None]
    profile = weights.sum(axis=0)
    return profile / profile.sum()


def expected_routing_shares(sites: pl.DataFrame, edges: pl.DataFrame) -> pl.DataFrame:
    """Weight share of each site within its (merchant, country, tzid) and of each edge within
    its merchant: what routing should realise. Columns: target, share."""
    site_shares = sites.select(
        pl.format("site:{}", "site_id").alias("target"),
        (
            pl.col("weight")
            / pl.col("weight").sum().over("merchant_id", "legal_country_iso", "tzid")
        ).alias("share"),
    )
    edge_shares = edges.select(
        pl.format("edge:{}", "edge_id").alias("target"),
        (pl.col("weight") / pl.col("weight").sum().over("merchant_id")).alias("share"),
    )
    return pl.concat([site_shares, edge_shares])
