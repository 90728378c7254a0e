"""Fixtures for pipeline tests: run S1–S4 of the tiny world over a horizon."""

from __future__ import annotations

import datetime as dt

import pytest

from engine_core.pipeline import Run, RunConfig


def run_states(root: str, start: dt.datetime, end: dt.datetime, *, world: str = "tiny",
               scenario: str = "baseline", seed: int = 42, threads: int | None = None,
               policy_path: str | None = None) -> Run:
    eng = Run.open(RunConfig(world=world, scenario=scenario, start=start, end=end,
                           storage_root=root, seed=seed, threads=threads,
                           policy_path=policy_path))
    eng.state("s1")
    eng.state("s2")
    eng.state("s3")
    eng.state("s4")
    return eng


@pytest.fixture
def states_runner():
    return run_states
