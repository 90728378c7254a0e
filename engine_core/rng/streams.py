"""Stream keys: one SHA-256 per stream, never per row or event (docs/rng.md).

    h   = SHA256(UER("arrivals.rng.v1") ‖ UER(family) ‖ UER(namespace) ‖ LE64(seed) ‖ UER(stream))
    key = BE64(h[0:8])

UER(s) is the u32 big-endian byte length of s followed by its UTF-8 bytes. World fingerprint,
parameter hash and scenario are deliberately not inputs: adding a merchant leaves the other
streams alone, and two scenarios with the same seed draw the same uniforms (common random
numbers).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

import numpy as np

DOMAIN = "arrivals.rng.v1"
FAMILIES: tuple[str, ...] = (
    "S2.latent.v1",
    "S3.count.v1",
    "S4.time.v1",
    "S4.site.v1",
    "S4.edge.v1",
    "S4.hybrid.v1",
)
_U64_MAX = (1 << 64) - 1


def uer(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack(">I", len(b)) + b


def _family_prefix(family: str, namespace: str, seed: int) -> bytes:
    """What every stream key of one family, namespace and seed hashes first."""
    if not 0 <= int(seed) <= _U64_MAX:
        raise ValueError(f"seed must be a u64, got {seed}")
    return uer(DOMAIN) + uer(family) + uer(namespace) + struct.pack("<Q", int(seed))


def stream_key(family: str, namespace: str, seed: int, stream: str) -> int:
    """The 64-bit Philox key of one stream."""
    h = hashlib.sha256(_family_prefix(family, namespace, seed) + uer(stream)).digest()
    return int.from_bytes(h[0:8], "big")


def stream_keys(family: str, namespace: str, seed: int, streams: Iterable[str]) -> np.ndarray:
    """Keys of many streams of one family, as uint64: :func:`stream_key` of each, with the
    prefix they share encoded once."""
    prefix = _family_prefix(family, namespace, seed)
    sha256 = hashlib.sha256
    digests = b"".join(sha256(prefix + uer(s)).digest()[:8] for s in streams)
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)


def series_stream(merchant_id: int, country: str, tzid: str, channel: str) -> str:
    """Stream name of a series: all four coordinates, so two series never share a stream."""
    return f"series={int(merchant_id)}|{country}|{tzid}|{channel}"


def group_stream(group_id_without_band: str) -> str:
    return f"group={group_id_without_band}"
