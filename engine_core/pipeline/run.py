"""A run: the context and the store of one configuration, and every state in order.

Each state is a module with one function of one shape, ``run(ctx, store, progress, shard)
-> StateResult``; :data:`STATE_RUNNERS` names them. :class:`Run` binds a context, a store and
a progress callback so that callers (the CLI, the Dagster assets, a notebook) run a state by
name; :func:`run_all` runs the world rules and S1–S5 and returns the summary the CLI prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine_core.checks import Rider
from engine_core.checks.verdicts import RuleResult
from engine_core.context import RunConfig, RunContext, Shard, open_context
from engine_core.io.publish import wait_discards
from engine_core.io.store import DatasetStore
from engine_core.pipeline import (
    s1_time_grid,
    s2_latent,
    s3_counts,
    s4_events,
    s5_report,
    world_check,
)
from engine_core.pipeline.progress import peak_rss_mb
from engine_core.pipeline.types import ProgressCallback, StateResult

StateRunner = Callable[..., StateResult]
STATE_RUNNERS: dict[str, StateRunner] = {
    "world": world_check.run,
    "s1": s1_time_grid.run,
    "s2": s2_latent.run,
    "s3": s3_counts.run,
    "s4": s4_events.run,
    "s5": s5_report.run,
}


@dataclass(frozen=True)
class Run:
    """A run context, its dataset store and where progress goes."""

    ctx: RunContext
    store: DatasetStore
    progress: ProgressCallback | None = None

    @classmethod
    def open(cls, config: RunConfig, progress: ProgressCallback | None = None) -> Run:
        """Validate the configuration, load world and policy, open the storage root."""
        ctx = open_context(config)
        store = DatasetStore.open(config.storage_root, ctx.world_fingerprint,
                                  ctx.parameter_hash, ctx.seed, ctx.scenario)
        return cls(ctx, store, progress)

    def state(self, name: str, shard: Shard | None = None, **options: Any) -> StateResult:
        """Run state ``name`` (world, s1..s5), over a merchant shard where it has one."""
        if name not in STATE_RUNNERS:
            raise ValueError(f"unknown state {name!r}: expected one of {', '.join(STATE_RUNNERS)}")
        return STATE_RUNNERS[name](self.ctx, self.store, self.progress, shard, **options)

    def check(self, state: str, year: int | None = None, remember: bool = True,
              reuse: bool = True, rider: Rider | None = None) -> list[RuleResult]:
        """Every rule of ``state`` over what it published (every year unless ``year``); the
        verdicts recorded for exactly the published files (the S4 rules a cluster evaluated,
        an earlier check) are reused unless ``reuse`` is False. The S4 rules hand ``rider``
        every table of rows they read."""
        return s5_report.check(self.ctx, self.store, state, year, remember, reuse, rider)


def run_all(run: Run, compute: Callable[[str], StateResult] | None = None) -> dict[str, Any]:
    """Run every state in order; return the summary the CLI prints as its last line.

    ``compute(name)`` runs S1–S4 instead of ``run.state(name)`` when given (a cluster
    coordinator computes S3 and S4 in shards, and the S4 rules on its workers); S5 judges the
    published partitions here, taking the verdicts recorded for exactly these files."""
    t0 = time.perf_counter()
    states: dict[str, Any] = {}
    jit_s = 0.0
    world = run.state("world")
    jit_s += world.jit_compile_s
    failed_world = [r.code for r in world.rules if not r.passed and r.blocking]
    if failed_world:
        return summary(run, states, 0, False, failed_world, t0, jit_s)
    for name in ("s1", "s2", "s3", "s4"):
        res = compute(name) if compute is not None else run.state(name)
        jit_s += res.jit_compile_s
        states[name] = res.summary()
    # verdicts a cluster recorded for the partitions it published are reused
    s5 = run.state("s5", reuse=compute is not None)
    jit_s += s5.jit_compile_s
    wait_discards()
    states["s5"] = s5.summary()
    failed = [r["code"] for r in s5.report["rules"] if not r["passed"]]
    events = states["s4"].get("events", 0)
    return summary(run, states, events, s5.passed, failed, t0, jit_s)


def summary(run: Run, states: dict[str, Any], events: int, passed: bool,
            failed: list[str], t0: float, jit_s: float) -> dict[str, Any]:
    return {
        "states": states,
        "events": int(events),
        "elapsed_s": round(time.perf_counter() - t0, 3),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "jit_compile_s": round(jit_s, 3),
        "passed": bool(passed),
        "failed_rules": failed,
        "out": run.store.uri(),
        "years": run.ctx.years,
        **run.ctx.identity(),
    }


def realise_arrivals(config: RunConfig, progress: ProgressCallback | None = None
                     ) -> dict[str, Any]:
    """Run the world rules and S1–S5 for a horizon and return the run summary (the CLI's
    JSON)."""
    return run_all(Run.open(config, progress))
