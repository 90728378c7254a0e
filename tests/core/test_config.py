"""The policy pack: defaults, every class of bad value, unreadable files, parameter_hash."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
import yaml

from engine_core.config import (
    DEFAULT_POLICY_PATH,
    Policy,
    canonical_json,
    load_policy,
    parameter_hash,
)
from engine_core.errors import EngineError
from engine_core.schemas import DEMAND_CLASSES


@pytest.fixture(scope="module")
def default_doc() -> dict:
    return yaml.safe_load(DEFAULT_POLICY_PATH.read_text())


def write_doc(path: Path, doc: dict, **dump_kwargs) -> Path:
    path.write_text(yaml.safe_dump(doc, **dump_kwargs))
    return path


def mutate(doc: dict, dotted: str, value: object) -> dict:
    out = copy.deepcopy(doc)
    *parents, leaf = dotted.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return out


DELETE = object()


def test_default_policy_loads_with_spec_defaults():
    assert DEFAULT_POLICY_PATH.is_file()
    assert DEFAULT_POLICY_PATH == Path(__file__).resolve().parents[2] / "configs" / "policy.yaml"
    p = load_policy()
    assert isinstance(p, Policy)
    assert p == load_policy(DEFAULT_POLICY_PATH)
    assert p.namespace == "default"
    assert p.time_grid.bucket_seconds == 3600
    assert (p.grouping.zone_groups, p.grouping.hash_buckets) == (16, 32)
    assert (p.latent.sigma_base.baseline, p.latent.sigma_base.stress) == (0.25, 0.40)
    assert (p.latent.length_scale_base.baseline, p.latent.length_scale_base.stress) == (24, 12)
    assert p.latent.sigma_bounds == (0.05, 1.2)
    assert p.latent.length_scale_bounds == (2.0, 168.0)
    assert p.latent.factor_clip == (0.2, 5.0)
    assert p.counts.law == "nb2"
    assert (p.counts.kappa_base.baseline, p.counts.kappa_base.stress) == (30.0, 12.0)
    assert p.counts.kappa_bounds == (2.0, 200.0)
    assert p.counts.lambda_max == 200000.0
    assert p.counts.mu_epsilon == 1e-9
    assert p.counts.max_count_per_bucket == 50000
    assert p.routing.p_virtual_hybrid == 0.35
    assert p.latent.sigma_class_multiplier.of("online_bursty") == 1.60
    assert p.latent.length_scale_class_multiplier.of("online_bursty") == 0.50
    assert p.counts.kappa_class_multiplier.of("bills_utilities") == 1.20
    assert p.latent.sigma_channel_multiplier.of("card_not_present") == 1.10
    assert p.latent.sigma_virtual_multiplier.virtual == 1.15
    for c in DEMAND_CLASSES:  # every class has each multiplier
        assert p.latent.sigma_class_multiplier.of(c) > 0
        assert p.latent.length_scale_class_multiplier.of(c) > 0
        assert p.counts.kappa_class_multiplier.of(c) > 0


def test_policy_is_frozen():
    p = load_policy()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises its own ValidationError
        p.namespace = "other"  # type: ignore[misc]


BAD_VALUES = [
    # (field path, value, words the rule mentions)
    ("time_grid.bucket_seconds", 7000, "divide 86400"),
    ("time_grid.bucket_seconds", 0, "greater than 0"),
    ("time_grid.bucket_seconds", "3600", "valid integer"),
    ("time_grid.bucket_seconds", 3600.5, "valid integer"),
    ("grouping.zone_groups", True, "valid integer"),
    ("latent.sigma_bounds", [1.2, 0.05], "lo <= hi"),
    ("latent.sigma_bounds", [0.05], "2-element list"),
    ("latent.length_scale_bounds", [2.0, 168.0, 300.0], "2-element list"),
    ("latent.factor_clip", [2.0, 5.0], "contain 1.0"),
    ("latent.sigma_base.baseline", -0.25, "greater than 0"),
    ("latent.length_scale_base.stress", 0, "greater than 0"),
    ("latent.block_buckets", -1, "greater than 0"),
    ("latent.sigma_class_multiplier.office_hours", DELETE, "Field required"),
    ("latent.sigma_class_multiplier.grocery", 1.0, "Extra inputs"),
    ("latent.sigma_channel_multiplier.mixed", 0.0, "greater than 0"),
    ("counts.law", "binomial", "'nb2' or 'poisson'"),
    ("counts.max_count_per_bucket", 70000, "less than or equal to 65535"),
    ("counts.kappa_bounds", [200.0, 2.0], "lo <= hi"),
    ("counts.lambda_max", float("nan"), "finite"),
    ("counts.lambda_max", float("inf"), "finite"),
    ("counts.mu_epsilon", 0.0, "greater than 0"),
    ("counts.kappa_class_multiplier.low_volume_tail", "high", "valid number"),
    ("routing.p_virtual_hybrid", 1.5, "less than or equal to 1"),
    ("namespace", "Bad Namespace!", "pattern"),
    ("namespace", "", "pattern"),
    ("version", 0, "greater than or equal to 1"),
    ("validation.group_size_min", 6000, "group_size_min"),
    ("validation.rng_rederive_sample", -5, "greater than or equal to 0"),
    ("extra_section", {"a": 1}, "Extra inputs"),
    ("routing", DELETE, "Field required"),
]


@pytest.mark.parametrize(("field", "value", "rule"), BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_value_rejected_naming_file_field_and_rule(tmp_path, default_doc, field, value, rule):
    path = write_doc(tmp_path / "policy.yaml", mutate(default_doc, field, value))
    with pytest.raises(EngineError) as info:
        load_policy(path)
    err = info.value
    assert err.code == "POLICY_INVALID"
    assert str(path) in err.message
    expected_field = "validation" if field == "validation.group_size_min" else field
    assert err.column == expected_field
    assert f"{expected_field}:" in err.message
    assert rule in err.message


def test_several_errors_are_all_listed(tmp_path, default_doc):
    doc = mutate(default_doc, "counts.law", "x")
    doc = mutate(doc, "routing.p_virtual_hybrid", -1)
    with pytest.raises(EngineError) as info:
        load_policy(write_doc(tmp_path / "p.yaml", doc))
    assert "counts.law" in info.value.message
    assert "routing.p_virtual_hybrid" in info.value.message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, "cannot read"),
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("- a\n- b\n", "mapping"),
        ("version: [1\n", "not valid safe YAML"),
        ("version: !!python/object:os.system {}\n", "not valid safe YAML"),
        ("version: !!python/object/apply:os.system ['true']\n", "not valid safe YAML"),
        ("version: 1\nversion: 2\n", "duplicate key"),
    ],
    ids=["missing", "empty", "comment-only", "list", "syntax", "python-object", "apply", "dup"],
)
def test_unreadable_policy(tmp_path, text, words):
    path = tmp_path / "policy.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(EngineError) as info:
        load_policy(path)
    assert info.value.code == "POLICY_UNREADABLE"
    assert str(path) in info.value.message
    assert words in info.value.message


def test_hash_is_hex_sha256_of_canonical_json():
    p = load_policy()
    h = parameter_hash(p)
    assert len(h) == 64 and int(h, 16) >= 0
    expected = hashlib.sha256(canonical_json(p.model_dump()).encode()).hexdigest()
    assert h == expected
    doc = json.loads(canonical_json(p.model_dump()))
    assert list(doc) == sorted(doc)  # sorted keys
    assert " " not in canonical_json({"a": [1.0, 2.5], "b": "x"})


def test_hash_stable_under_key_order_and_formatting(tmp_path, default_doc):
    base = parameter_hash(load_policy())
    sorted_keys = write_doc(tmp_path / "sorted.yaml", default_doc, sort_keys=True)
    flow = write_doc(tmp_path / "flow.yaml", default_doc, sort_keys=False, default_flow_style=True)
    reversed_doc = {k: default_doc[k] for k in reversed(list(default_doc))}
    reversed_doc["latent"] = {
        k: default_doc["latent"][k] for k in reversed(list(default_doc["latent"]))
    }
    rev = write_doc(tmp_path / "reversed.yaml", reversed_doc, sort_keys=False)
    # ints written where floats are expected, comments and odd spacing
    text = DEFAULT_POLICY_PATH.read_text()
    text = text.replace(
        "length_scale_base: {baseline: 24.0, stress: 12.0}",
        "length_scale_base:   {stress: 12,   baseline: 24}   # reordered",
    )
    text = text.replace("lambda_max: 200000.0", "lambda_max: 2.0e+5")
    assert "stress: 12," in text and "2.0e+5" in text
    edited = tmp_path / "edited.yaml"
    edited.write_text("# a leading comment\n\n" + text)
    for path in (sorted_keys, flow, rev, edited):
        assert parameter_hash(load_policy(path)) == base, path.name


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("routing.p_virtual_hybrid", 0.36),
        ("namespace", "other"),
        ("counts.law", "poisson"),
        ("latent.sigma_class_multiplier.online_bursty", 1.61),
        ("latent.sigma_bounds", [0.05, 1.3]),
    ],
)
def test_hash_changes_when_a_value_changes(tmp_path, default_doc, field, value):
    base = parameter_hash(load_policy())
    path = write_doc(tmp_path / "p.yaml", mutate(default_doc, field, value))
    assert parameter_hash(load_policy(path)) != base
