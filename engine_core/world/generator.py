"""The embedded world generator: presets ``tiny``, ``small``, ``reference`` (docs/world.md).

One seeded ``numpy.random.Generator`` (PCG64) draws everything in a fixed order, so the same
(preset, seed) gives the same world byte for byte. Every generated float is rounded to 9
significant digits by Python's correctly rounded formatting, so the world does not depend on
last-ulp differences of ``exp``/``log`` between CPUs or numpy builds.

Design, in drawing order:

1. merchants: ids, virtual mode (fixed counts per preset), demand class (by mode; a preset
   may ask to cover every class of each mode), size (lognormal × class size), home zone
   (∝ zone weight);
2. physical locations — distinct (country, tzid) a merchant has sites in: each merchant that
   is not VIRTUAL_ONLY gets ``n_loc = clip(round(c · reach), 1, n_zones)`` locations, reach
   lognormal and correlated with size, ``c`` solved so the total matches the preset; the home
   zone first, further zones drawn without replacement ∝ zone weight (Gumbel top-k);
3. demand share of each location ∝ zone weight^zone_pull_exponent × lognormal noise
   (× a home boost);
4. sites: one per location plus the preset's remaining sites spread ∝ √(location demand),
   lognormal weights;
5. series: NON_VIRTUAL merchants have a ``card_present`` series per location, and — for the
   ``mixed_channel_share`` of them that also take card-not-present orders at the counter —
   a ``mixed`` series taking ``mixed_channel_fraction`` of the location's demand; HYBRID
   merchants have a ``mixed`` series per location (S4 sends ``p_virtual_hybrid`` of those
   arrivals to an edge); a VIRTUAL_ONLY merchant has a single ``card_not_present`` series in
   its home (country, tzid), which is also its settlement zone;
6. scales: demand rescaled so VIRTUAL_ONLY and HYBRID merchants hold their preset shares and
   the world sums to ``weekly_arrivals`` expected arrivals per week;
7. shapes: the class's weekly shape × per-merchant lognormal noise, normalised to mean 1;
8. edges: every VIRTUAL_ONLY or HYBRID merchant gets one edge plus the rest spread ∝ √size;
   an edge's operational zone is the home zone with ``edge_home_share``, else ∝ zone weight;
9. calendar for every series country and the catalogue's scenarios, with the regional
   holidays of every series zone whose catalogue entry names a subdivision.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

import numpy as np
import pyarrow as pa

from engine_core.errors import EngineError
from engine_core.schemas import (
    DEMAND_CLASSES,
    EDGES,
    HOURS_PER_WEEK,
    MERCHANTS,
    SCENARIOS,
    SERIES,
    SITES,
)
from engine_core.world.calendar import build_calendar
from engine_core.world.fingerprint import fingerprint_canonical
from engine_core.world.model import World
from engine_core.world.presets import (
    Catalogue,
    Preset,
    ZoneEntry,
    load_catalogue,
    load_preset,
)
from engine_core.world.shapes import class_shapes
from engine_core.world.validate import canonical_world_tables

SIGNIFICANT_DIGITS = 9
MERCHANT_ID_BASE = 1_000_000
SITE_ID_BASE = 10_000_000
EDGE_ID_BASE = 90_000_000
ID_GAP_MAX = 16  # ids are a base plus a cumulative sum of gaps in [1, ID_GAP_MAX)
REACH_SOLVER_STEPS = 100


def round_significant(values: np.ndarray, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Round to ``digits`` significant digits with Python's correctly rounded formatting."""
    flat = np.asarray(values, dtype=np.float64).ravel()
    fmt = f".{digits - 1}e"
    out = np.fromiter((float(format(v, fmt)) for v in flat.tolist()), np.float64, flat.size)
    return out.reshape(np.shape(values))


def _ids(rng: np.random.Generator, base: int, n: int) -> np.ndarray:
    return (base + np.cumsum(rng.integers(1, ID_GAP_MAX, size=n))).astype(np.uint64)


