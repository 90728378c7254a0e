"""Stream keys (SPEC §3.1) and worked examples of the whole law.

tests/data/stream_key_vectors.csv and tests/data/draw_vectors.csv hold the worked vectors that
docs/rng.md shows; a test checks that the document still carries the same numbers.
"""

from __future__ import annotations

import csv
import hashlib
import math
from pathlib import Path

import numba as nb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from engine_core.kernels.counts import count_draw
from engine_core.kernels.latent import latent_normal
from engine_core.rng import (
    FAMILIES,
    philox2x64_10,
    series_stream,
    stream_key,
    stream_keys,
    uniforms,
)
from engine_core.rng.samplers import place_us
from engine_core.rng.streams import DOMAIN, group_stream, uer

_HERE = Path(__file__).resolve().parent
DATA = _HERE.parent / "data"
DOCS = _HERE.parents[1] / "docs"
U64_MAX = (1 << 64) - 1

SERIES = "series=1001|GB|Europe/London|card_present"


def read_csv(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="") as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------- the byte layout
def test_key_from_hand_built_message():
    # SHA256(UER("arrivals.rng.v1") ‖ UER(family) ‖ UER(namespace) ‖ LE64(seed) ‖ UER(stream)),
    # UER = u32 big-endian byte length, then the UTF-8 bytes; key = first 8 bytes, big-endian.
    message = (
        b"\x00\x00\x00\x0f"
        + b"arrivals.rng.v1"
        + b"\x00\x00\x00\x0b"
        + b"S3.count.v1"
        + b"\x00\x00\x00\x07"
        + b"default"
        + b"\x2a\x00\x00\x00\x00\x00\x00\x00"  # seed 42, little-endian
        + b"\x00\x00\x00\x29"
        + SERIES.encode("ascii")  # 41 bytes
    )
    assert len(SERIES) == 41
    digest = hashlib.sha256(message).digest()
    expected = int.from_bytes(digest[:8], "big")
    assert stream_key("S3.count.v1", "default", 42, SERIES) == expected
    assert expected == 0xB8E944DB8A5C34B9  # first row of stream_key_vectors.csv


def test_seed_is_little_endian_and_full_width():
    seed = 0x0102030405060708
    message = (
        uer(DOMAIN)
        + uer("S4.time.v1")
        + uer("default")
        + bytes([8, 7, 6, 5, 4, 3, 2, 1])
        + uer("s")
    )
    key = int.from_bytes(hashlib.sha256(message).digest()[:8], "big")
    assert stream_key("S4.time.v1", "default", seed, "s") == key


def test_uer_counts_utf8_bytes_not_characters():
    assert uer("café") == b"\x00\x00\x00\x05caf\xc3\xa9"
    assert uer("") == b"\x00\x00\x00\x00"
    assert DOMAIN == "arrivals.rng.v1"


def test_length_prefix_separates_fields():
    # Without the length prefix "S3.count.v1x" ‖ "default" and "S3.count.v1" ‖ "xdefault"
    # would hash the same bytes.
    a = stream_key("S3.count.v1x", "default", 42, SERIES)
    b = stream_key("S3.count.v1", "xdefault", 42, SERIES)
    assert a != b


@pytest.mark.parametrize("seed", [-1, 1 << 64])
def test_seed_outside_u64_is_rejected(seed):
    with pytest.raises(ValueError):
        stream_key("S3.count.v1", "default", seed, SERIES)


def test_stream_names():
    assert series_stream(1001, "GB", "Europe/London", "card_present") == SERIES
    assert group_stream("retail_daytime|card_present|physical|z07|h13") == (
        "group=retail_daytime|card_present|physical|z07|h13"
    )
    assert FAMILIES == (
        "S2.latent.v1",
        "S3.count.v1",
        "S4.time.v1",
        "S4.site.v1",
        "S4.edge.v1",
        "S4.hybrid.v1",
    )


# ----------------------------------------------------------------------------- worked vectors
def test_stream_key_vectors():
    rows = read_csv("stream_key_vectors.csv")
    assert len(rows) >= 4
    assert {r["family"] for r in rows} >= {"S2.latent.v1", "S3.count.v1"}
    for r in rows:
        key = stream_key(r["family"], r["namespace"], int(r["seed"]), r["stream"])
        assert f"{key:016x}" == r["key"], r


def test_docs_show_the_stream_key_vectors():
    text = (DOCS / "rng.md").read_text()
    for r in read_csv("stream_key_vectors.csv"):
        for field in ("family", "namespace", "seed", "stream", "key"):
            assert r[field] in text, (field, r[field])


def test_docs_show_the_draw_vectors():
    text = (DOCS / "rng.md").read_text()
    for r in read_csv("draw_vectors.csv"):
        for field in ("bucket", "out0", "out1", "u0", "value"):
            assert r[field] in text, (field, r[field])


@nb.njit
def _latent_normal(key, bucket):
    return latent_normal(key, bucket)


