"""S5: the validation report of a partition, the gate for consumers outside Dagster.

``run_s5(reuse=True)`` gathers every rule's verdict and publishes ``report.json`` and
``issues.parquet``, plus ``_passed.flag`` only when every rule passed. The verdicts the state
assets' checks computed are reused when the partition's files are still exactly the ones they
judged (engine_core/checks/memo.py); any other state is evaluated again, every row. "Every
rule" means blocking and warning alike: a consumer gating on the flag gets data that met
every realism threshold too. The asset fails when the partition did
not pass, so a materialised ``s5_validation_report`` means a flagged, consumable partition.
"""

from typing import Any

import dagster as dg

from engine_assets.asset_keys import ALL_ASSETS, GROUP, S5_VALIDATION_REPORT
from engine_assets.conventions import asset_conventions
from engine_assets.metadata import data_version_of, identity_metadata
from engine_assets.partitions import ENGINE_BACKFILL_POLICY, engine_partitions
from engine_assets.resources import EngineSettings, EngineStorage
from engine_assets.retries import (
    ENGINE_RETRY_POLICY,
    transient_rule_errors,
    transient_rule_failure,
)
from engine_assets.state_step import StateStep
from engine_core.io.iceberg import describe_partition
from engine_core.io.store import PASSED_FLAG

REPORT_FILE = "report.json"
ISSUES_FILE = "issues.parquet"


def failed_rules(report: dict[str, Any]) -> list[dict[str, Any]]:
    rules = report.get("rules") or report.get("results") or []
    return [r for r in rules if isinstance(r, dict) and not r.get("passed", True)]


def report_metadata(
    step: StateStep, report: dict[str, Any], passed: bool, elapsed_s: float
) -> dict[str, Any]:
    base = step.dataset_uri("validation")
    failed = failed_rules(report)
    md: dict[str, Any] = {
        "passed": dg.MetadataValue.bool(bool(passed)),
        "report_path": dg.MetadataValue.path(f"{base}/{REPORT_FILE}"),
        "issues_path": dg.MetadataValue.path(f"{base}/{ISSUES_FILE}"),
        "passed_flag": dg.MetadataValue.path(f"{base}/{PASSED_FLAG}"),
        "path": dg.MetadataValue.path(base),
        "elapsed_s": dg.MetadataValue.float(round(elapsed_s, 3)),
        "failed_rules": dg.MetadataValue.json([r.get("code") for r in failed]),
        "failed_blocking": dg.MetadataValue.int(sum(1 for r in failed if r.get("blocking"))),
        "failed_warnings": dg.MetadataValue.int(sum(1 for r in failed if not r.get("blocking"))),
    }
    md.update(identity_metadata(step.run))
    return md


@dg.asset(
    name=S5_VALIDATION_REPORT,
    group_name=GROUP,
    partitions_def=engine_partitions,
    backfill_policy=ENGINE_BACKFILL_POLICY,
    retry_policy=ENGINE_RETRY_POLICY,
    deps=[a for a in ALL_ASSETS if a != S5_VALIDATION_REPORT],
    kinds={"json", "parquet"},
    description="The partition's validation verdict: report.json (every rule with its "
    "figures), issues.parquet and _passed.flag, written only when every rule passed; on PASS "
    "the partition is registered in the Iceberg tables. Consumers read only flagged "
    "partitions: `engine_core.read_arrivals` refuses others (docs/consuming.md).",
    **asset_conventions("s5"),
)
def s5_validation_report(
    context: dg.AssetExecutionContext, storage: EngineStorage, engine: EngineSettings
) -> dg.MaterializeResult:
    step = StateStep(context, storage, engine)
    step.open_or_fail()
    result = step.call("s5", lambda: step.run.state("s5", reuse=True))
    report, passed = result.report, result.passed
    md = report_metadata(step, report, passed, result.elapsed_s)
    reused = result.metrics.get("reused_verdicts", [])
    md["reused_verdicts"] = dg.MetadataValue.json(reused)
    md["iceberg_tables"] = dg.MetadataValue.json(
        describe_partition(step.run.store.layout, step.partition.scenario,
                           step.partition.year))
    context.log.info(
        f"verdicts reused from this partition's asset checks (same files): {reused or 'none'}"
    )
    if not passed:
        failed = failed_rules(report)
        unreadable = transient_rule_errors(failed)
        if unreadable:  # no verdict over data that could not be read: retried
            raise transient_rule_failure(unreadable)
        blocking = [r.get("code") for r in failed if r.get("blocking")]
        warnings = [r.get("code") for r in failed if not r.get("blocking")]
        raise dg.Failure(
            description=f"partition {step.partition} failed validation: blocking rules "
            f"{blocking}, warning rules {warnings}; see "
            f"{step.dataset_path('validation')}/{REPORT_FILE}",
            metadata=md,
            allow_retries=False,
        )
    context.log.info(f"partition {step.partition} passed; flag at {md['passed_flag'].value}")
    return dg.MaterializeResult(
        metadata=md,
        data_version=data_version_of(step.dataset_uri("validation"), [REPORT_FILE]),
    )
