"""S3: the arrival count of every (series, bucket), NB2 or Poisson around μ = λ x factor."""

from collections.abc import Iterator

import dagster as dg

from engine_assets import plots
from engine_assets.asset_keys import (
    GROUP,
    S1_GROUPING,
    S1_TIME_GRID,
    S2_LATENT_INTENSITY,
    S3_BUCKET_COUNTS,
)
from engine_assets.checks import rule_check_specs
from engine_assets.conventions import asset_conventions
from engine_assets.partitions import ENGINE_BACKFILL_POLICY, engine_partitions
from engine_assets.resources import EngineSettings, EngineStorage
from engine_assets.retries import ENGINE_RETRY_POLICY
from engine_assets.state_step import StateStep

S3_CHECKS = rule_check_specs("s3", S3_BUCKET_COUNTS)


@dg.asset(
    name=S3_BUCKET_COUNTS,
    group_name=GROUP,
    partitions_def=engine_partitions,
    backfill_policy=ENGINE_BACKFILL_POLICY,
    retry_policy=ENGINE_RETRY_POLICY,
    deps=[S1_TIME_GRID, S1_GROUPING, S2_LATENT_INTENSITY],
    check_specs=S3_CHECKS,
    kinds={"numba", "parquet"},
    description="How many arrivals each series has in each hourly UTC bucket (rows with "
    "count > 0 only), with the expected count μ = λ x latent factor and the capped flag. "
    "Read validated partitions with `engine_core.read_bucket_counts(root, world=..., "
    "scenario=..., years=[...])` (docs/consuming.md).",
    **asset_conventions("s3"),
)
def s3_bucket_counts(
    context: dg.AssetExecutionContext, storage: EngineStorage, engine: EngineSettings
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    step = StateStep(context, storage, engine)
    step.open_or_fail()
    result = step.call("s3", lambda: step.compute("s3"))
    path = step.dataset_uri("bucket_counts")

    def count_dispersion() -> bytes:
        grouping = plots.read_sample(step.dataset_uri("grouping"), ["kappa"])
        kappa = float(grouping["kappa"].median()) if not grouping.is_empty() else None
        return plots.count_dispersion_png(plots.read_sample(path, ["mu", "count"]), kappa)

    yield from step.published(
        result,
        "bucket_counts",
        "s3",
        S3_CHECKS,
        plots={
            "Count dispersion": count_dispersion,
            "Arrivals per day": lambda: plots.daily_arrivals_png(plots.daily_counts(path)),
        },
    )
