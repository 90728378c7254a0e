"""S2: the latent intensity factor per (group, bucket), a partition-free log-Gaussian AR(1)."""

from collections.abc import Iterator

import dagster as dg

from engine_assets import plots
from engine_assets.asset_keys import GROUP, S1_GROUPING, S1_TIME_GRID, S2_LATENT_INTENSITY
from engine_assets.checks import rule_check_specs
from engine_assets.conventions import asset_conventions
from engine_assets.partitions import ENGINE_BACKFILL_POLICY, engine_partitions
from engine_assets.resources import EngineSettings, EngineStorage
from engine_assets.retries import ENGINE_RETRY_POLICY
from engine_assets.state_step import StateStep

S2_CHECKS = rule_check_specs("s2", S2_LATENT_INTENSITY)


@dg.asset(
    name=S2_LATENT_INTENSITY,
    group_name=GROUP,
    partitions_def=engine_partitions,
    backfill_policy=ENGINE_BACKFILL_POLICY,
    retry_policy=ENGINE_RETRY_POLICY,
    deps=[S1_TIME_GRID, S1_GROUPING],
    check_specs=S2_CHECKS,
    kinds={"numba", "parquet"},
    description="The latent intensity factor per (group, hourly bucket): exp(Z - σ²/2) of a "
    "log-Gaussian AR(1) field keyed by absolute bucket, clipped to [0.2, 5]; it makes "
    "traffic bursty and correlated within a group. Parquet under "
    "`<run_root>/latent_intensity/scenario=<id>/year=<yyyy>/` (docs/model.md).",
    **asset_conventions("s2"),
)
def s2_latent_intensity(
    context: dg.AssetExecutionContext, storage: EngineStorage, engine: EngineSettings
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    step = StateStep(context, storage, engine)
    step.open_or_fail()
    result = step.call("s2", lambda: step.run.state("s2"))
    path = step.dataset_uri("latent_intensity")
    yield from step.published(
        result,
        "latent_intensity",
        "s2",
        S2_CHECKS,
        plots={
            "Latent factor": lambda: plots.latent_factor_png(
                plots.read_sample(path, ["group_id", "bucket_start_utc", "factor"])
            )
        },
    )
