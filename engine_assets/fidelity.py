"""The fidelity report of a partition: how its output compares with published payment
statistics (docs/calibration.md). Runs after S4 on the published data only; its checks WARN
and never block (the S5 gate stays the engine's own validation)."""

import hashlib
import json
import math
from collections.abc import Iterator
from typing import Any

import dagster as dg

from engine_assets import fidelity_plots
from engine_assets.asset_keys import FIDELITY_REPORT, GROUP, S4_ARRIVAL_EVENTS
from engine_assets.conventions import asset_conventions
from engine_assets.metadata import identity_metadata
from engine_assets.partitions import ENGINE_BACKFILL_POLICY, engine_partitions
from engine_assets.resources import EngineSettings, EngineStorage
from engine_assets.state_step import StateStep
from engine_core.fidelity import fidelity_report, load_targets
from engine_core.fidelity.report import CHECKS

FIDELITY_CHECKS = [
    dg.AssetCheckSpec(
        name=code.lower(),
        asset=FIDELITY_REPORT,
        blocking=False,
        description=f"{code} (warning): {what}",
        metadata={"rule_code": code},
        partitions_def=engine_partitions,
    )
    for code, what in CHECKS
]


def _json(value: Any) -> dg.MetadataValue:
    """JSON metadata of any report value: NaN as null, scalars wrapped in a mapping."""

    def clean(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    data = clean(value)
    return dg.MetadataValue.json(data if isinstance(data, dict | list) else {"value": data})


def _check_metadata(check: dict[str, Any]) -> dict[str, dg.MetadataValue]:
    md: dict[str, dg.MetadataValue] = {
        "value": _json(check["value"]),
        "target": _json(check["target"]),
        "detail": dg.MetadataValue.text(check["detail"]),
    }
    if check["passed"] is None:
        md["not_judged"] = dg.MetadataValue.bool(True)
    return md


@dg.asset(
    name=FIDELITY_REPORT,
    group_name=GROUP,
    partitions_def=engine_partitions,
    backfill_policy=ENGINE_BACKFILL_POLICY,
    deps=[S4_ARRIVAL_EVENTS],
    check_specs=FIDELITY_CHECKS,
    kinds={"json"},
    **asset_conventions("fidelity"),
    description="Realism of the partition against configs/fidelity.yaml: hour x weekday "
    "profiles, overdispersion, NB2 dispersion, merchant size tail, payday and holiday event "
    "studies, latent co-movement, DST.",
)
def fidelity_report_asset(
    context: dg.AssetExecutionContext, storage: EngineStorage, engine: EngineSettings
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    step = StateStep(context, storage, engine)
    core = step.open_or_fail()
    run_dir = core.store.uri()
    # through the step's one failure path: a coded step failure, retried only when transient
    report = step.call("fidelity", lambda: fidelity_report(
        run_dir, core.ctx.scenario, step.partition.year, world=core.ctx.world,
        policy=core.ctx.policy, progress=context.log.info))
    classes = list(load_targets().profiles.in_person_classes)
    plots = step.render_plots({
        "Hour x weekday": lambda: fidelity_plots.profile_heatmap_png(report, classes),
        "Rank size": lambda: fidelity_plots.rank_size_png(report),
        "Event study": lambda: fidelity_plots.event_study_png(report),
    })
    md: dict[str, Any] = {
        "passed": dg.MetadataValue.bool(bool(report["passed"])),
        "failed": _json(report["failed"]),
        "not_judged": _json(report["not_judged"]),
        "events": dg.MetadataValue.int(int(report["events"])),
        "checks": _json(
            {c["code"]: {"passed": c["passed"], "value": c["value"]} for c in report["checks"]}
        ),
    }
    md.update(plots)
    md.update(identity_metadata(core))
    # the report is computed from the published events alone: its content is its version
    canonical = json.dumps(report, sort_keys=True, default=str).encode()
    yield dg.MaterializeResult(
        metadata=md, data_version=dg.DataVersion(hashlib.sha256(canonical).hexdigest()[:32]))
    for check in report["checks"]:
        yield dg.AssetCheckResult(
            check_name=check["code"].lower(),
            asset_key=FIDELITY_REPORT,
            passed=check["passed"] is not False,
            severity=dg.AssetCheckSeverity.WARN,
            metadata=_check_metadata(check),
        )
