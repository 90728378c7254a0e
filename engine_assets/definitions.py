"""The code location: merges the state modules, the job, the schedule, the sensor and the
resources. Nothing is defined here."""

from __future__ import annotations

import dagster as dg

from engine_assets.fidelity import fidelity_report_asset
from engine_assets.jobs import engine_job
from engine_assets.resources import resources_from_env
from engine_assets.s1_time_grid import s1_time_grid_and_grouping
from engine_assets.s2_latent_intensity import s2_latent_intensity
from engine_assets.s3_bucket_counts import s3_bucket_counts
from engine_assets.s4_arrival_events import s4_arrival_events
from engine_assets.s5_validation import s5_validation_report
from engine_assets.schedules import yearly_partitions
from engine_assets.sensors import check_failure_alerts
from engine_assets.world import world

ENGINE_ASSETS = [
    world,
    s1_time_grid_and_grouping,
    s2_latent_intensity,
    s3_bucket_counts,
    s4_arrival_events,
    s5_validation_report,
    fidelity_report_asset,
]

defs = dg.Definitions(
    assets=ENGINE_ASSETS,
    jobs=[engine_job],
    schedules=[yearly_partitions],
    sensors=[check_failure_alerts],
    resources=resources_from_env(),
    # Also for ad-hoc materialisations (UI, `dagster asset materialize`): one process per run.
    executor=dg.in_process_executor,
)
