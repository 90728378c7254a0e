"""Asset checks generated from the core's rule catalogue.

One check per ``RuleSpec`` (check name = rule code in lower case), declared on the asset of the
rule's state with ``check_specs`` and evaluated in the same step right after the state
publishes, over the published data. A blocking rule is a blocking check with ERROR severity:
when it fails, Dagster fails the step and skips every downstream asset. A non-blocking rule
reports WARN and lets the chain continue.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

from engine_assets.partitions import engine_partitions
from engine_core.checks.catalogue import RULES, RuleSpec, rules_for
from engine_core.pipeline.types import RuleResult

_MAX_TEXT = 2_000


def check_name(code: str) -> str:
    return code.lower()


def severity_of(blocking: bool) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN


def rule_check_spec(rule: RuleSpec, asset: str) -> dg.AssetCheckSpec:
    kind = "blocking" if rule.blocking else "warning"
    return dg.AssetCheckSpec(
        name=check_name(rule.code),
        asset=asset,
        blocking=rule.blocking,
        description=f"{rule.code} ({kind}): {rule.description}",
        metadata={"rule_code": rule.code, "state": rule.state},
        partitions_def=engine_partitions,
    )


def rule_check_specs(state: str, asset: str) -> list[dg.AssetCheckSpec]:
    """Check specs of every rule of ``state``, all on ``asset``."""
    return [rule_check_spec(rule, asset) for rule in rules_for(state)]


def figure_metadata(figures: Mapping[str, Any]) -> dict[str, dg.MetadataValue]:
    """A rule's figures as Dagster metadata: numbers stay numbers (plotted across partitions
    in the UI), anything structured becomes JSON."""
    out: dict[str, dg.MetadataValue] = {}
    for key, value in figures.items():
        if isinstance(value, bool):
            out[key] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            out[key] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            out[key] = dg.MetadataValue.float(value if math.isfinite(value) else float("nan"))
        elif isinstance(value, str):
            out[key] = dg.MetadataValue.text(value[:_MAX_TEXT])
        elif value is None:
            out[key] = dg.MetadataValue.null()
        elif hasattr(value, "item") and callable(value.item):  # numpy scalar
            out.update(figure_metadata({key: value.item()}))
        else:
            out[key] = dg.MetadataValue.json(_jsonable(value))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def rule_check_result(result: RuleResult, asset: str) -> dg.AssetCheckResult:
    metadata = figure_metadata(result.figures)
    if result.examples:
        metadata["examples"] = dg.MetadataValue.json([str(e) for e in result.examples[:20]])
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check_name(result.code),
        passed=bool(result.passed),
        severity=severity_of(result.blocking),
        description=result.description,
        metadata=metadata,
    )


def check_results_for(
    specs: Sequence[dg.AssetCheckSpec],
    results: Iterable[RuleResult],
    log: Any | None = None,
) -> list[dg.AssetCheckResult]:
    """One AssetCheckResult per spec. A rule the engine did not evaluate counts as failed:
    a silently missing verdict must never pass for a green check."""
    by_name = {check_name(r.code): r for r in results}
    out: list[dg.AssetCheckResult] = []
    for spec in specs:
        asset = spec.asset_key.to_user_string()
        result = by_name.pop(spec.name, None)
        if result is None:
            out.append(
                dg.AssetCheckResult(
                    asset_key=asset,
                    check_name=spec.name,
                    passed=False,
                    severity=severity_of(spec.blocking),
                    description="the engine returned no verdict for this rule",
                )
            )
        else:
            out.append(rule_check_result(result, asset))
    if by_name and log is not None:
        log.warning(f"rules without an asset check (not in the catalogue): {sorted(by_name)}")
    return out


def all_check_names() -> list[str]:
    return [check_name(r.code) for r in RULES]