def merchant_sizes(preset: Preset, z: np.ndarray) -> np.ndarray:
    """Merchant sizes from standard normal draws ``z`` under the preset's size law.

    ``lognormal``: exp(σ·z). ``pareto``: the Pareto quantile of Φ(z),
    S = Φ(-z)^(-1/ζ) ≥ 1, so P(S > s) = s^-ζ (Zipf's law for ζ = 1, Axtell 2001) while the
    rank order of z, and with it the correlation of reach with size, is kept."""
    if preset.merchant_size_law == "lognormal":
        return np.exp(preset.merchant_size_sigma * z)
    survival = 0.5 * np.array([math.erfc(v / math.sqrt(2.0)) for v in z.tolist()])
    return survival ** (-1.0 / preset.merchant_size_tail_exponent)


def _zones(preset: Preset, catalogue: Catalogue) -> list[ZoneEntry]:
    if isinstance(preset.zones, int):
        return list(catalogue.zones[: preset.zones])
    by_tz = {z.tzid: z for z in catalogue.zones}
    return [by_tz[tz] for tz in preset.zones]


def _solve_locations(reach: np.ndarray, target: int, n_zones: int) -> np.ndarray:
    """Integer locations per merchant, clip(round(c·reach), 1, n_zones), Σ closest to target."""

    def counts(c: float) -> np.ndarray:
        return np.clip(np.rint(c * reach), 1, n_zones).astype(np.int64)

    lo, hi = 0.0, float(n_zones) / float(reach.min())
    for _ in range(REACH_SOLVER_STEPS):
        mid = 0.5 * (lo + hi)
        if counts(mid).sum() < target:
            lo = mid
        else:
            hi = mid
    below, above = counts(lo), counts(hi)
    if abs(int(below.sum()) - target) < abs(int(above.sum()) - target):
        return below
    return above


def _choose_classes(
    rng: np.random.Generator, modes: np.ndarray, catalogue: Catalogue, cover_every_class: bool
) -> np.ndarray:
    """Demand class of each merchant, drawn from its mode's class mix. With
    ``cover_every_class`` the first merchants of each mode (in a random order) take the mix's
    classes one each, so a small world still shows every class its modes allow."""
    classes = np.empty(modes.size, dtype=object)
    for mode, mix in catalogue.class_mix.items():
        members = np.flatnonzero(modes == mode)
        names = list(mix)
        p = np.array([mix[c] for c in names], dtype=np.float64)
        picks = rng.choice(len(names), size=members.size, p=p / p.sum())
        if cover_every_class:
            order = rng.permutation(members.size)
            k = min(len(names), members.size)
            picks[order[:k]] = np.arange(k)
        classes[members] = [names[i] for i in picks]
    return classes


def _split(rng: np.random.Generator, extra: int, weights: np.ndarray) -> np.ndarray:
    """Spread ``extra`` items over slots ∝ weights (one multinomial draw)."""
    if extra <= 0 or weights.size == 0:
        return np.zeros(weights.size, dtype=np.int64)
    return rng.multinomial(extra, weights / weights.sum()).astype(np.int64)


