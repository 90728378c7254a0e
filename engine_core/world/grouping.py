"""Latent groups: each series is assigned a group by stratum and hash bucket (S1, no RNG).

The law (docs/model.md): zone group = SHA-256(tzid) mod zone_groups, hash bucket =
SHA-256(merchant_id) mod hash_buckets; σ, L by band × class/channel/virtual multipliers and κ
by band × class, each clamped to the policy's bounds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from engine_core.config import Policy
from engine_core.kernels.arrivals import MODE_VIRTUAL
from engine_core.rng.streams import group_stream, stream_keys
from engine_core.world.arrays import WorldArrays


def sha_mod(text: str, modulus: int) -> int:
    """First 8 bytes of SHA-256(text), big-endian, modulo ``modulus`` (documented grouping)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") % modulus


def group_id_of(band: str, demand_class: str, channel: str, vband: str, zone_group: int,
                hash_bucket: int) -> str:
    return f"{band}|{without_band(demand_class, channel, vband, zone_group, hash_bucket)}"


def without_band(demand_class: str, channel: str, vband: str, zone_group: int,
                 hash_bucket: int) -> str:
    return f"{demand_class}|{channel}|{vband}|z{zone_group:02d}|h{hash_bucket:02d}"


def clamp(x: float, bounds: tuple[float, float]) -> float:
    return float(min(max(x, bounds[0]), bounds[1]))


@dataclass
class Grouping:
    """Latent groups of one scenario band (S1 output, in memory)."""

    group_ids: list[str]  # sorted
    series_group: np.ndarray  # int64 [S] index into group_ids
    zone_group: np.ndarray  # int32 [S]
    hash_bucket: np.ndarray  # int32 [S]
    vband: list[str]  # per series
    sigma: np.ndarray  # float64 [G]
    length_scale: np.ndarray  # float64 [G]
    kappa: np.ndarray  # float64 [S]
    keys: np.ndarray  # uint64 [G] S2.latent.v1


def build_grouping(model: WorldArrays, policy: Policy, band: str, seed: int) -> Grouping:
    """Each series → latent group by stratum (band, class, channel, virtual band, zone group =
    SHA-256(tzid) mod zone_groups) and hash bucket = SHA-256(merchant_id) mod hash_buckets, so
    a merchant's series of one stratum share one latent field (docs/model.md)."""
    lat = policy.latent
    cnt = policy.counts
    zg = policy.grouping.zone_groups
    hb = policy.grouping.hash_buckets
    n = model.n_series
    zone_group = np.empty(n, dtype=np.int32)
    hash_bucket = np.empty(n, dtype=np.int32)
    vband = []
    gid_of_series = []
    sig_of_group: dict[str, float] = {}
    ls_of_group: dict[str, float] = {}
    kappa = np.empty(n, dtype=np.float64)
    kb = getattr(cnt.kappa_base, band)
    for i in range(n):
        zone_group[i] = sha_mod(model.zone_tzid[i], zg)
        hash_bucket[i] = sha_mod(str(int(model.merchant_id[i])), hb)
        vb = "virtual" if model.mode[i] == MODE_VIRTUAL else "physical"
        vband.append(vb)
        dc = model.demand_class[i]
        gid = group_id_of(band, dc, model.channel[i], vb, int(zone_group[i]), int(hash_bucket[i]))
        gid_of_series.append(gid)
        if gid not in sig_of_group:
            sig = (getattr(lat.sigma_base, band) * lat.sigma_class_multiplier.of(dc)
                   * lat.sigma_channel_multiplier.of(model.channel[i])
                   * getattr(lat.sigma_virtual_multiplier, vb))
            sig_of_group[gid] = clamp(sig, lat.sigma_bounds)
            ls = getattr(lat.length_scale_base, band) * lat.length_scale_class_multiplier.of(dc)
            ls_of_group[gid] = clamp(ls, lat.length_scale_bounds)
        kappa[i] = clamp(kb * cnt.kappa_class_multiplier.of(dc), cnt.kappa_bounds)
    group_ids = sorted(sig_of_group)
    g_index = {g: k for k, g in enumerate(group_ids)}
    keys = stream_keys(
        "S2.latent.v1", policy.namespace, seed,
        (group_stream(g.split("|", 1)[1]) for g in group_ids),
    )
    return Grouping(
        group_ids=group_ids,
        series_group=np.array([g_index[g] for g in gid_of_series], dtype=np.int64),
        zone_group=zone_group,
        hash_bucket=hash_bucket,
        vband=vband,
        sigma=np.array([sig_of_group[g] for g in group_ids], dtype=np.float64),
        length_scale=np.array([ls_of_group[g] for g in group_ids], dtype=np.float64),
        kappa=kappa,
        keys=keys,
    )
