"""The world state: the run's inputs judged before anything is generated (world rules)."""

from __future__ import annotations

import time

from engine_core.checks import world_rules
from engine_core.context import RunContext, Shard
from engine_core.io.store import DatasetStore
from engine_core.pipeline.jit import start_background_compiles
from engine_core.pipeline.types import ProgressCallback, StateResult


def run(ctx: RunContext, store: DatasetStore, progress: ProgressCallback | None = None,
        shard: Shard | None = None) -> StateResult:
    """Input validity, RNG key uniqueness and tz coverage; ``result.rules`` holds the
    verdicts and ``result.passed`` says whether every blocking one passed. The world is
    judged whole (``shard`` must be None)."""
    if shard is not None:
        raise ValueError("the world rules judge the whole world: no shard")
    start_background_compiles()  # the first state of a run
    t0 = time.perf_counter()
    for w in ctx.windows:  # the partitions are judged afresh: no earlier PASS stands
        store.withdraw_passed_flag(w.year)
    rules = world_rules(ctx, store)
    return StateResult(
        state="world", rows=ctx.arrays.n_series, elapsed_s=time.perf_counter() - t0,
        output_bytes=0, paths=[],
        metrics={"merchants": ctx.world.tables["merchants"].num_rows,
                 "series": ctx.arrays.n_series, "tzids": len(ctx.arrays.tzids)},
        rules=rules,
    )
