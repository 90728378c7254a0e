"""The world as the flat arrays the kernels take (built once per run, never written).

Series are in the world's canonical order (merchant_id, legal_country_iso, tzid,
channel_group). Site sets — the sites of one (merchant, country, tzid) — and each merchant's
edges are contiguous ranges with Vose alias tables built in site_id / edge_id order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from engine_core.errors import EngineError
from engine_core.kernels.arrivals import MODE_HYBRID, MODE_PHYSICAL, MODE_VIRTUAL
from engine_core.rng.samplers import alias_build_ranges
from engine_core.rng.streams import series_stream, stream_keys
from engine_core.schemas import HOURS_PER_WEEK
from engine_core.world.validate import one_array

MODE_CODES = {"NON_VIRTUAL": MODE_PHYSICAL, "HYBRID": MODE_HYBRID, "VIRTUAL_ONLY": MODE_VIRTUAL}


@dataclass
class WorldArrays:
    """Per-series arrays, shared dictionaries and the routing alias tables."""

    n_series: int
    merchant_id: np.ndarray  # uint64 [S]
    country: list[str]
    zone_tzid: list[str]
    channel: list[str]
    demand_class: list[str]
    mode: np.ndarray  # int8 [S]
    shape_norm: np.ndarray  # float64 [S, 168] scale/Σshape · shape
    # dictionaries shared by every output file (stable dictionary per run)
    countries: list[str]
    tzids: list[str]  # every tz of series, sites, edges and settlement: the tz table order
    channels: list[str]
    country_idx: np.ndarray  # int32 [S]
    zone_idx: np.ndarray  # int32 [S] into tzids
    channel_idx: np.ndarray  # int32 [S]
    # routing
    site_lo: np.ndarray
    site_n: np.ndarray
    site_id: np.ndarray  # uint64, alias layout order
    site_zone: np.ndarray  # int32
    site_prob: np.ndarray
    site_alias: np.ndarray
    site_weight: np.ndarray
    edge_lo: np.ndarray
    edge_n: np.ndarray
    edge_id: np.ndarray
    edge_zone: np.ndarray
    edge_prob: np.ndarray
    edge_alias: np.ndarray
    edge_weight: np.ndarray
    settle_zone: np.ndarray  # int32 [S], -1 when the merchant has none
    # series_keys computed so far, by (family, namespace, seed): a run derives each once,
    # not once per window, shard or rule (one hash per series in Python each time)
    _keys: dict[tuple[str, str, int], np.ndarray] = field(
        default_factory=dict, repr=False, compare=False)

    def series_key(self, i: int) -> str:
        return series_stream(int(self.merchant_id[i]), self.country[i], self.zone_tzid[i],
                             self.channel[i])

    def series_keys(self, family: str, namespace: str, seed: int) -> np.ndarray:
        """The stream key of every series in ``family`` (uint64 [S]; shared: do not write)."""
        k = (family, namespace, int(seed))
        if k not in self._keys:
            self._keys[k] = stream_keys(family, namespace, seed,
                                        (self.series_key(i) for i in range(self.n_series)))
        return self._keys[k]


def _alias_ranges(weights: np.ndarray, starts: np.ndarray, lengths: np.ndarray):
    prob = np.ones(weights.shape[0], dtype=np.float64)
    alias = np.zeros(weights.shape[0], dtype=np.int64)
    alias_build_ranges(np.ascontiguousarray(weights, dtype=np.float64), starts, lengths, prob,
                       alias)
    return prob, alias


def build_world_arrays(tables: dict[str, pa.Table]) -> WorldArrays:
    merchants = tables["merchants"].to_pydict()
    series = tables["series"]
    sites = tables["sites"].sort_by(
        [("merchant_id", "ascending"), ("legal_country_iso", "ascending"),
         ("tzid", "ascending"), ("site_id", "ascending")]
    ).to_pydict()
    edges = tables["edges"].sort_by(
        [("merchant_id", "ascending"), ("edge_id", "ascending")]
    ).to_pydict()

    m_class = dict(zip(merchants["merchant_id"], merchants["demand_class"], strict=True))
    m_mode = dict(zip(merchants["merchant_id"], merchants["virtual_mode"], strict=True))
    m_settle = dict(zip(merchants["merchant_id"], merchants["settlement_tzid"], strict=True))

    s_mid = series.column("merchant_id").to_numpy().astype(np.uint64)
    s_country = series.column("legal_country_iso").to_pylist()
    s_tz = series.column("tzid").to_pylist()
    s_channel = series.column("channel_group").to_pylist()
    shapes = np.asarray(one_array(series.column("shape")).flatten().to_numpy(),
                        dtype=np.float64).reshape(-1, HOURS_PER_WEEK)
    scale = series.column("scale").to_numpy().astype(np.float64)
    n = len(s_mid)
    shape_norm = shapes * (scale / shapes.sum(axis=1))[:, None]

    tz_set = set(s_tz) | set(sites["tzid"]) | set(edges["tzid"])
    tz_set |= {t for t in merchants["settlement_tzid"] if t is not None}
    tzids = sorted(tz_set)
    tz_index = {t: i for i, t in enumerate(tzids)}
    countries = sorted(set(s_country) | set(sites["legal_country_iso"]))
    c_index = {c: i for i, c in enumerate(countries)}
    channels = sorted(set(s_channel))
    ch_index = {c: i for i, c in enumerate(channels)}

    # site sets
    set_range: dict[tuple[int, str, str], tuple[int, int]] = {}
    for k, key in enumerate(zip(sites["merchant_id"], sites["legal_country_iso"], sites["tzid"],
                                strict=True)):
        lo, cnt = set_range.get(key, (k, 0))
        set_range[key] = (lo, cnt + 1)
    e_range: dict[int, tuple[int, int]] = {}
    for k, mid in enumerate(edges["merchant_id"]):
        lo, cnt = e_range.get(mid, (k, 0))
        e_range[mid] = (lo, cnt + 1)

    site_lo = np.zeros(n, dtype=np.int64)
    site_n = np.zeros(n, dtype=np.int64)
    edge_lo = np.zeros(n, dtype=np.int64)
    edge_n = np.zeros(n, dtype=np.int64)
    mode = np.zeros(n, dtype=np.int8)
    settle = np.full(n, -1, dtype=np.int32)
    classes = []
    for i in range(n):
        mid = int(s_mid[i])
        m = m_mode[mid]
        mode[i] = MODE_CODES[m]
        classes.append(m_class[mid])
        lo, cnt = set_range.get((mid, s_country[i], s_tz[i]), (0, 0))
        site_lo[i], site_n[i] = lo, cnt
        lo, cnt = e_range.get(mid, (0, 0))
        edge_lo[i], edge_n[i] = lo, cnt
        if m_settle[mid] is not None:
            settle[i] = tz_index[m_settle[mid]]
        if mode[i] != MODE_VIRTUAL and site_n[i] == 0:
            raise EngineError("WORLD_SERIES_NO_SITE", "series has no site to route to",
                              table="series", column="tzid", key=series_stream(
                                  mid, s_country[i], s_tz[i], s_channel[i]))
        if mode[i] != MODE_PHYSICAL and edge_n[i] == 0:
            raise EngineError("WORLD_NO_EDGES", "virtual merchant has no edges",
                              table="edges", column="merchant_id", key=mid)

    site_w = np.asarray(sites["weight"], dtype=np.float64)
    edge_w = np.asarray(edges["weight"], dtype=np.float64)
    starts = np.array([v[0] for v in set_range.values()], dtype=np.int64)
    lens = np.array([v[1] for v in set_range.values()], dtype=np.int64)
    site_prob, site_alias = _alias_ranges(site_w, starts, lens)
    estarts = np.array([v[0] for v in e_range.values()], dtype=np.int64)
    elens = np.array([v[1] for v in e_range.values()], dtype=np.int64)
    edge_prob, edge_alias = _alias_ranges(edge_w, estarts, elens)

    return WorldArrays(
        n_series=n,
        merchant_id=s_mid,
        country=s_country,
        zone_tzid=s_tz,
        channel=s_channel,
        demand_class=classes,
        mode=mode,
        shape_norm=np.ascontiguousarray(shape_norm),
        countries=countries,
        tzids=tzids,
        channels=channels,
        country_idx=np.array([c_index[c] for c in s_country], dtype=np.int32),
        zone_idx=np.array([tz_index[t] for t in s_tz], dtype=np.int32),
        channel_idx=np.array([ch_index[c] for c in s_channel], dtype=np.int32),
        site_lo=site_lo,
        site_n=site_n,
        site_id=np.asarray(sites["site_id"], dtype=np.uint64),
        site_zone=np.array([tz_index[t] for t in sites["tzid"]], dtype=np.int32),
        site_prob=site_prob,
        site_alias=site_alias,
        site_weight=site_w,
        edge_lo=edge_lo,
        edge_n=edge_n,
        edge_id=np.asarray(edges["edge_id"], dtype=np.uint64),
        edge_zone=np.array([tz_index[t] for t in edges["tzid"]], dtype=np.int32),
        edge_prob=edge_prob,
        edge_alias=edge_alias,
        edge_weight=edge_w,
        settle_zone=settle,
    )
