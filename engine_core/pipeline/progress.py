"""Progress at a steady cadence (processed/total, rate, ETA) and the memory a state used."""

from __future__ import annotations

import resource
import time

from engine_core.pipeline.types import ProgressCallback, ProgressUpdate


class ProgressReporter:
    def __init__(self, callback: ProgressCallback | None, state: str, total: int, unit: str,
                 every_s: float = 2.0) -> None:
        self.callback = callback
        self.state = state
        self.total = max(int(total), 0)
        self.unit = unit
        self.every_s = every_s
        self.t0 = time.perf_counter()
        self.last = -1e9
        self.done = 0
        self.emitted = -1

    def update(self, done: int, force: bool = False) -> None:
        self.done = int(done)
        if self.callback is None:
            return
        now = time.perf_counter()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        self.emitted = self.done
        elapsed = now - self.t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remaining = max(self.total - self.done, 0)
        eta = remaining / rate if rate > 0 else None
        self.callback(ProgressUpdate(self.state, self.done, self.total, self.unit, elapsed,
                                     rate, eta))

    def finish(self) -> None:
        """Report completion once (unless the last report already said so)."""
        if self.emitted != self.total:
            self.update(self.total, force=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
