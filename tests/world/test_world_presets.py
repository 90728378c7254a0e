"""Preset and catalogue files: validated by pydantic, errors name file, field and rule."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from engine_core.errors import EngineError
from engine_core.schemas import DEMAND_CLASSES
from engine_core.world.presets import (
    CATALOGUE_FILE,
    WORLD_CONFIG_DIR,
    load_catalogue,
    load_preset,
    preset_names,
)


@pytest.fixture
def config_dir(tmp_path) -> Path:
    d = tmp_path / "worlds"
    shutil.copytree(WORLD_CONFIG_DIR, d)
    load_preset.cache_clear()
    load_catalogue.cache_clear()
    yield d
    load_preset.cache_clear()
    load_catalogue.cache_clear()


def edit(path: Path, dotted: str, value: object) -> None:
    doc = yaml.safe_load(path.read_text())
    node = doc
    *parents, leaf = dotted.split(".")
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    node[int(leaf) if isinstance(node, list) else leaf] = value
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_shipped_presets_and_catalogue_are_valid():
    assert preset_names() == ("large", "reference", "small", "tiny")
    catalogue = load_catalogue()
    assert len(catalogue.zones) >= 139
    assert set(catalogue.demand_classes) == set(DEMAND_CLASSES)
    for name in preset_names():
        preset = load_preset(name)
        assert preset.merchants > preset.virtual_only_merchants + preset.hybrid_merchants
    zones = [z.tzid for z in catalogue.zones]
    assert {"Asia/Kolkata", "Asia/Kathmandu", "Australia/Adelaide", "America/St_Johns"} <= set(
        zones
    )
    assert any(z.country == "NO" for z in catalogue.zones)  # not YAML's `false`


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("merchants", 0, "greater than 0"),
        ("sites", 10, "sites (10) < locations"),
        ("edges", 1, "edges (1) < virtual merchants"),
        ("virtual_only_demand_share", 0.0, "virtual_only_demand_share must be 0 exactly when"),
        ("merchant_size_sigma", "wide", "valid number"),
        ("zones", ["America/New_York", "Mars/Base"], "unknown IANA time zone"),
        ("seed", -3, "greater than or equal to 0"),
        ("colour", "blue", "Extra inputs"),
    ],
)
def test_bad_preset_rejected(config_dir, field, value, rule):
    path = config_dir / "tiny.yaml"
    edit(path, field, value)
    with pytest.raises(EngineError) as info:
        load_preset("tiny", config_dir)
    err = info.value
    assert err.code == "WORLD_PRESET_INVALID"
    assert str(path) in err.message and rule in err.message
    assert err.column is not None and err.column.split(".")[0] in (field, "zones")


def test_preset_zone_count_beyond_catalogue(config_dir):
    edit(config_dir / "reference.yaml", "zones", 1000)
    with pytest.raises(EngineError) as info:
        load_preset("reference", config_dir)
    assert (info.value.code, info.value.column) == ("WORLD_PRESET_INVALID", "zones")


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("zones.3", ["Europe/Paris", "France", 6.0], "zones.3.country"),
        ("zones.0", ["America/New_York", "US", -1.0], "zones.0.weight"),
        ("calendar.years", [2035, 2024], "calendar.years"),
        ("class_size.online_24h", 0, "class_size.online_24h"),
    ],
)
def test_bad_catalogue_rejected(config_dir, field, value, where):
    edit(config_dir / CATALOGUE_FILE, field, value)
    with pytest.raises(EngineError) as info:
        load_preset("tiny", config_dir)
    assert info.value.code == "WORLD_PRESET_INVALID"
    assert info.value.column == where
    assert str(config_dir / CATALOGUE_FILE) in info.value.message


def test_unknown_preset_name():
    with pytest.raises(EngineError) as info:
        load_preset("huge")
    assert (info.value.code, info.value.key) == ("WORLD_NOT_FOUND", "huge")


def test_python_tags_are_refused(config_dir):
    (config_dir / "tiny.yaml").write_text("seed: !!python/object/apply:os.getpid []\n")
    with pytest.raises(EngineError) as info:
        load_preset("tiny", config_dir)
    assert info.value.code == "WORLD_PRESET_INVALID"


def test_usable_zones_are_the_engine_tz_database():
    from engine_core.tz import available_tzids
    from engine_core.world.presets import usable_tzids

    assert usable_tzids() == available_tzids() - {"Factory"}
