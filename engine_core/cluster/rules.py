"""The S4 rules on the cluster, right after S4 is published: every merchant shard's pass is a
task on a worker (engine_core/checks/rules_s4.py, ``EventChecks``), every class of arrival_ids
too, and the weekend rule's law sums one more; the coordinator merges the small partials
(``merge_partials``: no array of the partition on the coordinator) and records the verdicts
(engine_core/checks/memo.py) under the signature of the files they judged, so the Dagster
asset checks, ``Run.check("s4")`` and S5 take them instead of reading the partition again.

The shards write their id classes into the storage root's shard area (``arrival_ids``, a
directory per evaluation and per shard attempt), where the class tasks read them; the
coordinator removes the directory when the merge is done. When any rules task fails, nothing
is recorded and the rules run again in process where they are next asked for.
"""

from __future__ import annotations

import contextlib
import functools
import time
import uuid
from typing import Any

import numba

from engine_core.checks import memo
from engine_core.checks.contract import schema_rule
from engine_core.checks.event_shards import (
    IDS_DATASET,
    S4Plan,
    ShardPartial,
    cluster_ids_dir,
    drop_ids,
    plan_s4_rules,
    rule_shards,
)
from engine_core.checks.rules_s4 import (
    EventChecks,
    clock_reference,
    id_class_duplicates,
    merge_partials,
    weekend_law,
)
from engine_core.checks.verdicts import RuleResult, complete, guarded
from engine_core.checks.world_index import WorldIndex
from engine_core.cluster.tasks import _open_run, check_identity, run_identity
from engine_core.context import RunConfig, Shard
from engine_core.pipeline.run import Run


# ---------------------------------------------------------------------- on a worker
@functools.lru_cache(maxsize=2)
def _world(config: RunConfig) -> WorldIndex:
    return WorldIndex(_open_run(config).ctx)


@functools.lru_cache(maxsize=4)
def _reference(config: RunConfig, year: int):
    return clock_reference(_open_run(config).ctx, year, _world(config))


def _opened(config: RunConfig, identity: dict[str, str]) -> Run:
    run = _open_run(config)
    check_identity(identity, run.ctx)
    numba.set_num_threads(run.ctx.threads)  # per calling thread: set in the task's thread
    return run


def check_shard(config: RunConfig, identity: dict[str, str], plan: S4Plan, k: int
                ) -> ShardPartial:
    """Shard ``k`` of ``plan``: its pass over its rows of the published partition; the
    partial names this worker (host:pid)."""
    run = _opened(config, identity)
    return EventChecks(run.ctx, run.store, plan, k, _world(config),
                       _reference(config, plan.year)).run()


def check_id_class(config: RunConfig, identity: dict[str, str], plan: S4Plan, dirs: list[str],
                   p: int) -> tuple[int, list[int]]:
    """EVENTS_ID_UNIQUE over class ``p`` of every shard's ids."""
    run = _opened(config, identity)
    return id_class_duplicates(run.store, plan, dirs, p)


def weekend_sums(config: RunConfig, identity: dict[str, str], year: int) -> tuple[float, float]:
    """The law's side of EVENTS_WEEKEND_SHARE (reads grouping and factors, no event)."""
    run = _opened(config, identity)
    return weekend_law(run.ctx, run.store, year, _world(config))


# ---------------------------------------------------------------------- on the coordinator
def _results(futures: list, submitted: list, timeout_s: float) -> list:
    submitted += futures
    deadline = time.monotonic() + timeout_s
    return [f.result(timeout=max(0.0, deadline - time.monotonic())) for f in futures]


def check_s4_on_cluster(run: Run, config: RunConfig, client: Any, timeout_s: float,
                        shards: list[Shard] | None = None) -> dict[str, Any]:
    """Evaluate the S4 rules of every window on the cluster and record the verdicts; a
    summary for the state's metrics (verdicts, seconds, the workers that ran the shards, or
    the error that left the rules to be evaluated in process). ``shards``: those S4 was
    computed in, taken for the rules when each is small enough."""
    t0 = time.perf_counter()
    ctx, store = run.ctx, run.store
    identity = run_identity(ctx)
    world = WorldIndex(ctx)
    workers: set[str] = set()
    failed: list[str] = []
    n_shards = 0
    submitted: list = []
    try:
        for w in ctx.windows:
            year = w.year
            sig = memo.signature(ctx, store, "s4", year)  # before any rule reads a file
            tag = uuid.uuid4().hex[:8]
            with contextlib.suppress(OSError):  # id classes a crashed coordinator left
                store.sweep_stale_shards(IDS_DATASET, year, keep=tag)
            plan = plan_s4_rules(ctx, store, year, rule_shards(ctx, year, prefer=shards),
                                 ids_dir=cluster_ids_dir(store, year, tag))
            n_shards += len(plan.shards)
            try:
                law = client.submit(weekend_sums, config, identity, year, pure=False,
                                    key=f"s4-rules-law-{year}-{tag}")
                submitted.append(law)
                partials = _results([
                    client.submit(check_shard, config, identity, plan, k, pure=False,
                                  key=f"s4-rules-{year}-{s.name}-{tag}")
                    for k, s in enumerate(plan.shards)], submitted, timeout_s)
                dirs = [p.ids_dir for p in partials]
                classes = _results([
                    client.submit(check_id_class, config, identity, plan, dirs, p, pure=False,
                                  key=f"s4-rules-ids-{year}-{p}-{tag}")
                    for p in range(plan.id_classes)], submitted, timeout_s)
                (sums,) = _results([law], submitted, timeout_s)
            finally:
                drop_ids(store, plan)
                with contextlib.suppress(OSError):  # the emptied area, up to ``_shards``
                    store.prune_empty_area(IDS_DATASET, year)
            workers |= {p.worker for p in partials}
            schema = guarded("EVENTS_SCHEMA", lambda y=year: schema_rule(
                store, "EVENTS_SCHEMA", "arrival_events", y))
            results: list[RuleResult] = complete(
                "s4", [schema, *merge_partials(ctx, store, plan, partials, classes, sums, world)])
            memo.record(ctx, store, "s4", year, results, sig)
            failed += [f"{r.code}|{year}" for r in results if not r.passed]
    except Exception as exc:  # noqa: BLE001 - the rules run in process when next asked for
        try:
            client.cancel(submitted)
        except Exception:  # noqa: BLE001 - a lost scheduler cannot cancel anything
            pass
        return {"rules_on_cluster": False, "rules_s": time.perf_counter() - t0,
                "rules_error": f"{type(exc).__name__}: {exc}"}
    return {"rules_on_cluster": True, "rules_s": time.perf_counter() - t0,
            "rules_shards": n_shards, "rules_workers": sorted(workers),
            "rules_failed": failed}
