"""The engine assets' retry policy in Dagster: a transient storage error is retried (and a
step that then succeeds materialises), a defect or bad input fails after one attempt with its
code, and a transient error is never recorded as a failed world_valid check. The engine is
replaced by a stub that fails on demand, so no state computes."""

from __future__ import annotations

import dagster as dg
import pytest

from engine_assets.resources import EngineSettings
from engine_assets.retries import ENGINE_RETRY_POLICY
from engine_assets.world import world
from engine_core.errors import EngineError

from .conftest import PARTITION, engine_resources

DROPPED = OSError(
    "When reading information for key 'k' in bucket 'b': AWS Error NETWORK_CONNECTION during "
    "HeadObject operation: curlCode: 52, Server returned nothing (no headers, no data)"
)


class FailingOpen:
    """Replaces EngineSettings.open_run: raises the queued errors, then a sentinel."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        raise EngineError("WORLD_NOT_FOUND", "stub: the world is gone", key="stub")


def _run(monkeypatch, tmp_path, errors):
    stub = FailingOpen(errors)
    monkeypatch.setattr(EngineSettings, "open_run", stub)
    with dg.instance_for_test() as instance:
        result = dg.materialize([world], partition_key=PARTITION.key, instance=instance,
                                resources=engine_resources(tmp_path), raise_on_error=False)
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    checks = result.get_asset_check_evaluations()
    return stub.calls, len(retried), failure.metadata, checks


def test_a_transient_error_is_retried_then_fails_with_its_code(monkeypatch, tmp_path):
    attempts = 1 + ENGINE_RETRY_POLICY.max_retries
    calls, retried, metadata, checks = _run(monkeypatch, tmp_path, [DROPPED] * attempts)
    assert calls == attempts and retried == ENGINE_RETRY_POLICY.max_retries
    assert metadata["code"].value == "STORAGE_TRANSIENT"
    assert metadata["transient"].value is True
    assert checks == [], "a store that failed says nothing about the world"


def test_a_transient_error_followed_by_bad_input_stops_at_the_bad_input(monkeypatch, tmp_path):
    calls, retried, metadata, checks = _run(monkeypatch, tmp_path, [DROPPED])
    assert calls == 2 and retried == 1
    assert metadata["code"].value == "WORLD_NOT_FOUND"
    assert metadata["transient"].value is False
    assert [c.check_name for c in checks] == ["world_valid"] and not checks[0].passed


@pytest.mark.parametrize("error", [KeyError("column"), ValueError("bad value")])
def test_a_defect_fails_once(monkeypatch, tmp_path, error):
    calls, retried, metadata, _ = _run(monkeypatch, tmp_path, [error])
    assert calls == 1 and retried == 0
    assert metadata["code"].value == "INTERNAL_ERROR"
