"""Live progress of a running state: a log line in the run's event log and run tags.

Dagster has no progress-bar API; what updates live in the UI are event-log lines and run tags
(shown in the Runs list). The core engine calls back every few seconds; this reporter forwards
at most one update per ``min_interval_s`` (the final one always) so a fast state cannot flood
the event log, while a long one reports at a steady cadence.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import dagster as dg

from engine_core.pipeline.types import ProgressUpdate

TAG_STATE = "engine/state"
TAG_PROGRESS = "engine/progress"
TAG_ETA = "engine/eta_s"
TAG_RATE = "engine/rows_per_s"

# Callbacks that also receive every update, unthrottled, in this process: the terminal bars of
# ``arrival-engine-dagster`` (in-process executor, so the steps run here).
_LISTENERS: list[Callable[[ProgressUpdate], None]] = []


def add_listener(callback: Callable[[ProgressUpdate], None]) -> None:
    _LISTENERS.append(callback)


def remove_listener(callback: Callable[[ProgressUpdate], None]) -> None:
    if callback in _LISTENERS:
        _LISTENERS.remove(callback)


def _tell_listeners(update: ProgressUpdate) -> None:
    for callback in list(_LISTENERS):
        try:
            callback(update)
        except Exception:  # a display must never fail the state it shows
            pass


class RunProgressReporter:
    """Progress callback for the core engine, bound to one asset step."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        min_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._context = context
        self._min_interval_s = min_interval_s
        self._clock = clock
        self._last_emit: float | None = None
        self._last_final: tuple[str, int] | None = None
        self.updates_seen = 0
        self.updates_emitted = 0

    def __call__(self, update: ProgressUpdate) -> None:
        self.updates_seen += 1
        _tell_listeners(update)
        now = self._clock()
        final = update.total > 0 and update.done >= update.total
        if final and self._last_final == (update.state, update.done):
            return  # the engine may confirm completion twice; say it once
        if (
            not final
            and self._last_emit is not None
            and now - self._last_emit < self._min_interval_s
        ):
            return
        self._last_emit = now
        if final:
            self._last_final = (update.state, update.done)
        self.updates_emitted += 1
        self._context.log.info(update.line())
        self.set_tags(update)

    def set_tags(self, update: ProgressUpdate) -> None:
        pct = 100.0 * update.done / update.total if update.total else 100.0
        tags = {
            TAG_STATE: update.state,
            TAG_PROGRESS: f"{update.state} {pct:.1f}%",
            TAG_ETA: "" if update.eta_s is None else f"{update.eta_s:.0f}",
            TAG_RATE: f"{update.rate:.0f}",
        }
        try:
            self._context.instance.add_run_tags(self._context.run.run_id, tags)
        except Exception as exc:  # progress must never fail the state it reports on
            self._context.log.debug(f"could not set progress tags: {exc}")

    def finished(self, state: str, rows: int, elapsed_s: float) -> None:
        """Mark the state complete in the run tags (a short state may never call back)."""
        rate = rows / elapsed_s if elapsed_s > 0 else 0.0
        update = ProgressUpdate(state, rows, rows, "rows", elapsed_s, rate, 0.0)
        _tell_listeners(update)
        self.set_tags(update)
