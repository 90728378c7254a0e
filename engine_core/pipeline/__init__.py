"""The states S1–S5 as plain functions over a horizon (no Dagster)."""

from engine_core.pipeline.engine import Engine, realise_arrivals
from engine_core.pipeline.types import (
    STATES,
    ProgressUpdate,
    RuleResult,
    RunConfig,
    StateResult,
)

__all__ = [
    "STATES",
    "Engine",
    "ProgressUpdate",
    "RuleResult",
    "RunConfig",
    "StateResult",
    "realise_arrivals",
]