def generate_tables(preset: Preset, seed: int, catalogue: Catalogue) -> dict[str, pa.Table]:
    """The raw (not yet canonicalised) world tables of ``preset`` drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    zones = _zones(preset, catalogue)
    n_zones = len(zones)
    zone_tz = np.array([z.tzid for z in zones], dtype=object)
    zone_cc = np.array([z.country for z in zones], dtype=object)
    zone_w = np.array([z.weight for z in zones], dtype=np.float64)
    zone_p = zone_w / zone_w.sum()
    n = preset.merchants

    # 1. merchants
    merchant_id = _ids(rng, MERCHANT_ID_BASE, n)
    modes = np.full(n, "NON_VIRTUAL", dtype=object)
    order = rng.permutation(n)
    n_vo, n_hy = preset.virtual_only_merchants, preset.hybrid_merchants
    modes[order[:n_vo]] = "VIRTUAL_ONLY"
    modes[order[n_vo : n_vo + n_hy]] = "HYBRID"
    classes = _choose_classes(rng, modes, catalogue, preset.cover_every_class)
    class_size = np.array([catalogue.class_size[c] for c in classes], dtype=np.float64)
    z_size = rng.standard_normal(n)
    size = merchant_sizes(preset, z_size) * class_size
    home = rng.choice(n_zones, size=n, p=zone_p)

    # 2. physical locations
    physical = np.flatnonzero(modes != "VIRTUAL_ONLY")
    rho = preset.reach_size_correlation
    z_reach = rho * z_size[physical] + np.sqrt(1.0 - rho * rho) * rng.standard_normal(physical.size)
    n_loc = _solve_locations(np.exp(preset.reach_sigma * z_reach), preset.locations, n_zones)
    gumbel = np.log(zone_p)[None, :] + rng.gumbel(size=(physical.size, n_zones))
    gumbel[np.arange(physical.size), home[physical]] = np.inf  # home zone always first
    ranked = np.argsort(-gumbel, axis=1, kind="stable")
    loc_merchant = np.repeat(physical, n_loc)
    loc_zone = np.concatenate([ranked[i, : n_loc[i]] for i in range(physical.size)])

    # 3. demand share of each location within its merchant
    loc_pull = zone_p[loc_zone] ** preset.zone_pull_exponent * np.exp(
        preset.location_share_sigma * rng.standard_normal(loc_zone.size)
    )
    loc_pull[loc_zone == home[loc_merchant]] *= preset.home_zone_boost
    pull_sum = np.bincount(loc_merchant, weights=loc_pull, minlength=n)
    loc_demand = size[loc_merchant] * loc_pull / pull_sum[loc_merchant]

    # 4. sites
    sites_per_loc = 1 + _split(rng, preset.sites - loc_zone.size, np.sqrt(loc_demand))
    site_loc = np.repeat(np.arange(loc_zone.size), sites_per_loc)
    site_id = _ids(rng, SITE_ID_BASE, site_loc.size)
    site_weight = np.exp(preset.site_weight_sigma * rng.standard_normal(site_loc.size))

    # 5. series: (merchant, zone, channel, demand)
    takes_moto = rng.random(n) < preset.mixed_channel_share
    s_merchant: list[np.ndarray] = []
    s_zone: list[np.ndarray] = []
    s_channel: list[np.ndarray] = []
    s_demand: list[np.ndarray] = []
    loc_mode = modes[loc_merchant]
    nv = loc_mode == "NON_VIRTUAL"
    moto = nv & takes_moto[loc_merchant]
    frac = preset.mixed_channel_fraction
    for mask, channel, share in (
        (nv, "card_present", np.where(moto, 1.0 - frac, 1.0)),
        (moto, "mixed", np.full(loc_zone.size, frac)),
        (loc_mode == "HYBRID", "mixed", np.ones(loc_zone.size)),
    ):
        s_merchant.append(loc_merchant[mask])
        s_zone.append(loc_zone[mask])
        s_channel.append(np.full(int(mask.sum()), channel, dtype=object))
        s_demand.append(loc_demand[mask] * share[mask])
    vo = np.flatnonzero(modes == "VIRTUAL_ONLY")
    s_merchant.append(vo)
    s_zone.append(home[vo])
    s_channel.append(np.full(vo.size, "card_not_present", dtype=object))
    s_demand.append(size[vo])
    ser_merchant = np.concatenate(s_merchant)
    ser_zone = np.concatenate(s_zone)
    ser_channel = np.concatenate(s_channel)
    ser_demand = np.concatenate(s_demand)

    # 6. scales: mode shares, then the weekly total
    ser_mode = modes[ser_merchant]
    share_of_mode = {
        "VIRTUAL_ONLY": preset.virtual_only_demand_share,
        "HYBRID": preset.hybrid_demand_share,
        "NON_VIRTUAL": 1.0 - preset.virtual_only_demand_share - preset.hybrid_demand_share,
    }
    scale = np.zeros(ser_demand.size)
    for mode, share in share_of_mode.items():
        mask = ser_mode == mode
        if mask.any():
            scale[mask] = ser_demand[mask] / ser_demand[mask].sum() * share
    scale *= preset.weekly_arrivals / scale.sum()

    # 7. shapes
    base = class_shapes(catalogue)
    class_idx = np.array([DEMAND_CLASSES.index(c) for c in classes], dtype=np.int64)
    noise = np.exp(preset.shape_noise_sigma * rng.standard_normal((n, HOURS_PER_WEEK)))
    merchant_shape = base[class_idx] * noise
    merchant_shape *= HOURS_PER_WEEK / merchant_shape.sum(axis=1, keepdims=True)
    merchant_shape = round_significant(merchant_shape)

    # 8. edges
    with_edges = np.flatnonzero(modes != "NON_VIRTUAL")
    edges_per = 1 + _split(rng, preset.edges - with_edges.size, np.sqrt(size[with_edges]))
    edge_merchant = np.repeat(with_edges, edges_per)
    edge_id = _ids(rng, EDGE_ID_BASE, edge_merchant.size)
    at_home = rng.random(edge_merchant.size) < preset.edge_home_share
    elsewhere = rng.choice(n_zones, size=edge_merchant.size, p=zone_p)
    edge_zone = np.where(at_home, home[edge_merchant], elsewhere)
    edge_weight = np.exp(preset.edge_weight_sigma * rng.standard_normal(edge_merchant.size))

    settlement = np.where(modes == "NON_VIRTUAL", None, zone_tz[home])
    tables = {
        "merchants": pa.table(
            {
                "merchant_id": merchant_id,
                "demand_class": classes.tolist(),
                "virtual_mode": modes.tolist(),
                "settlement_tzid": settlement.tolist(),
            },
            schema=MERCHANTS,
        ),
        "sites": pa.table(
            {
                "merchant_id": merchant_id[loc_merchant[site_loc]],
                "site_id": site_id,
                "legal_country_iso": zone_cc[loc_zone[site_loc]].tolist(),
                "tzid": zone_tz[loc_zone[site_loc]].tolist(),
                "weight": round_significant(site_weight),
            },
            schema=SITES,
        ),
        "edges": pa.table(
            {
                "merchant_id": merchant_id[edge_merchant],
                "edge_id": edge_id,
                "tzid": zone_tz[edge_zone].tolist(),
                "weight": round_significant(edge_weight),
            },
            schema=EDGES,
        ),
        "series": pa.table(
            {
                "merchant_id": merchant_id[ser_merchant],
                "legal_country_iso": zone_cc[ser_zone].tolist(),
                "tzid": zone_tz[ser_zone].tolist(),
                "channel_group": ser_channel.tolist(),
                "shape": pa.FixedSizeListArray.from_arrays(
                    merchant_shape[ser_merchant].ravel(), HOURS_PER_WEEK
                ).cast(pa.list_(pa.float64())),
                "scale": round_significant(scale),
            },
            schema=SERIES,
        ),
        "calendar": build_calendar(
            sorted(set(zone_cc[ser_zone].tolist())),
            catalogue,
            [zones[i] for i in sorted(set(ser_zone.tolist()))],
        ),
        "scenarios": pa.table(
            {
                "scenario_id": [s.scenario_id for s in catalogue.scenarios],
                "band": [s.band for s in catalogue.scenarios],
                "labels": [
                    json.dumps(
                        {"description": s.description, "campaigns": s.campaigns},
                        sort_keys=True,
                        separators=(",", ":"),
                    )
                    for s in catalogue.scenarios
                ],
            },
            schema=SCENARIOS,
        ),
    }
    return tables


@lru_cache(maxsize=4)
def _generate_cached(preset_name: str, seed: int) -> World:
    preset = load_preset(preset_name)
    tables = canonical_world_tables(generate_tables(preset, seed, load_catalogue()))
    return World(tables=tables, fingerprint=fingerprint_canonical(tables), source="")


def generate_world(preset: str, seed: int | None = None) -> World:
    """Generate the world of a named preset (``tiny``, ``small``, ``reference``).

    ``seed`` defaults to the preset's own seed. Same (preset, seed) → same world, byte for
    byte; the result is validated by the same rules as a world read from Parquet.
    """
    spec = load_preset(preset)
    seed = spec.seed if seed is None else seed
    if not 0 <= seed < 2**64:
        raise EngineError("WORLD_PRESET_INVALID", f"seed must be a u64, got {seed}", key=seed)
    world = _generate_cached(preset, int(seed))
    source = f"preset:{preset}" if seed == spec.seed else f"preset:{preset}?seed={seed}"
    return World(tables=dict(world.tables), fingerprint=world.fingerprint, source=source)
