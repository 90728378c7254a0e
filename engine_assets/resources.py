"""Resources: where outputs go, which world and seed the engine runs, where alerts go.

Each is a plain pydantic ``ConfigurableResource``, so every field can be overridden per run in
the Launchpad (``resources: {engine: {config: {seed: 7}}}``). Defaults come from the
environment: a variable that is set is bound as an ``EnvVar`` (resolved when the run starts,
shown by name in the UI); an unset one falls back to the documented default.

    ENGINE_STORAGE_ROOT   storage root (local path or URI)      default ./data
    ENGINE_WORLD          preset name or world directory         default small
    ENGINE_SEED           u64 seed                               default 42
    ENGINE_THREADS        Numba threads                          default all cores
    ENGINE_POLICY         policy YAML                            default configs/policy.yaml
    ENGINE_DASK_SCHEDULER Dask scheduler address or file         default none (in process)
    ENGINE_ALERT_LOG      JSON-lines alert log                   default <storage root>/alerts.jsonl
    ENGINE_ALERT_WEBHOOK  URL receiving a JSON POST per alert    default none
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg
from pydantic import Field

from engine_assets.partitions import EnginePartition
from engine_core.cluster import ClusterSettings, require_tls_from_env, resolve_scheduler
from engine_core.pipeline.run import Run
from engine_core.pipeline.types import ProgressCallback, RunConfig

DEFAULT_STORAGE_ROOT = "./data"
DEFAULT_WORLD = "small"
DEFAULT_SEED = 42
ALERT_LOG_NAME = "alerts.jsonl"


def _is_uri(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


class EngineStorage(dg.ConfigurableResource):
    """The storage root every dataset is published under (SPEC §8 layout)."""

    root: str = Field(
        default=DEFAULT_STORAGE_ROOT,
        description="Local directory or object-store URI (s3://bucket/prefix) of the outputs.",
    )

    def resolved_root(self) -> str:
        """The root as the engine receives it: URIs unchanged, local paths made absolute
        against the working directory of the run."""
        if _is_uri(self.root):
            return self.root
        return os.path.abspath(os.path.expanduser(self.root.removeprefix("file://")))

    def is_local(self) -> bool:
        return not _is_uri(self.root)


class EngineSettings(dg.ConfigurableResource):
    """What selects the engine's output: world, seed, policy; plus threads (never in the bytes)."""

    world: str = Field(
        default=DEFAULT_WORLD,
        description="World preset (tiny, small, reference) or a directory of world Parquet.",
    )
    seed: int = Field(default=DEFAULT_SEED, ge=0, lt=2**64, description="RNG seed (u64).")
    threads: int | None = Field(
        default=None, ge=1, description="Numba threads; empty = all cores. Never changes output."
    )
    policy_path: str | None = Field(
        default=None, description="Policy YAML; empty = the shipped configs/policy.yaml."
    )

    scheduler: str | None = Field(
        default=None,
        description="Dask scheduler address (tcp://host:8786, tls://...) or scheduler file: "
        "S3 and S4 run as merchant shards on its workers; empty = in process.",
    )
    shards: int | None = Field(
        default=None, ge=1, description="Merchant shards per state on the cluster; empty = "
        "from the work's size. Never changes the rows, only how files are cut.",
    )

    tls_ca_file: str | None = Field(
        default=None, description="CA certificate of the cluster's TLS (tls:// schedulers)."
    )
    tls_cert: str | None = Field(default=None, description="This client's TLS certificate.")
    tls_key: str | None = Field(default=None, description="This client's TLS private key.")
    require_tls: bool = Field(
        default=False, description="Refuse a scheduler that is neither tls:// nor on loopback "
        "(CLUSTER_INSECURE); ENGINE_DASK_REQUIRE_TLS=1 sets it for every run.",
    )

    def cluster_settings(self) -> ClusterSettings | None:
        """The cluster a run's S3 and S4 go to; None = compute in process."""
        scheduler = resolve_scheduler(self.scheduler)
        if scheduler is None:
            return None
        return ClusterSettings(scheduler, shards=self.shards, tls_ca_file=self.tls_ca_file or None,
                               tls_cert=self.tls_cert or None, tls_key=self.tls_key or None,
                               require_tls=require_tls_from_env(self.require_tls))

    def run_config(self, partition: EnginePartition, storage_root: str) -> RunConfig:
        return RunConfig(
            world=self.world,
            scenario=partition.scenario,
            start=partition.start,
            end=partition.end,
            storage_root=storage_root,
            seed=self.seed,
            threads=self.threads,
            policy_path=self.policy_path or None,
        )

    def open_run(
        self,
        partition: EnginePartition,
        storage: EngineStorage,
        progress: ProgressCallback | None = None,
    ) -> Run:
        """The core run of one partition; every state asset drives its state through it."""
        return Run.open(self.run_config(partition, storage.resolved_root()), progress=progress)


class AlertSettings(dg.ConfigurableResource):
    """Where failed-check alerts go: always a local JSON-lines log, plus a webhook when set."""

    log_path: str | None = Field(
        default=None,
        description=f"JSON-lines alert log; empty = <storage root>/{ALERT_LOG_NAME}.",
    )
    webhook_url: str | None = Field(
        default=None, description="URL that receives one JSON POST per alert; empty = none."
    )
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)

    def resolved_log_path(self, storage: EngineStorage) -> str:
        if self.log_path:
            return os.path.abspath(os.path.expanduser(self.log_path))
        if storage.is_local():
            return os.path.join(storage.resolved_root(), ALERT_LOG_NAME)
        # An object store is no place for an append-only log: keep it next to the run.
        return os.path.abspath(ALERT_LOG_NAME)


def _env_str(name: str, default: Any) -> Any:
    return dg.EnvVar(name) if os.environ.get(name) else default


def _env_int(name: str, default: Any) -> Any:
    return dg.EnvVar.int(name) if os.environ.get(name) else default


def resources_from_env() -> dict[str, dg.ConfigurableResource]:
    """The resources bound in the code location, with environment-aware defaults."""
    return {
        "storage": EngineStorage(root=_env_str("ENGINE_STORAGE_ROOT", DEFAULT_STORAGE_ROOT)),
        "engine": EngineSettings(
            world=_env_str("ENGINE_WORLD", DEFAULT_WORLD),
            seed=_env_int("ENGINE_SEED", DEFAULT_SEED),
            threads=_env_int("ENGINE_THREADS", None),
            policy_path=_env_str("ENGINE_POLICY", None),
            scheduler=_env_str("ENGINE_DASK_SCHEDULER", None),
        ),
        "alerts": AlertSettings(
            log_path=_env_str("ENGINE_ALERT_LOG", None),
            webhook_url=_env_str("ENGINE_ALERT_WEBHOOK", None),
        ),
    }
