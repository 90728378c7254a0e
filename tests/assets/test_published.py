"""A state step's materialisation and its rules (``StateStep.published``): the metadata is
drawn on a thread of its own while the rules run on the step's thread; the materialisation
comes first, also when the rules crash; a plot that fails off the step's thread is still
logged as a warning and never fails the step."""

from __future__ import annotations

import logging
import threading

import dagster as dg

from engine_assets import plots
from engine_assets.asset_keys import S1_TIME_GRID, S2_LATENT_INTENSITY, WORLD
from engine_assets.definitions import ENGINE_ASSETS
from engine_core.pipeline.run import Run

from .conftest import PARTITION, engine_resources

UP_TO_S2 = [a for a in ENGINE_ASSETS
            if {k.path[-1] for k in a.keys} & {WORLD, S1_TIME_GRID, S2_LATENT_INTENSITY}]


def _materialize(instance, root):
    return dg.materialize(UP_TO_S2, partition_key=PARTITION.key, instance=instance,
                          resources=engine_resources(root), raise_on_error=False)


def _s2_events(result, kind: str) -> list:
    return [e for e in result.all_events
            if e.step_key == S2_LATENT_INTENSITY and e.event_type_value == kind]


def test_the_plots_are_drawn_beside_the_rules(instance, tmp_path, monkeypatch):
    """The S2 plot runs on the metadata thread while the S2 rules run on the step's thread:
    the plot waits until the rules have started, so the two overlap or the test times out."""
    seen: dict[str, str] = {}
    rules_started = threading.Event()
    check, draw = Run.check, plots.latent_factor_png

    def rules(self, state, *args, **kwargs):
        if state == "s2":
            seen["rules"] = threading.current_thread().name
            rules_started.set()
        return check(self, state, *args, **kwargs)

    def plot(*args, **kwargs):
        seen["plot"] = threading.current_thread().name
        assert rules_started.wait(60), "the rules did not start while the plot was drawn"
        return draw(*args, **kwargs)

    monkeypatch.setattr(Run, "check", rules)
    monkeypatch.setattr(plots, "latent_factor_png", plot)
    result = _materialize(instance, tmp_path / "data")
    assert result.success
    assert seen["rules"] == threading.main_thread().name
    assert seen["plot"].startswith("s2-metadata")
    (mat,) = _s2_events(result, "ASSET_MATERIALIZATION")
    md = mat.step_materialization_data.materialization.metadata
    assert "plot_latent_factor" in md and md["dagster/row_count"].value > 0
    checks = _s2_events(result, "ASSET_CHECK_EVALUATION")
    assert checks and all(e.asset_check_evaluation_data.passed for e in checks)


def test_a_failed_plot_off_the_step_thread_is_a_warning(instance, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no canvas")

    monkeypatch.setattr(plots, "latent_factor_png", broken)
    result = _materialize(instance, tmp_path / "data")
    assert result.success
    (mat,) = _s2_events(result, "ASSET_MATERIALIZATION")
    assert "plot_latent_factor" not in mat.step_materialization_data.materialization.metadata
    warnings = [e.user_message for e in instance.all_logs(result.run_id)
                if e.step_key == S2_LATENT_INTENSITY and e.level == logging.WARNING]
    assert any("'Latent factor' not rendered" in m and "no canvas" in m for m in warnings)


def test_rules_that_crash_still_leave_the_materialisation(instance, tmp_path, monkeypatch):
    """The data was published before the rules ran: a defect in the rules fails the step
    with its code, after the materialisation has been recorded."""
    check = Run.check

    def crash(self, state, *args, **kwargs):
        if state == "s2":
            raise ValueError("a defect in the rules")
        return check(self, state, *args, **kwargs)

    monkeypatch.setattr(Run, "check", crash)
    result = _materialize(instance, tmp_path / "data")
    assert not result.success
    assert len(_s2_events(result, "ASSET_MATERIALIZATION")) == 1
    (failure,) = _s2_events(result, "STEP_FAILURE")
    metadata = failure.step_failure_data.user_failure_data.metadata
    assert metadata["code"].value == "INTERNAL_ERROR"
    assert _s2_events(result, "ASSET_CHECK_EVALUATION") == []
