"""The alert sensor: every failed asset check becomes exactly one alert.

Run-failure sensors never see a WARN check (the run succeeds), so this sensor reads the event
log itself: every ``ASSET_CHECK_EVALUATION`` record after its cursor, in storage order, any
asset, any partition, blocking or not. The cursor is the storage id of the last record
handled; it advances record by record, so a tick that stops half-way (a full disk) resumes
after the last alert it delivered, and no alert is ever sent twice. The partition an alert
names is the one recorded in the evaluation, the same the asset's Checks tab shows.

Starts STOPPED like every Dagster sensor; turn it on in the UI (Automation) or with
``dagster sensor start check_failure_alerts`` (docs/operations.md).
"""

from collections.abc import Sequence

import dagster as dg
from dagster._core.storage.event_log import SqlEventLogStorage

from engine_assets.alerts import AlertDelivery, alert_from_record
from engine_assets.resources import AlertSettings, EngineStorage

SENSOR_NAME = "check_failure_alerts"
RECORDS_PER_TICK = 500


def check_evaluation_records(
    instance: dg.DagsterInstance, after_storage_id: int | None, limit: int
) -> Sequence[dg.EventLogRecord]:
    """Check evaluation records with a storage id above ``after_storage_id``, oldest first.

    The default local instance shards its SQLite event log per run, where storage ids repeat
    across runs and an integer cursor is refused for non-asset events. It mirrors every check
    evaluation into its cross-run index database, though, under a global id: the base SQL
    implementation reads exactly that index (for Postgres it is the one event table), so the
    cursor means the same thing on every SQL-backed instance.
    """
    storage = instance.event_log_storage
    records_filter = dg.EventRecordsFilter(
        event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after_storage_id
    )
    if isinstance(storage, SqlEventLogStorage):
        return SqlEventLogStorage.get_event_records(
            storage, records_filter, limit=limit, ascending=True
        )
    return storage.get_event_records(records_filter, limit=limit, ascending=True)


@dg.sensor(
    name=SENSOR_NAME,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Turn every failed asset check (any asset, partition, severity) into one alert: "
    "a JSON line in the alert log and a POST to ENGINE_ALERT_WEBHOOK when set.",
)
def check_failure_alerts(
    context: dg.SensorEvaluationContext, storage: EngineStorage, alerts: AlertSettings
) -> dg.SkipReason:
    after = int(context.cursor) if context.cursor else None
    records = check_evaluation_records(context.instance, after, RECORDS_PER_TICK)
    delivery = AlertDelivery(
        log_path=alerts.resolved_log_path(storage),
        webhook_url=alerts.webhook_url,
        timeout_s=alerts.webhook_timeout_s,
    )
    sent = 0
    for record in records:
        alert = alert_from_record(record)
        if alert is not None:
            try:
                outcome = delivery.deliver(alert)
            except OSError as exc:
                # The cursor stays on the last delivered alert: the next tick retries this one.
                context.log.error(f"alert log {delivery.log_path} not writable: {exc}")
                return dg.SkipReason(f"sent {sent} alert(s); stopped on an unwritable log")
            sent += 1
            context.log.info(
                f"alert: {alert.asset}/{alert.check} partition={alert.partition} "
                f"severity={alert.severity} webhook={outcome['webhook']}"
            )
        context.update_cursor(str(record.storage_id))
    if not records:
        return dg.SkipReason("no new asset check evaluations")
    return dg.SkipReason(
        f"read {len(records)} check evaluation(s), sent {sent} alert(s) to {delivery.log_path}"
    )
