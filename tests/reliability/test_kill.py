"""SIGKILL during S3 and S4, the reduced version of benchmarks/soak_kill.py (5 trials on the
small world's January instead of 20 on a quarter): after each kill no partial dataset is
visible and no PASS flag appears; re-running the partition reproduces the bytes of an
uninterrupted run and leaves no staging leftovers."""

from __future__ import annotations

import datetime as dt
import importlib.util
import random
import sys

import pytest

from engine_core.pipeline import Run, RunConfig
from tests.reliability.conftest import REPO

TRIALS = 5
STATE_DATASETS = ("time_grid", "grouping", "latent_intensity", "bucket_counts", "arrival_events")


def _load_soak():
    spec = importlib.util.spec_from_file_location("soak_kill", REPO / "benchmarks" / "soak_kill.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


soak = _load_soak()
CFG = soak.SoakConfig(world="small", start="2026-01-01", end="2026-02-01", seed=42)


def _run_states(root) -> float:
    """S1–S4 in this process (the CLI's code path without S5); seconds spent in S3 + S4."""
    eng = Run.open(
        RunConfig(
            world=CFG.world,
            scenario=CFG.scenario,
            start=dt.datetime.fromisoformat(CFG.start).replace(tzinfo=dt.UTC),
            end=dt.datetime.fromisoformat(CFG.end).replace(tzinfo=dt.UTC),
            storage_root=str(root),
            seed=CFG.seed,
        )
    )
    eng.state("s1")
    eng.state("s2")
    return eng.state("s3").elapsed_s + eng.state("s4").elapsed_s


@pytest.mark.slow
def test_sigkill_in_s3_s4_leaves_nothing_partial(tmp_path):
    ref_root = tmp_path / "reference"
    _run_states(ref_root)  # warms the JIT cache too
    window = _run_states(tmp_path / "timing")
    reference = soak.snapshot(ref_root, STATE_DATASETS)

    def rerun(root) -> int:
        _run_states(root)
        return 0

    rng = random.Random(7)
    trials = [
        soak.run_trial(
            CFG, k, TRIALS, window, ref_root, reference, tmp_path, rng, rerun, 0, STATE_DATASETS
        )
        for k in range(TRIALS)
    ]
    report = "\n".join(str(t) for t in trials)
    for t in trials:
        assert not t.problems, report
        if t.killed_in in ("s3", "s4"):
            assert t.flags_after_kill == 0, report
        assert t.rerun_identical, report
        assert t.rerun_staging_clean, report
    killed = [t for t in trials if t.exit_code == -9]
    assert len(killed) >= 4, report
    assert {t.killed_in for t in killed} <= {"s3", "s4", "s5"}, report
