"""The embedded generator: reproducibility, preset dimensions, structure of the world."""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import pyarrow.compute as pc
import pytest

from engine_core.errors import EngineError
from engine_core.schemas import CHANNEL_GROUPS, DEMAND_CLASSES, HOURS_PER_WEEK, WORLD_TABLES
from engine_core.world import World, export_world, generate_world, preset_names
from engine_core.world.fingerprint import fingerprint_canonical
from engine_core.world.generator import generate_tables, round_significant
from engine_core.world.presets import load_catalogue, load_preset
from engine_core.world.shapes import class_shapes
from engine_core.world.validate import canonical_world_tables

# Identity of the tiny preset with its default seed. It changes only when the generator, the
# presets, or the numpy / holidays versions that feed it change — update it deliberately.
TINY_FINGERPRINT = "565a4f3a396268663ed9a04c2d075a3fcae3f59e2ce349fcb132b6c7f43e8942"


def fresh(preset: str, seed: int | None = None) -> World:
    """Generate without the in-process cache."""
    spec = load_preset(preset)
    tables = canonical_world_tables(
        generate_tables(spec, spec.seed if seed is None else seed, load_catalogue())
    )
    return World(tables, fingerprint_canonical(tables), f"preset:{preset}")


@pytest.fixture(scope="module")
def tiny() -> World:
    return generate_world("tiny")


@pytest.fixture(scope="module")
def reference() -> World:
    return generate_world("reference")


def test_presets_shipped():
    assert preset_names() == ("large", "reference", "small", "tiny")


def test_same_seed_same_world_byte_for_byte(tmp_path):
    a, b = fresh("tiny"), fresh("tiny")
    assert a.fingerprint == b.fingerprint
    pa_ = export_world(a, tmp_path / "a")
    pb_ = export_world(b, tmp_path / "b")
    for p, q in zip(pa_, pb_, strict=True):
        assert p.read_bytes() == q.read_bytes(), p.name


def test_default_seed_fingerprint_is_pinned(tiny):
    assert tiny.fingerprint == generate_world("tiny", seed=load_preset("tiny").seed).fingerprint
    assert tiny.fingerprint == TINY_FINGERPRINT, (
        "the tiny world changed: if the generator, a preset or a pinned dependency changed on "
        "purpose, update TINY_FINGERPRINT"
    )


def test_different_seed_different_world(tiny):
    other = generate_world("tiny", seed=1)
    assert other.fingerprint != tiny.fingerprint
    assert other.source == "preset:tiny?seed=1"
    assert fresh("tiny", 1).fingerprint == other.fingerprint


def test_bad_seed_and_unknown_preset():
    with pytest.raises(EngineError) as info:
        generate_world("tiny", seed=-1)
    assert info.value.code == "WORLD_PRESET_INVALID"
    with pytest.raises(EngineError) as info:
        generate_world("huge")
    assert info.value.code == "WORLD_NOT_FOUND"


def test_generate_world_returns_independent_table_dicts():
    a = generate_world("tiny")
    a.tables.pop("edges")
    assert "edges" in generate_world("tiny").tables


# ----------------------------------------------------------------------------- tiny
def _tzids(world: World) -> set[str]:
    return set(world.series.column("tzid").to_pylist()) | set(
        world.sites.column("tzid").to_pylist()
    )


def test_tiny_dimensions(tiny):
    assert tiny.merchants.num_rows == 20
    assert _tzids(tiny) == {
        "America/New_York",
        "America/Chicago",
        "Europe/London",
        "Europe/Berlin",
        "Asia/Kolkata",
        "Asia/Tokyo",
    }
    modes = tiny.merchants.column("virtual_mode").to_pylist()
    assert modes.count("VIRTUAL_ONLY") >= 1 and modes.count("HYBRID") >= 1
    countries = defaultdict(set)
    for mid, cc in zip(
        tiny.sites.column("merchant_id").to_pylist(),
        tiny.sites.column("legal_country_iso").to_pylist(),
        strict=True,
    ):
        countries[mid].add(cc)
    assert any(len(c) >= 2 for c in countries.values()), "a merchant with sites in two countries"
    scale = tiny.series.column("scale").to_numpy()
    assert scale.sum() == pytest.approx(load_preset("tiny").weekly_arrivals, rel=1e-6)
    assert 0.5e6 <= scale.sum() * 52 <= 3e6  # a year of tiny is cheap


