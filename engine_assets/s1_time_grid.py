"""S1: the time grid and the latent grouping of series, two assets from one core call.

State ``s1`` publishes both datasets together (no RNG), so one step,
``s1_time_grid_and_grouping``, materialises both assets;
GRID_* rules check ``s1_time_grid``, the grouping rules check ``s1_grouping``.
"""

from collections.abc import Iterator

import dagster as dg

from engine_assets import plots
from engine_assets.asset_keys import GROUP, S1_GROUPING, S1_TIME_GRID, WORLD
from engine_assets.checks import rule_check_spec
from engine_assets.conventions import asset_conventions
from engine_assets.partitions import ENGINE_BACKFILL_POLICY, engine_partitions
from engine_assets.resources import EngineSettings, EngineStorage
from engine_assets.retries import ENGINE_RETRY_POLICY
from engine_assets.state_step import StateStep
from engine_core.checks.catalogue import RuleSpec, rules_for


def asset_of_rule(rule: RuleSpec) -> str:
    return S1_TIME_GRID if rule.code.startswith("GRID_") else S1_GROUPING


S1_CHECKS = [rule_check_spec(rule, asset_of_rule(rule)) for rule in rules_for("s1")]


@dg.multi_asset(
    name="s1_time_grid_and_grouping",
    group_name=GROUP,
    partitions_def=engine_partitions,
    backfill_policy=ENGINE_BACKFILL_POLICY,
    retry_policy=ENGINE_RETRY_POLICY,
    specs=[
        dg.AssetSpec(
            S1_TIME_GRID,
            deps=[WORLD],
            kinds={"parquet"},
            description="The hourly UTC buckets of the partition: index, absolute bucket "
            "number, half-open [start, end). Parquet under "
            "`<run_root>/time_grid/scenario=<id>/year=<yyyy>/`.",
            **asset_conventions("s1"),
        ),
        dg.AssetSpec(
            S1_GROUPING,
            deps=[WORLD],
            kinds={"parquet"},
            description="Each series' latent group (scenario band x demand class x channel x "
            "virtual band x zone group x hash bucket) with the group's σ, L and the series' κ. "
            "Parquet under `<run_root>/grouping/scenario=<id>/year=<yyyy>/`.",
            **asset_conventions("s1"),
        ),
    ],
    check_specs=S1_CHECKS,
)
def s1_time_grid_and_grouping(
    context: dg.AssetExecutionContext, storage: EngineStorage, engine: EngineSettings
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    step = StateStep(context, storage, engine)
    step.open_or_fail()
    result = step.call("s1", lambda: step.run.state("s1"))
    yield dg.MaterializeResult(
        asset_key=S1_TIME_GRID,
        metadata=step.metadata(result, "time_grid"),
        data_version=step.data_version("time_grid"),
    )
    grouping_path = step.dataset_uri("grouping")
    yield dg.MaterializeResult(
        asset_key=S1_GROUPING,
        metadata=step.metadata(
            result,
            "grouping",
            plots={
                "Group sizes": lambda: plots.group_sizes_png(
                    plots.read_sample(grouping_path, ["group_id", "demand_class"])
                )
            },
        ),
        data_version=step.data_version("grouping"),
    )
    yield from step.check_results("s1", S1_CHECKS)
