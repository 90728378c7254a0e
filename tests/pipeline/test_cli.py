"""The `arrival-engine` CLI end to end (SPEC §9): summary, progress, exit codes, PASS flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from engine_core.config import DEFAULT_POLICY_PATH

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "engine_core.cli"]


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, "NUMBA_NUM_THREADS": "2"})


def summary_of(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scenario", ["baseline", "stress"])
def test_a_year_of_tiny_passes_every_rule(tmp_path, scenario):
    out = tmp_path / "out"
    proc = cli("run", "--world", "tiny", "--scenario", scenario, "--start", "2026-01-01",
               "--end", "2027-01-01", "--seed", "42", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    s = summary_of(proc)
    assert s["passed"] is True and s["failed_rules"] == []
    assert set(s["states"]) == {"s1", "s2", "s3", "s4", "s5"}
    for st in ("s1", "s2", "s3", "s4", "s5"):
        assert s["states"][st]["elapsed_s"] >= 0 and "rows" in s["states"][st]
    assert s["states"]["s1"]["rows"] == 8760
    assert s["events"] == s["states"]["s4"]["events"] > 100_000
    assert s["states"]["s4"]["events_per_s"] > 0
    assert s["peak_rss_mb"] > 0
    run_root = Path(s["out"])
    assert run_root.is_relative_to(out)
    val = run_root / "validation" / f"scenario={scenario}" / "year=2026"
    assert (val / "_passed.flag").exists()
    report = json.loads((val / "report.json").read_text())
    assert report["passed"] is True
    codes = {r["code"] for r in report["rules"]}
    from engine_core.checks.catalogue import RULES

    assert codes == {r.code for r in RULES}
    ev = pl.scan_parquet(str(run_root / "arrival_events" / f"scenario={scenario}" / "year=2026"
                             / "*.parquet")).select(pl.len()).collect().item()
    assert ev == s["events"]
    # progress on stderr: state, processed/total, rate and ETA
    assert "[s4]" in proc.stderr and "events/s" in proc.stderr and "eta" in proc.stderr


def test_failed_validation_exits_1_with_codes_and_no_flag(tmp_path):
    pack = yaml.safe_load(Path(DEFAULT_POLICY_PATH).read_text())
    # an impossible tolerance: the realised mean latent factor is never within 1e-12 of 1
    pack["validation"]["mean_factor_tolerance"] = 1e-12
    policy = tmp_path / "strict.yaml"
    policy.write_text(yaml.safe_dump(pack))
    out = tmp_path / "out"
    proc = cli("run", "--world", "tiny", "--scenario", "baseline", "--start", "2026-01-01",
               "--end", "2026-01-08", "--out", str(out), "--policy", str(policy), "--quiet")
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "VALIDATION_FAILED" in proc.stderr and "LATENT_MEAN_FACTOR" in proc.stderr
    s = summary_of(proc)
    assert s["passed"] is False and "LATENT_MEAN_FACTOR" in s["failed_rules"]
    assert not list(out.rglob("_passed.flag"))
    assert list(out.rglob("report.json"))


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--scenario", "nope"], "SCENARIO_UNKNOWN"),
        (["--start", "2026-01-01T00:30:00"], "HORIZON_NOT_ALIGNED"),
        (["--end", "2025-12-01"], "HORIZON_INVALID"),
        (["--world", "no_such_world_anywhere"], "WORLD_NOT_FOUND"),
    ],
)
def test_bad_input_exits_2_with_code(tmp_path, args, code):
    base = {"--world": "tiny", "--scenario": "baseline", "--start": "2026-01-01",
            "--end": "2026-01-02"}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    flat = [x for kv in base.items() for x in kv]
    proc = cli("run", *flat, "--out", str(tmp_path / "o"), "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.startswith(code), proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["error"]["code"] == code
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.parquet"))


def test_world_export_and_check_roundtrip(tmp_path):
    proc = cli("world", "export", "--preset", "tiny", "--out", str(tmp_path / "w"))
    assert proc.returncode == 0, proc.stderr
    fp = json.loads(proc.stdout)["fingerprint"]
    chk = cli("world", "check", str(tmp_path / "w"))
    assert chk.returncode == 0, chk.stderr
    assert json.loads(chk.stdout)["fingerprint"] == fp


def test_republishing_a_state_withdraws_the_pass_flag(tmp_path):
    import datetime as dt

    from engine_core.pipeline import Run, RunConfig
    from engine_core.pipeline.run import run_all

    cfg = RunConfig(world="tiny", scenario="baseline",
                    start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                    end=dt.datetime(2026, 1, 3, tzinfo=dt.UTC), storage_root=str(tmp_path))
    eng = Run.open(cfg)
    assert run_all(eng)["passed"]
    flag = Path(eng.store.dataset_path("validation", 2026)) / "_passed.flag"
    assert flag.exists()
    Run.open(cfg).run_s3()
    assert not flag.exists()


def test_internal_error_exits_3(monkeypatch, capsys):
    from engine_core import cli as cli_mod

    def boom(args):
        raise RuntimeError("simulated defect")

    monkeypatch.setattr(cli_mod, "_cmd_run", boom)
    code = cli_mod.main(["run", "--start", "2026-01-01", "--end", "2026-01-02", "--out", "x"])
    out = capsys.readouterr()
    assert code == 3
    assert "INTERNAL_ERROR: RuntimeError: simulated defect" in out.err
    assert json.loads(out.out.strip().splitlines()[-1])["error"]["code"] == "INTERNAL_ERROR"
