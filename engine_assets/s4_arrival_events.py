"""S4: the arrival events themselves: timestamps within buckets, routing to sites or edges,
local and settlement clocks, per-merchant sequence numbers."""

from collections.abc import Iterator

import dagster as dg
import polars as pl

from engine_assets import plots
from engine_assets.asset_keys import GROUP, S3_BUCKET_COUNTS, S4_ARRIVAL_EVENTS
from engine_assets.checks import rule_check_specs
from engine_assets.conventions import asset_conventions
from engine_assets.partitions import ENGINE_BACKFILL_POLICY, engine_partitions
from engine_assets.resources import EngineSettings, EngineStorage
from engine_assets.retries import ENGINE_RETRY_POLICY
from engine_assets.state_step import StateStep
from engine_core.errors import EngineError
from engine_core.fidelity.tallies import TallyRecorder

S4_CHECKS = rule_check_specs("s4", S4_ARRIVAL_EVENTS)
SAMPLE_COLUMNS = [
    "merchant_id",
    "legal_country_iso",
    "zone_tzid",
    "ts_local",
    "site_id",
    "edge_id",
]


@dg.asset(
    name=S4_ARRIVAL_EVENTS,
    group_name=GROUP,
    partitions_def=engine_partitions,
    backfill_policy=ENGINE_BACKFILL_POLICY,
    retry_policy=ENGINE_RETRY_POLICY,
    deps=[S3_BUCKET_COUNTS],
    check_specs=S4_CHECKS,
    kinds={"numba", "parquet"},
    description="The arrival events of the partition, one row per arrival: unique id, the "
    "series it came from, UTC and local wall-clock timestamps (µs), the site or virtual edge "
    "it was routed to; sorted by (merchant_id, ts_utc, arrival_seq). Read validated "
    "partitions with `engine_core.read_arrivals(root, world=..., scenario=..., years=[...])` "
    "or the Iceberg table `arrival_events_<scenario>` (docs/consuming.md).",
    **asset_conventions("s4"),
)
def s4_arrival_events(
    context: dg.AssetExecutionContext, storage: EngineStorage, engine: EngineSettings
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    step = StateStep(context, storage, engine)
    step.open_or_fail()
    result = step.call("s4", lambda: step.compute("s4"))
    path = step.dataset_uri("arrival_events")
    world = step.run.ctx.world
    cached: dict[str, pl.DataFrame] = {}

    def events_sample() -> pl.DataFrame:
        if "events" not in cached:
            cached["events"] = plots.read_sample(path, SAMPLE_COLUMNS)
        return cached["events"]

    def weekly_profile() -> bytes:
        # physical arrivals: a site lies in its series' zone, so ts_local is the series' clock
        physical = events_sample().filter(pl.col("site_id").is_not_null())
        expected = plots.expected_weekly_share(
            pl.from_arrow(world.series), pl.from_arrow(world.merchants)
        )
        return plots.weekly_profile_png(physical["ts_local"], expected)

    def routing_shares() -> bytes:
        expected = plots.expected_routing_shares(
            pl.from_arrow(world.sites), pl.from_arrow(world.edges)
        )
        return plots.routing_shares_png(plots.realised_routing_shares(events_sample()), expected)

    # the rules' pass over the events also takes the fidelity report's tallies, so that the
    # report does not decode the events again (engine_core/fidelity/tallies.py)
    run = step.run
    try:
        tallies: TallyRecorder | None = TallyRecorder(
            run.store.uri(), run.ctx.scenario, step.partition.year, world, run.ctx.policy)
    except (EngineError, OSError) as e:
        context.log.warning(f"fidelity tallies not taken beside the rules: {e}")
        tallies = None
    yield from step.published(
        result,
        "arrival_events",
        "s4",
        S4_CHECKS,
        plots={"Weekly profile": weekly_profile, "Routing shares": routing_shares},
        rider=tallies,
        # the S4 rules hold the run's peak memory: the plots' sample of the events is read
        # and drawn before them, not beside
        beside_rules=False,
    )
    if tallies is not None:
        tallies.save()
        context.log.info(tallies.outcome)
