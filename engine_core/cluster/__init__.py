"""The engine on a Dask cluster: S3 and S4 of each partition cut into merchant shards that
``dask worker`` processes compute, published by the coordinator only when every shard
succeeded (docs/operations.md, "A Dask cluster").

:mod:`~engine_core.cluster.plan` cuts merchants into shards balanced by expected work,
:mod:`~engine_core.cluster.tasks` is what a worker runs (it must be importable on every
worker: it lives in the installed package), :mod:`~engine_core.cluster.coordinator` connects,
submits, waits and publishes. Nothing here imports Dagster.
"""

from engine_core.cluster.coordinator import (
    REQUIRE_TLS_ENV,
    SCHEDULER_ENV,
    ClusterSettings,
    compute_state,
    connect,
    disconnect,
    require_tls_from_env,
    resolve_scheduler,
)

__all__ = ["REQUIRE_TLS_ENV", "SCHEDULER_ENV", "ClusterSettings", "compute_state", "connect",
           "disconnect", "require_tls_from_env", "resolve_scheduler"]