def test_reference_dimensions(reference):
    assert reference.merchants.num_rows == 886
    assert reference.sites.num_rows == 24000
    assert reference.edges.num_rows == 5000
    assert len(_tzids(reference)) == 139
    assert 15500 <= reference.series.num_rows <= 17500
    modes = reference.merchants.column("virtual_mode").to_pylist()
    assert 0 < modes.count("VIRTUAL_ONLY") + modes.count("HYBRID") < 0.15 * len(modes)


def test_large_preset_is_ten_reference_worlds():
    """The scaling preset: every count ten times the reference's, the same zones and
    distribution widths (what makes its cost comparable), its own seed."""
    ref, large = load_preset("reference"), load_preset("large")
    tenfold = ("merchants", "virtual_only_merchants", "hybrid_merchants", "locations",
               "sites", "edges")
    for field in tenfold:
        assert getattr(large, field) == 10 * getattr(ref, field), field
    assert large.weekly_arrivals == pytest.approx(10 * ref.weekly_arrivals, rel=1e-12)
    assert large.zones == ref.zones == 139
    widths = set(type(ref).model_fields) - {*tenfold, "weekly_arrivals", "seed", "description"}
    assert {f: getattr(large, f) for f in widths} == {f: getattr(ref, f) for f in widths}
    assert large.seed != ref.seed


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ENGINE_TEST_LARGE") != "1",
                    reason="generates the large world (≈ 1.2 GB, 10–50 s on a shared 2-core "
                    "box): set ENGINE_TEST_LARGE=1")
def test_large_world_generates_and_validates():
    """Generated and validated like the other presets: it passes every input rule,
    fingerprints, and has ten times the reference's merchants, sites and edges."""
    large = generate_world("large")
    assert large.merchants.num_rows == 8860
    assert large.sites.num_rows == 240000
    assert large.edges.num_rows == 50000
    assert len(_tzids(large)) == 139
    # series ≈ 10 × the reference's 15 500–17 500 (one per merchant, location, channel)
    assert 155_000 <= large.series.num_rows <= 175_000
    modes = large.merchants.column("virtual_mode").to_pylist()
    assert (modes.count("VIRTUAL_ONLY"), modes.count("HYBRID")) == (270, 530)
    scale = large.series.column("scale").to_numpy()
    assert scale.sum() == pytest.approx(load_preset("large").weekly_arrivals, rel=1e-6)
    assert fingerprint_canonical(canonical_world_tables(large.tables)) == large.fingerprint


def test_small_dimensions():
    small = generate_world("small")
    assert small.merchants.num_rows == 150
    assert len(_tzids(small)) == 30
    assert 1000 <= small.series.num_rows <= 2500


def test_reference_scales_are_heavy_tailed(reference):
    by_merchant = defaultdict(float)
    for mid, s in zip(
        reference.series.column("merchant_id").to_pylist(),
        reference.series.column("scale").to_pylist(),
        strict=True,
    ):
        by_merchant[mid] += s
    sizes = np.sort(np.array(list(by_merchant.values())))[::-1]
    assert sizes[:10].sum() / sizes.sum() > 0.3  # a few merchants carry much of the volume
    # Zipf-like tail (Pareto law, exponent 1; docs/calibration.md): the MLE exponent of the
    # largest fifth is within 3 standard errors (1/sqrt(178) = 0.075 each) of 1
    from engine_core.fidelity.estimators import tail_exponent_mle

    zeta, se, _ = tail_exponent_mle(sizes, 0.2)
    assert abs(zeta - 1.0) <= 3 * se
    assert sizes.max() / np.median(sizes) > 100


