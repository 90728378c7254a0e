"""The states S1–S5 as plain functions over a run context and a dataset store (no Dagster).

``realise_arrivals(RunConfig(...))`` runs everything; ``Run.open(config).state("s3")`` runs
one state, ``Run.open(config).state("s4", shard=Shard(0, 10))`` one merchant shard of it.
"""

from engine_core.context import RunConfig, Shard
from engine_core.pipeline.run import STATE_RUNNERS, Run, realise_arrivals, run_all
from engine_core.pipeline.types import STATES, ProgressUpdate, RuleResult, StateResult

__all__ = [
    "STATES",
    "STATE_RUNNERS",
    "ProgressUpdate",
    "RuleResult",
    "Run",
    "RunConfig",
    "Shard",
    "StateResult",
    "realise_arrivals",
    "run_all",
]
