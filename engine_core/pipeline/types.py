"""Plain value types shared by the states, the checks, the CLI and the Dagster assets."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

STATES: tuple[str, ...] = ("s1", "s2", "s3", "s4", "s5")


@dataclass(frozen=True)
class RunConfig:
    """Everything that selects a run. Only world, policy, seed, scenario and namespace
    (inside the policy) influence output bytes; threads and the horizon's split never do."""

    world: str  # preset name (tiny, small, reference) or a directory of world Parquet
    scenario: str
    start: dt.datetime  # UTC, bucket-aligned, inclusive
    end: dt.datetime  # UTC, bucket-aligned, exclusive
    storage_root: str = "./data"  # local path or URI (s3://bucket/prefix, file://...)
    seed: int = 42
    threads: int | None = None  # None = all cores
    policy_path: str | None = None  # None = configs/policy.yaml


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

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"elapsed_s": round(self.elapsed_s, 3), "rows": self.rows}
        if self.events is not None:
            out["events"] = self.events
            out["events_per_s"] = round(self.events / self.elapsed_s, 1) if self.elapsed_s else 0
        return out


@dataclass(frozen=True)
class RuleResult:
    """One validation rule's verdict for one partition (stable code in docs/errors.md)."""

    code: str
    state: str  # the state whose output it judges: world, s1..s4
    passed: bool
    blocking: bool
    description: str
    figures: dict[str, Any] = field(default_factory=dict)
    examples: tuple[str, ...] = ()  # a few offending keys when failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "state": self.state,
            "passed": self.passed,
            "blocking": self.blocking,
            "description": self.description,
            "figures": self.figures,
            "examples": list(self.examples),
        }
