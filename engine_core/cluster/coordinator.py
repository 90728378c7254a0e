"""The coordinator: connect to a Dask scheduler, submit a state's shards, wait, publish.

A run's S3 and S4 become one task per merchant shard (engine_core/cluster/plan.py); workers
write the shards' part files into the storage root's shard area; when every shard of the
state has succeeded the coordinator publishes each window's partition atomically
(``DatasetStore.publish_shards``). A worker that dies mid-shard is replaced by the scheduler
and the shard recomputed (shards are idempotent); any failed shard, a lost scheduler or a
timeout fails the state with a coded error and publishes nothing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from engine_core.cluster.plan import plan_shards
from engine_core.cluster.rules import check_s4_on_cluster
from engine_core.cluster.tasks import compute_shard, prepare_worker, run_identity
from engine_core.context import RunConfig, Shard
from engine_core.errors import EngineError
from engine_core.pipeline import s3_counts, s4_events
from engine_core.pipeline.progress import ProgressReporter
from engine_core.pipeline.run import Run
from engine_core.pipeline.types import StateResult

SCHEDULER_ENV = "ENGINE_DASK_SCHEDULER"
REQUIRE_TLS_ENV = "ENGINE_DASK_REQUIRE_TLS"
# A run's claim on its shard areas lasts this long past its last renewal; the coordinator
# renews it every LEASE_S / 4 while shards run (engine_core/io/store.py, sweep_stale_shards).
LEASE_S = 600.0
SHARDED = {"s3": ("bucket_counts", s3_counts.merge_totals),
           "s4": ("arrival_events", s4_events.merge_totals)}


@dataclass(frozen=True)
class ClusterSettings:
    """Where the scheduler is and how the run uses the cluster."""

    scheduler: str  # tcp://host:port, tls://host:port, or a scheduler file (JSON)
    shards: int | None = None  # shards per state; None = from the work's size
    task_threads: int = 1  # Numba threads of one shard task (match `dask worker --nthreads`)
    connect_timeout_s: float = 30.0
    state_timeout_s: float = 6 * 3600.0
    tls_ca_file: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    require_tls: bool = False  # refuse a scheduler that is neither tls:// nor loopback


def require_tls_from_env(given: bool = False) -> bool:
    """``given`` (a CLI flag, a resource field) or ENGINE_DASK_REQUIRE_TLS set to 1/true/yes."""
    env = os.environ.get(REQUIRE_TLS_ENV, "").strip().lower()
    return bool(given) or env in ("1", "true", "yes", "on")


def is_loopback_address(address: str) -> bool:
    """Whether a scheduler address (``tcp://host:port``, ``host:port``) names this machine's
    loopback interface only: every address its host resolves to is a loopback address."""
    split = urlsplit(address if "://" in address else f"tcp://{address}")
    host = split.hostname
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback
                               for i in infos)


def check_transport(settings: ClusterSettings, address: str) -> None:
    """With ``require_tls``: refuse a scheduler reached without TLS unless it is loopback
    (CLUSTER_INSECURE), before any connection is made."""
    if not settings.require_tls or address.startswith("tls://") or is_loopback_address(address):
        return
    raise EngineError(
        "CLUSTER_INSECURE",
        f"Dask scheduler {address} is neither tls:// nor on loopback, and TLS is required "
        f"(--require-tls / {REQUIRE_TLS_ENV} / the resource's require_tls): Dask moves pickled "
        "code, so on a network the cluster must use TLS with a private CA (docs/operations.md, "
        "A Dask cluster); nothing was run",
        key=settings.scheduler,
    )


def resolve_scheduler(given: str | None) -> str | None:
    """The scheduler given on the command line or in the resource, else ENGINE_DASK_SCHEDULER;
    None (or empty) means: compute in process."""
    return given or os.environ.get(SCHEDULER_ENV) or None


def _unavailable(settings: ClusterSettings, why: str) -> EngineError:
    return EngineError(
        "CLUSTER_UNAVAILABLE",
        f"Dask scheduler {settings.scheduler} {why}; nothing was published. Start the "
        f"scheduler and workers (docs/operations.md) or unset {SCHEDULER_ENV} to compute in "
        "process, then re-run",
        key=settings.scheduler,
    )


def connect(settings: ClusterSettings) -> Any:
    """A ``distributed.Client`` of the scheduler (address or scheduler file)."""
    from distributed import Client
    from distributed.security import Security

    security = None
    if settings.tls_ca_file or settings.tls_cert or settings.tls_key:
        security = Security(tls_ca_file=settings.tls_ca_file, tls_client_cert=settings.tls_cert,
                            tls_client_key=settings.tls_key, require_encryption=True)
    target = settings.scheduler
    is_file = "://" not in target and (target.endswith(".json") or os.path.isfile(target))
    address = target
    if is_file:
        try:
            with open(target, encoding="utf-8") as fh:
                address = json.load(fh)["address"]
        except (OSError, ValueError, KeyError) as exc:
            raise _unavailable(settings, f"names no readable scheduler file ({exc})") from exc
    check_transport(settings, address)
    if address.startswith("tls://") and security is None and not _tls_configured():
        raise _unavailable(settings, "speaks TLS only: give --tls-ca-file, --tls-cert and "
                           "--tls-key (or the dask TLS configuration)")
    try:
        return Client(address, timeout=settings.connect_timeout_s, security=security,
                      set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise _unavailable(settings, f"cannot be reached ({type(exc).__name__}: {exc})") from exc


def _tls_configured() -> bool:
    import dask

    return bool(dask.config.get("distributed.comm.tls.ca-file", None))


def disconnect(client: Any, timeout_s: float = 5.0) -> None:
    """Close a client; quickly when its scheduler is gone (closing would otherwise wait
    twice the connect timeout for a scheduler that will not answer)."""
    try:
        client.close(timeout=timeout_s)
    except Exception:  # noqa: BLE001 - the run's own outcome is what matters here
        pass


def compute_state(run: Run, state: str, settings: ClusterSettings, client: Any = None
                  ) -> StateResult:
    """Run ``state`` of every window: S3 and S4 as shards on the cluster (published when all
    succeeded), every other state in process."""
    if state not in SHARDED:
        return run.state(state)
    own = client is None
    client = connect(settings) if own else client
    tag = uuid.uuid4().hex[:8]
    try:
        with RssWatch() as rss, shard_areas(run, SHARDED[state][0], tag):
            res = _compute_sharded(run, state, settings, client, tag)
        res.metrics["coordinator_rss_growth_mb"] = rss.growth_mb
        return res
    finally:
        if own:
            disconnect(client)


class RssWatch:
    """The largest growth of this process's resident memory over its value on entry, sampled
    every ``interval_s`` by a thread while the block runs: what a state cost the coordinator
    (its shards' data never passes through it, so this stays small whatever the partition)."""

    def __init__(self, interval_s: float = 0.02) -> None:
        self.interval_s = interval_s
        self.growth_mb = 0.0
        self._stop = threading.Event()

    def _rss(self) -> int:
        import psutil

        return psutil.Process().memory_info().rss

    def __enter__(self) -> RssWatch:
        self._base = self._rss()
        self._peak = self._base

        def sample() -> None:
            while not self._stop.wait(self.interval_s):
                self._peak = max(self._peak, self._rss())

        self._thread = threading.Thread(target=sample, name="rss-watch", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss())
        self.growth_mb = (self._peak - self._base) / 2**20


@contextlib.contextmanager
def shard_areas(run: Run, dataset: str, tag: str, lease_s: float = LEASE_S) -> Iterator[None]:
    """The run's claim on ``dataset``'s shard area of every window while its shards run.

    On entry: what crashed earlier runs of the partition left is swept (their leases have
    expired; a concurrent run's live lease protects its area), and this run's lease is
    written, then renewed every ``lease_s / 4`` by a thread. On exit — published or failed —
    every entry of this run is removed: abandoned attempts (a killed worker's, a recomputed
    shard's), the shards of a failed run, the lease."""
    store, years = run.store, [w.year for w in run.ctx.windows]
    for y in years:
        with contextlib.suppress(OSError):  # left for the next run: never fails this one
            store.sweep_stale_shards(dataset, y, keep=tag)

    def renew() -> None:
        for y in years:
            store.write_shard_lease(dataset, y, tag, time.time() + lease_s)

    try:
        renew()
    except OSError as exc:
        raise EngineError(
            "STORAGE_WRITE_FAILED",
            f"could not write the run's lease in the shard area of {dataset} under "
            f"{store.run_root}: {exc}; nothing was computed or published, fix the storage "
            "and re-run",
            table=dataset, key=store.shard_area(dataset, years[0]) if years else None,
        ) from exc
    stop = threading.Event()

    def keep_renewing() -> None:
        while not stop.wait(lease_s / 4):
            with contextlib.suppress(OSError):  # the next renewal may get through
                renew()

    renewer = threading.Thread(target=keep_renewing, name=f"shard-lease-{tag}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        for y in years:
            with contextlib.suppress(OSError):  # a lost store: the next run's sweep cleans
                store.drop_run_shards(dataset, y, tag)


def _absolute_if_path(value: str | None) -> str | None:
    """A local file or directory as an absolute path (a worker's working directory is not
    the coordinator's); presets and URIs unchanged."""
    if value is None or "://" in value or not os.path.exists(value):
        return value
    return os.path.abspath(value)


def worker_config(run: Run, settings: ClusterSettings) -> RunConfig:
    """The run's configuration as workers open it: the storage root, a world directory and
    a policy file as absolute paths (a worker's working directory is not ours), an object
    store by its URI; Numba threads of one shard task."""
    store = run.store
    root = store.storage.base if store.storage.is_local else store.storage.uri
    return replace(run.ctx.config, storage_root=root, threads=settings.task_threads,
                   world=_absolute_if_path(run.ctx.config.world),
                   policy_path=_absolute_if_path(run.ctx.config.policy_path))


def prepare_workers(run: Run, settings: ClusterSettings, client: Any) -> dict[str, float]:
    """Open the run on every worker now (world, arrays, tz tables, kernels) instead of in
    its first shard; seconds per worker."""
    return client.run(prepare_worker, worker_config(run, settings))


def _compute_sharded(run: Run, state: str, settings: ClusterSettings, client: Any,
                     tag: str | None = None) -> StateResult:
    from distributed import as_completed

    t0 = time.perf_counter()
    dataset, merge = SHARDED[state]
    ctx, store = run.ctx, run.store
    if state == "s4":
        for w in ctx.windows:  # S4 shards read the published counts: fail here, clearly
            store.dataset_files("bucket_counts", w.year)
    shards = plan_shards(ctx, store, state, settings.shards)
    config = worker_config(run, settings)
    identity = run_identity(ctx)
    tag = tag or uuid.uuid4().hex[:8]
    t_submit = time.perf_counter()
    futures = [client.submit(compute_shard, config, identity, state,
                             Shard(s.lo, s.hi, tag), pure=False, key=f"{state}-{s.name}-{tag}")
               for s in shards]
    rep = ProgressReporter(run.progress, f"{state}@cluster", len(shards), "shards")
    done: list[dict[str, Any]] = []
    try:
        for fut, summary in as_completed(futures, with_results=True, loop=client.loop,
                                         timeout=settings.state_timeout_s):
            if fut.status == "cancelled":  # nobody here cancelled it: the scheduler is gone
                raise _unavailable(settings, f"was lost while {state} shards ran ({summary})")
            done.append(summary)
            rep.update(len(done))
    except EngineError:
        client.cancel(futures)
        raise
    except TimeoutError as exc:
        client.cancel(futures)
        raise EngineError(
            "CLUSTER_TIMEOUT",
            f"{state} shards did not finish within {settings.state_timeout_s:.0f} s on "
            f"{settings.scheduler} (no workers, or workers too slow); nothing was published",
            key=settings.scheduler,
        ) from exc
    except Exception as exc:  # a worker's own error (KilledWorker, MemoryError ...)
        if client.status not in ("running", "connecting"):
            raise _unavailable(settings, f"was lost while {state} shards ran ({exc})") from exc
        client.cancel(futures)
        raise EngineError(
            "CLUSTER_TASK_FAILED",
            f"a {state} shard failed on the cluster: {type(exc).__name__}: {exc}; nothing "
            "was published",
            key=settings.scheduler,
        ) from exc
    rep.finish()
    t_compute = time.perf_counter() - t_submit
    t_pub = time.perf_counter()
    paths: list[str] = []
    # publish exactly the attempts that succeeded (an abandoned attempt's files stay apart)
    attempts = [Shard(*d["shard"], d["attempt"]) for d in done]
    for w in ctx.windows:
        paths += store.publish_shards(dataset, w.year, attempts, merge,
                                      discard_in_background=state == "s4")
    publish_s = time.perf_counter() - t_pub
    # the S4 rules on the workers too, over what was just published (verdicts recorded)
    rules = (check_s4_on_cluster(run, config, client, settings.state_timeout_s, shards)
             if state == "s4" else {})
    rows = sum(int(s["rows"]) for s in done)
    events = sum(int(s["events"] or 0) for s in done)
    shard_s = sorted(float(s["task_s"]) for s in done)
    return StateResult(
        state=state, rows=rows, events=events, elapsed_s=time.perf_counter() - t0,
        output_bytes=store.file_bytes(paths), paths=paths,
        metrics={"shards": len(shards), "cluster_s": t_compute, "publish_s": publish_s,
                 "shard_s_max": shard_s[-1] if shard_s else 0.0,
                 "shard_s_sum": sum(shard_s),
                 "shard_cpu_s_sum": sum(float(s.get("cpu_s", 0.0)) for s in done),
                 "workers": sorted({f"{s['host']}:{s['pid']}" for s in done}),
                 "worker_peak_rss_mb": max((float(s.get("peak_rss_mb", 0)) for s in done),
                                           default=0.0),
                 "scheduler": settings.scheduler, **rules},
    )
