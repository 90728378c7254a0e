"""The job materialising a partition's whole chain, world to validation report, in one process.

In-process execution: every step of a partition runs in the run worker (no interpreter per
step, Numba kernels compiled once per run). Parallelism comes from concurrent runs, one per
partition, bounded by the instance's run queue (dagster.yaml).
"""

from __future__ import annotations

import dagster as dg

from engine_assets.asset_keys import GROUP

ENGINE_JOB = "arrival_engine_job"

engine_job = dg.define_asset_job(
    name=ENGINE_JOB,
    selection=dg.AssetSelection.groups(GROUP),
    executor_def=dg.in_process_executor,
    description="World, S1-S4 and the S5 validation report of one (year, scenario) partition, "
    "with every asset check.",
)
