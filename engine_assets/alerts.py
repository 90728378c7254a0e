"""Failed-check alerts: the payload and its two destinations.

Every alert is appended as one JSON line to the local alert log, and POSTed as JSON to the
webhook when one is configured. The payload carries what an on-call person needs (asset,
check, partition, severity, run, the rule's figures) and nothing secret: no webhook URL, no
environment, no resource configuration.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import dagster as dg

ALERT_KIND = "engine.asset_check_failed"
_MAX_VALUE_CHARS = 1_000


@dataclass(frozen=True)
class CheckAlert:
    storage_id: int
    timestamp: float
    run_id: str
    asset: str
    check: str
    partition: str | None
    severity: str
    blocking: bool
    description: str | None
    figures: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return {
            "kind": ALERT_KIND,
            "storage_id": self.storage_id,
            "time_utc": dt.datetime.fromtimestamp(self.timestamp, dt.UTC).isoformat(),
            "run_id": self.run_id,
            "asset": self.asset,
            "check": self.check,
            "partition": self.partition,
            "severity": self.severity,
            "blocking": self.blocking,
            "description": self.description,
            "figures": self.figures,
        }


def _plain(value: dg.MetadataValue) -> Any:
    raw = value.value if isinstance(value, dg.MetadataValue) else value
    if isinstance(raw, str | int | float | bool) or raw is None:
        return raw[:_MAX_VALUE_CHARS] if isinstance(raw, str) else raw
    text = json.dumps(raw, default=str)
    return raw if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS]


def alert_from_record(record: dg.EventLogRecord) -> CheckAlert | None:
    """The alert for a failed check evaluation record; None when the check passed.

    The partition is the evaluation's own, as recorded in the event log and shown by the UI;
    it is never reconstructed from the run's tags (None for a check evaluated outside a
    single-partition run)."""
    entry = record.event_log_entry
    event = entry.dagster_event
    if event is None:
        return None
    evaluation = event.event_specific_data
    if getattr(evaluation, "passed", True):
        return None
    severity = getattr(evaluation.severity, "value", str(evaluation.severity))
    blocking = evaluation.blocking
    return CheckAlert(
        storage_id=int(record.storage_id),
        timestamp=float(entry.timestamp),
        run_id=entry.run_id,
        asset=evaluation.asset_key.to_user_string(),
        check=evaluation.check_name,
        partition=evaluation.partition,
        severity=severity,
        blocking=bool(blocking) if blocking is not None else severity == "ERROR",
        description=evaluation.description,
        figures={k: _plain(v) for k, v in (evaluation.metadata or {}).items()},
    )


class AlertDelivery:
    """Appends alerts to the log and POSTs them to the webhook (if any)."""

    def __init__(self, log_path: str, webhook_url: str | None, timeout_s: float = 5.0) -> None:
        self.log_path = log_path
        self.webhook_url = webhook_url or None
        self.timeout_s = timeout_s

    def deliver(self, alert: CheckAlert) -> dict[str, Any]:
        """Send one alert. The webhook is tried once (a failure is recorded in the log line,
        never retried: an alert is never sent twice); the log line is always written."""
        payload = alert.payload()
        webhook = self.post(payload) if self.webhook_url else "not configured"
        self.append({**payload, "webhook": webhook})
        return {**payload, "webhook": webhook}

    def post(self, payload: dict[str, Any]) -> str:
        body = json.dumps(payload, default=str).encode("utf-8")
        request = urllib.request.Request(
            self.webhook_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "arrival-engine-alerts"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return f"delivered (HTTP {response.status})"
        except urllib.error.HTTPError as exc:
            return f"failed (HTTP {exc.code})"
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return f"failed ({type(exc).__name__}: {reason})"

    def append(self, line: dict[str, Any]) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.log_path)), exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, sort_keys=True, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