# ----------------------------------------------------------------------------- structure
@pytest.mark.parametrize("preset", ["tiny", "reference"])
def test_series_structure_follows_virtual_mode(preset, tiny, reference):
    world = tiny if preset == "tiny" else reference
    m = world.merchants
    mode = dict(
        zip(m.column("merchant_id").to_pylist(), m.column("virtual_mode").to_pylist(), strict=True)
    )
    settle = dict(
        zip(
            m.column("merchant_id").to_pylist(),
            m.column("settlement_tzid").to_pylist(),
            strict=True,
        )
    )
    site_locations = set(
        zip(
            world.sites.column("merchant_id").to_pylist(),
            world.sites.column("legal_country_iso").to_pylist(),
            world.sites.column("tzid").to_pylist(),
            strict=True,
        )
    )
    edge_merchants = set(world.edges.column("merchant_id").to_pylist())
    vo_series = defaultdict(list)
    for mid, cc, tz, ch in zip(
        *(
            world.series.column(c).to_pylist()
            for c in ("merchant_id", "legal_country_iso", "tzid", "channel_group")
        ),
        strict=True,
    ):
        assert ch in CHANNEL_GROUPS
        if mode[mid] == "VIRTUAL_ONLY":
            assert ch == "card_not_present"
            assert tz == settle[mid]  # home zone = settlement zone
            vo_series[mid].append(tz)
        else:
            assert (mid, cc, tz) in site_locations
            assert ch == ("mixed" if mode[mid] == "HYBRID" else ch)
            assert ch != "card_not_present"
    assert all(len(v) == 1 for v in vo_series.values())
    for mid, md in mode.items():
        assert (settle[mid] is None) == (md == "NON_VIRTUAL")
        assert (mid in edge_merchants) == (md != "NON_VIRTUAL")


def test_shapes_are_normalised_and_positive(reference):
    shape = (
        reference.series.column("shape")
        .combine_chunks()
        .flatten()
        .to_numpy()
        .reshape(-1, HOURS_PER_WEEK)
    )
    assert np.allclose(shape.sum(axis=1), HOURS_PER_WEEK, rtol=1e-6)
    assert (shape > 0).all()


def test_eleven_distinct_class_shapes():
    shapes = class_shapes(load_catalogue())
    assert shapes.shape == (len(DEMAND_CLASSES), HOURS_PER_WEEK)
    for i in range(len(DEMAND_CLASSES)):
        for j in range(i):
            assert np.abs(shapes[i] - shapes[j]).max() > 0.2, (DEMAND_CLASSES[i], DEMAND_CLASSES[j])


def _class(name: str) -> np.ndarray:
    return class_shapes(load_catalogue())[DEMAND_CLASSES.index(name)].reshape(7, 24)


def test_class_shapes_have_their_character():
    office = _class("office_hours")
    for day in range(5):
        assert 9 <= int(np.argmax(office[day])) < 17
    assert office[5:].sum() / office.sum() < 0.1  # quiet weekends
    evening = _class("evening_weekend")
    assert int(np.argmax(evening[4])) >= 18  # Friday: the evening peak
    assert evening[5][23] > evening[5][22]  # Saturday: the late peak around 23:00
    assert evening[4:].sum() > evening[:4].sum() * 0.75  # Friday to Sunday carry the week
    fuel = _class("fuel_convenience")[0]
    assert 6 <= int(np.argmax(fuel[:12])) <= 9 and 16 <= int(np.argmax(fuel[12:])) + 12 <= 19
    online = _class("online_24h")
    assert online.min() / online.max() > 0.2  # flat-ish around the clock
    bursty = _class("online_bursty")
    assert bursty.max() / np.median(bursty) > 5
    retail = _class("retail_daytime")
    assert retail[5].sum() > retail[0].sum()  # Saturday is the big day


def test_round_significant_is_exact_decimal_rounding():
    x = np.array([1.23456789012345, 9.87654321e-7, 123456789.987, 0.5])
    r = round_significant(x)
    assert r.tolist() == [1.23456789, 9.87654321e-07, 123456790.0, 0.5]


def test_generated_tables_have_contract_schemas(reference):
    for name, schema in WORLD_TABLES.items():
        assert reference.tables[name].schema.equals(schema), name
    keys = reference.series.select(["merchant_id", "legal_country_iso", "tzid", "channel_group"])
    assert keys.group_by(keys.column_names).aggregate([]).num_rows == keys.num_rows
    assert pc.all(pc.greater(reference.sites.column("weight"), 0)).as_py()
