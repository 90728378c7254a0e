"""Asset keys and the asset group, named once for every module that refers to them."""

from __future__ import annotations

GROUP = "arrival_engine"

WORLD = "world"
S1_TIME_GRID = "s1_time_grid"
S1_GROUPING = "s1_grouping"
S2_LATENT_INTENSITY = "s2_latent_intensity"
S3_BUCKET_COUNTS = "s3_bucket_counts"
S4_ARRIVAL_EVENTS = "s4_arrival_events"
S5_VALIDATION_REPORT = "s5_validation_report"
FIDELITY_REPORT = "fidelity_report"

ALL_ASSETS: tuple[str, ...] = (
    WORLD,
    S1_TIME_GRID,
    S1_GROUPING,
    S2_LATENT_INTENSITY,
    S3_BUCKET_COUNTS,
    S4_ARRIVAL_EVENTS,
    S5_VALIDATION_REPORT,
)
