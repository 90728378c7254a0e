"""Plain value types of the states: what a state returns and how it reports progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine_core.checks.verdicts import RuleResult
from engine_core.context import RunConfig

STATES: tuple[str, ...] = ("s1", "s2", "s3", "s4", "s5")

__all__ = ["STATES", "ProgressCallback", "ProgressUpdate", "RuleResult", "RunConfig",
           "StateResult"]


@dataclass(frozen=True)
class ProgressUpdate:
    state: str
    done: int
    total: int
    unit: str  # "series", "rows", "events" ...
    elapsed_s: float
    rate: float  # units per second
    eta_s: float | None

    def line(self) -> str:
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = "?" if self.eta_s is None else f"{self.eta_s:.0f}s"
        return (
            f"[{self.state}] {self.done}/{self.total} {self.unit} ({pct:.1f}%) "
            f"{self.rate:,.0f} {self.unit}/s elapsed {self.elapsed_s:.1f}s eta {eta}"
        )


ProgressCallback = Callable[[ProgressUpdate], None]


@dataclass
class StateResult:
    """What a state did: the asset's materialisation metadata comes from here."""

    state: str
    rows: int
    elapsed_s: float
    output_bytes: int
    paths: list[str]
    events: int | None = None
    jit_compile_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    # the verdicts a state produced (the world rules; S5's every rule of every partition)
    rules: list[RuleResult] = field(default_factory=list)
    # S5: the merged report of the partitions it judged
    report: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        """No blocking rule failed (world); every rule passed (S5); True for S1–S4."""
        if self.report is not None:
            return bool(self.report["passed"])
        return all(r.passed for r in self.rules if r.blocking)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"elapsed_s": round(self.elapsed_s, 3), "rows": self.rows,
                               "output_bytes": int(self.output_bytes)}
        if self.events is not None:
            out["events"] = self.events
            out["events_per_s"] = round(self.events / self.elapsed_s, 1) if self.elapsed_s else 0
        if "peak_rss_mb" in self.metrics:  # the process's peak so far, at the state's end
            out["peak_rss_mb"] = round(float(self.metrics["peak_rss_mb"]), 1)
        return out
