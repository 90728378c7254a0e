"""Wiring snapshot: every asset key, check key, partition key, dependency and automation.

A change to the wiring changes tests/assets/definitions_snapshot.json, so it shows in review.
Regenerate deliberately with ``ENGINE_UPDATE_SNAPSHOT=1 pytest tests/assets/test_definitions.py``.
"""

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from engine_assets.checks import check_name
from engine_assets.definitions import defs
from engine_assets.partitions import engine_partitions
from engine_core.checks.catalogue import RULES
from engine_core.fidelity.report import CHECKS as FIDELITY_CODES

FIDELITY = "fidelity_report"
SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")
REPO = Path(__file__).resolve().parents[2]
STATE_ASSETS = {
    "world": {"world"},
    "s1": {"s1_time_grid", "s1_grouping"},
    "s2": {"s2_latent_intensity"},
    "s3": {"s3_bucket_counts"},
    "s4": {"s4_arrival_events"},
}


def wiring() -> dict:
    graph = defs.resolve_asset_graph()
    assets = sorted(k.to_user_string() for k in graph.get_all_asset_keys())
    checks = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys)
    deps = {
        k.to_user_string(): sorted(p.to_user_string() for p in graph.get(k).parent_keys)
        for k in graph.get_all_asset_keys()
    }
    repo = defs.get_repository_def()
    return {
        "assets": assets,
        "checks": checks,
        "deps": dict(sorted(deps.items())),
        "partition_keys_at_2026_06_01": engine_partitions.get_partition_keys(
            current_time=dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
        ),
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "schedules": sorted(s.name for s in repo.schedule_defs),
        "sensors": sorted(s.name for s in repo.sensor_defs),
    }


def test_wiring_matches_snapshot():
    current = wiring()
    if os.environ.get("ENGINE_UPDATE_SNAPSHOT") or not SNAPSHOT.exists():
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_one_check_per_rule_on_the_asset_of_its_state():
    graph = defs.resolve_asset_graph()
    rule_keys = [k for k in graph.asset_check_keys if k.asset_key.to_user_string() != FIDELITY]
    by_name = {k.name: k for k in rule_keys}
    assert len(by_name) == len(RULES) == len(rule_keys)
    for rule in RULES:
        key = by_name[check_name(rule.code)]
        assert key.asset_key.to_user_string() in STATE_ASSETS[rule.state]
        spec = graph.get(key)
        assert spec.blocking == rule.blocking, rule.code


def test_fidelity_checks_warn_and_never_block():
    graph = defs.resolve_asset_graph()
    keys = [k for k in graph.asset_check_keys if k.asset_key.to_user_string() == FIDELITY]
    assert sorted(k.name for k in keys) == sorted(code.lower() for code, _ in FIDELITY_CODES)
    assert not any(graph.get(k).blocking for k in keys)
    assert [p.to_user_string() for p in graph.get(dg.AssetKey(FIDELITY)).parent_keys] == [
        "s4_arrival_events"
    ]


def test_definitions_load():
    dg.Definitions.validate_loadable(defs)


def test_dagster_cli_validates_the_workspace():
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
