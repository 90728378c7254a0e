"""The ``world`` asset: load, validate and fingerprint the world for one partition.

Its checks are the world rules (input validity, RNG key uniqueness, tz coverage of the
partition's year). Invalid input is rejected here, before any state runs: the engine raises an
EngineError naming table, column and key; the step records it as a failed ``world_valid``
check (so the alert sensor sees it) and fails, and nothing downstream runs.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from engine_assets.asset_keys import GROUP, WORLD
from engine_assets.checks import check_name, figure_metadata, rule_check_specs, severity_of
from engine_assets.conventions import asset_conventions
from engine_assets.metadata import ROW_COUNT, identity_metadata
from engine_assets.partitions import ENGINE_BACKFILL_POLICY, engine_partitions
from engine_assets.resources import EngineSettings, EngineStorage
from engine_assets.retries import ENGINE_RETRY_POLICY, step_failure
from engine_assets.state_step import StateStep, engine_failure
from engine_core.errors import EngineError
from engine_core.io.transient import is_transient
from engine_core.pipeline.types import StateResult

WORLD_CHECKS = rule_check_specs("world", WORLD)
WORLD_VALID = "WORLD_VALID"


def world_metadata(step: StateStep, result: StateResult) -> dict[str, Any]:
    md: dict[str, Any] = {
        ROW_COUNT: dg.MetadataValue.int(int(result.rows)),
        "elapsed_s": dg.MetadataValue.float(round(float(result.elapsed_s), 3)),
        "world": dg.MetadataValue.text(step.settings.world),
    }
    # Table sizes and world statistics the engine reports (merchants, sites, series ...).
    md.update(figure_metadata(result.metrics))
    md.update(identity_metadata(step.run))
    return md


def rejected_world_result(err: EngineError) -> dg.AssetCheckResult:
    """The world_valid verdict for input the engine refused to load."""
    return dg.AssetCheckResult(
        asset_key=WORLD,
        check_name=check_name(WORLD_VALID),
        passed=False,
        severity=severity_of(True),
        description=str(err),
        metadata=figure_metadata({k: v for k, v in err.to_dict().items() if v is not None}),
    )


@dg.asset(
    name=WORLD,
    group_name=GROUP,
    partitions_def=engine_partitions,
    backfill_policy=ENGINE_BACKFILL_POLICY,
    retry_policy=ENGINE_RETRY_POLICY,
    check_specs=WORLD_CHECKS,
    kinds={"python"},
    description="The upstream world (merchants, sites, virtual edges, series with weekly "
    "shapes, calendar, scenarios): a preset or a directory of world Parquet (resource "
    "`engine.world`), validated and fingerprinted; its checks gate every state. Its data "
    "version is the world fingerprint (docs/world.md).",
    **asset_conventions("world"),
)
def world(
    context: dg.AssetExecutionContext, storage: EngineStorage, engine: EngineSettings
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    step = StateStep(context, storage, engine)
    try:
        step.open()
        result = step.run.state("world")
    except EngineError as err:
        if is_transient(err):  # the store failed, not the world: no verdict, a retry
            context.log.warning(f"world not loaded: {err}")
            raise engine_failure(err) from err
        context.log.error(f"world rejected: {err}")
        yield rejected_world_result(err)
        raise engine_failure(err) from err
    except dg.Failure:
        raise
    except Exception as exc:  # retried only when transient (engine_assets/retries.py)
        raise step_failure(exc) from exc
    step.progress.finished("world", result.rows, result.elapsed_s)
    yield dg.MaterializeResult(
        metadata=world_metadata(step, result),
        data_version=dg.DataVersion(step.run.ctx.world_fingerprint[:32]),
    )
    yield from step.rule_results(result.rules, WORLD_CHECKS)
