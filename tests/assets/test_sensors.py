"""The alert sensor over asset check evaluations, on a small stand-in asset (fast); the
engine's own failing checks are covered in test_failed_checks.py."""

import json
import warnings

import dagster as dg
import pytest

from engine_assets.partitions import engine_partitions
from engine_assets.resources import AlertSettings, EngineStorage
from engine_assets.sensors import check_evaluation_records, check_failure_alerts


def _spec(name, blocking=False):
    with warnings.catch_warnings():  # partitioned checks are a Dagster preview (docs/dagster.md)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(
            name, asset="stand_in", blocking=blocking, partitions_def=engine_partitions
        )


@dg.asset(
    name="stand_in",
    partitions_def=engine_partitions,
    check_specs=[_spec("fine"), _spec("soft_rule"), _spec("hard_rule", blocking=True)],
)
def stand_in():
    yield dg.MaterializeResult()
    yield dg.AssetCheckResult(check_name="fine", passed=True)
    yield dg.AssetCheckResult(
        check_name="soft_rule",
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"ratio": 0.42, "examples": ["m=7"]},
    )
    yield dg.AssetCheckResult(
        check_name="hard_rule", passed=False, description="keys not unique", metadata={"dups": 3}
    )


def _materialize(instance, key):
    dg.materialize([stand_in], partition_key=key, instance=instance, raise_on_error=False)


def _tick(instance, tmp_path, cursor=None, webhook_url=None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "storage": EngineStorage(root=str(tmp_path / "data")),
            "alerts": AlertSettings(webhook_url=webhook_url, webhook_timeout_s=2),
        },
    )
    outcome = check_failure_alerts(context)
    return context.cursor, outcome


def _alerts(tmp_path):
    path = tmp_path / "data" / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_failed_check_alerts_once_in_log_and_webhook(instance, tmp_path, webhook):
    _materialize(instance, "baseline|2026")
    cursor, outcome = _tick(instance, tmp_path, webhook_url=webhook.url)
    assert "sent 2 alert(s)" in outcome.skip_message
    alerts = _alerts(tmp_path)
    assert sorted(a["check"] for a in alerts) == ["hard_rule", "soft_rule"]
    by_check = {a["check"]: a for a in alerts}
    assert by_check["hard_rule"]["severity"] == "ERROR" and by_check["hard_rule"]["blocking"]
    assert by_check["soft_rule"]["severity"] == "WARN" and not by_check["soft_rule"]["blocking"]
    assert by_check["soft_rule"]["figures"]["ratio"] == pytest.approx(0.42)
    assert {a["partition"] for a in alerts} == {"baseline|2026"}
    assert all(a["webhook"].startswith("delivered") for a in alerts)
    assert len(webhook.posts) == 2
    assert all(p["content_type"] == "application/json" for p in webhook.posts)
    assert {p["json"]["check"] for p in webhook.posts} == {"hard_rule", "soft_rule"}
    # nothing secret travels: the webhook URL is neither in the payload nor in the log
    assert webhook.url not in json.dumps(webhook.posts)
    assert webhook.url not in (tmp_path / "data" / "alerts.jsonl").read_text()

    # the same evaluations never alert twice
    cursor2, outcome = _tick(instance, tmp_path, cursor=cursor, webhook_url=webhook.url)
    assert cursor2 == cursor
    assert len(_alerts(tmp_path)) == 2 and len(webhook.posts) == 2

    # a new partition's failures alert, with their own partition
    _materialize(instance, "stress|2025")
    _, outcome = _tick(instance, tmp_path, cursor=cursor, webhook_url=webhook.url)
    new = _alerts(tmp_path)[2:]
    assert {a["partition"] for a in new} == {"stress|2025"} and len(new) == 2
    assert len(webhook.posts) == 4


def test_unreachable_webhook_is_recorded_not_retried(instance, tmp_path):
    _materialize(instance, "baseline|2025")
    cursor, _ = _tick(instance, tmp_path, webhook_url="http://127.0.0.1:9/alerts")
    alerts = _alerts(tmp_path)
    assert len(alerts) == 2 and all(a["webhook"].startswith("failed") for a in alerts)
    _tick(instance, tmp_path, cursor=cursor, webhook_url="http://127.0.0.1:9/alerts")
    assert len(_alerts(tmp_path)) == 2


def test_no_evaluations_means_no_alerts(instance, tmp_path):
    cursor, outcome = _tick(instance, tmp_path)
    assert cursor is None and "no new" in outcome.skip_message
    assert _alerts(tmp_path) == []


def test_sensor_is_stopped_by_default():
    assert check_failure_alerts.default_status == dg.DefaultSensorStatus.STOPPED


def _evaluation_partitions(instance):
    records = check_evaluation_records(instance, None, 1000)
    return {
        r.event_log_entry.dagster_event.event_specific_data.check_name: (
            r.event_log_entry.dagster_event.event_specific_data.partition
        )
        for r in records
    }


def test_alert_names_the_partition_recorded_in_the_evaluation(instance, tmp_path, webhook):
    # A run tagged with its partition (what an asset backfill launches for this project):
    # the evaluation carries the partition, and the log line and webhook payload name it.
    dg.materialize(
        [stand_in],
        tags={"dagster/partition": "stress|2025", "engine/trigger": "backfill"},
        instance=instance,
        raise_on_error=False,
    )
    assert _evaluation_partitions(instance)["hard_rule"] == "stress|2025"
    _tick(instance, tmp_path, webhook_url=webhook.url)
    assert {a["partition"] for a in _alerts(tmp_path)} == {"stress|2025"}
    assert {p["json"]["partition"] for p in webhook.posts} == {"stress|2025"}


def test_partition_is_not_reconstructed_from_run_tags(instance, tmp_path, webhook):
    # A run tagged only with a one-key partition range (a multi_run(1) backfill policy's
    # run): Dagster records its evaluations without a partition, and so does the alert,
    # although the range tags would name one.
    dg.materialize(
        [stand_in],
        tags={
            "dagster/asset_partition_range_start": "stress|2025",
            "dagster/asset_partition_range_end": "stress|2025",
        },
        instance=instance,
        raise_on_error=False,
    )
    assert set(_evaluation_partitions(instance).values()) == {None}
    _tick(instance, tmp_path, webhook_url=webhook.url)
    alerts = _alerts(tmp_path)
    assert sorted(a["check"] for a in alerts) == ["hard_rule", "soft_rule"]
    assert [a["partition"] for a in alerts] == [None, None]
    assert [p["json"]["partition"] for p in webhook.posts] == [None, None]