@nb.njit
def _count_draw(key, bucket, mu, kappa, poisson, max_count):
    return count_draw(key, bucket, mu, kappa, poisson, max_count)


@nb.njit
def _place(start, duration, u):
    return place_us(start, duration, u)


def test_draw_vectors_through_the_engine():
    for r in read_csv("draw_vectors.csv"):
        fam, bucket, block = r["family"], int(r["bucket"]), int(r["block"])
        key = stream_key(fam, "default", 42, r["stream"])
        out0, out1 = philox2x64_10(np.uint64(block), np.uint64(bucket), np.uint64(key))
        assert (f"{int(out0):016x}", f"{int(out1):016x}") == (r["out0"], r["out1"])
        u0, u1 = uniforms(np.array([out0, out1], dtype=np.uint64))
        assert (u0, u1) == (float(r["u0"]), float(r["u1"]))
        q = r["quantity"]
        if fam == "S2.latent.v1":
            eps = _latent_normal(np.uint64(key), bucket)
            assert eps == pytest.approx(float(r["value"]), rel=1e-14, abs=1e-15)
            # independent check of Box–Muller from the two uniforms
            ref = math.sqrt(-2.0 * math.log(u0)) * math.cos(2.0 * math.pi * u1)
            assert eps == pytest.approx(ref, rel=1e-14, abs=1e-15)
        elif fam == "S3.count.v1":
            law, *params = q.split(":")
            p = dict(kv.split("=") for kv in params)
            mu = float(p["mu"])
            kappa = float(p.get("kappa", 30.0))
            n, capped = _count_draw(np.uint64(key), bucket, mu, kappa, law == "poisson", 50_000)
            assert (n, capped) == (int(r["value"]), False)
            if law == "poisson":
                ref = stats.poisson.ppf(u0, mu)
            else:
                ref = stats.nbinom.ppf(u0, kappa, kappa / (kappa + mu))
            assert n == int(ref)
        elif q.startswith("ts_offset_us"):
            duration = int(q.split("=")[1])
            start = bucket * duration
            assert _place(start, duration, u0) - start == int(r["value"])
            # floor(u·D) with exact rational arithmetic: u is a double, D < 2^53
            assert int(r["value"]) == math.floor(u0 * duration)
        else:
            assert q == "arrival_id"
            assert int(out1) == int(r["value"])


# ----------------------------------------------------------------------------- no collisions
def test_200k_series_streams_have_distinct_keys():
    # Realistic names that differ in a single coordinate or a single character.
    countries = ("GB", "IN", "US", "DE")
    tzids = ("Europe/London", "Asia/Kolkata", "America/New_York", "Europe/Berlin")
    channels = ("card_present", "card_not_present", "mixed")
    names = []
    for m in range(1, 16_668):
        for c in range(4):
            for ch in channels:
                names.append(series_stream(m, countries[c], tzids[(c + m) % 4], ch))
    names = names[:200_000]
    assert len(set(names)) == len(names) == 200_000
    keys = stream_keys("S3.count.v1", "default", 42, names)
    assert keys.dtype == np.uint64
    assert np.unique(keys).size == keys.size


def test_families_give_distinct_keys_for_one_stream():
    names = [series_stream(m, "GB", "Europe/London", "mixed") for m in range(1, 5001)]
    keys = np.concatenate([stream_keys(f, "default", 42, names) for f in FAMILIES])
    assert np.unique(keys).size == keys.size


def test_stream_keys_is_stream_key_elementwise():
    names = [f"group=g{i}" for i in range(50)]
    keys = stream_keys("S2.latent.v1", "default", 7, names)
    assert [int(k) for k in keys] == [stream_key("S2.latent.v1", "default", 7, s) for s in names]


seeds = st.integers(min_value=0, max_value=U64_MAX)
names = st.text(max_size=40)
families = st.sampled_from(FAMILIES)


@settings(max_examples=40, deadline=None)
@given(streams=st.sets(names, min_size=2, max_size=400), seed=seeds, family=families)
def test_distinct_streams_give_distinct_keys(streams, seed, family):
    keys = stream_keys(family, "default", seed, sorted(streams))
    assert np.unique(keys).size == len(streams)


@settings(max_examples=200, deadline=None)
@given(
    stream=names,
    seed=seeds,
    other_seed=seeds,
    namespace=names,
    other_namespace=names,
    family=families,
    other_family=families,
)
def test_each_input_changes_the_key(
    stream, seed, other_seed, namespace, other_namespace, family, other_family
):
    key = stream_key(family, namespace, seed, stream)
    assert key == stream_key(family, namespace, seed, stream)  # a pure function
    if other_seed != seed:
        assert stream_key(family, namespace, other_seed, stream) != key
    if other_namespace != namespace:
        assert stream_key(family, other_namespace, seed, stream) != key
    if other_family != family:
        assert stream_key(other_family, namespace, seed, stream) != key
