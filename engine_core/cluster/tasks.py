"""What a cluster worker runs: one state over one merchant shard.

Task functions live in the installed package, so the scheduler and every worker import them
by name (a function only the coordinator has cannot be deserialised on a worker). Every task
carries the coordinator's identity — engine version and source digest, tzdata release, world
fingerprint, parameter hash — and the worker refuses the shard when its own differs, so a
worker with another engine, tzdata, world or policy can never write into the partition.
"""

from __future__ import annotations

import functools
import os
import resource
import socket
import time
import uuid
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numba

from engine_core.context import RunConfig, RunContext, Shard
from engine_core.errors import EngineError
from engine_core.io.memory import tune_allocator
from engine_core.pipeline.jit import warm_up_kernels
from engine_core.pipeline.progress import peak_rss_mb
from engine_core.pipeline.run import Run
from engine_core.source_digest import source_digest

DATASETS = {"s3": "bucket_counts", "s4": "arrival_events"}
IDENTITY_KEYS = ("engine_version", "engine_source", "tzdata_version", "world_fingerprint",
                 "parameter_hash")


@functools.cache
def engine_build() -> tuple[str, str]:
    """This process's engine: package version and digest of its sources."""
    try:
        v = version("arrival-engine")
    except PackageNotFoundError:  # running from a source tree without installing
        v = "unknown"
    return v, source_digest()


def run_identity(ctx: RunContext) -> dict[str, str]:
    """What must be equal on the coordinator and every worker for their bytes to be equal."""
    v, src = engine_build()
    return {"engine_version": v, "engine_source": src, "tzdata_version": ctx.tzdata_version,
            "world_fingerprint": ctx.world_fingerprint, "parameter_hash": ctx.parameter_hash}


def _worker_local_directory() -> str | None:
    """This dask worker's own scratch directory (None outside a worker). Dask removes the
    directory of a worker that died when the next worker starts on the host (it holds a
    lock on it while alive), so shard files a killed worker left there do not pile up."""
    try:
        from distributed import get_worker

        return get_worker().local_directory
    except (ImportError, ValueError, AttributeError):
        return None


@functools.lru_cache(maxsize=2)
def _open_run(config: RunConfig) -> Run:
    # a worker runs many shards of one run: the world and its arrays are built once
    tune_allocator()
    return Run.open(config)


def check_identity(expected: dict[str, str], ctx: RunContext) -> None:
    """Refuse to compute for a coordinator whose identity differs from this worker's."""
    mine = run_identity(ctx)
    differ = [k for k in IDENTITY_KEYS if expected.get(k) != mine[k]]
    if differ:
        detail = "; ".join(f"{k}: coordinator {expected.get(k)!r}, worker {mine[k]!r}"
                           for k in differ)
        raise EngineError(
            "CLUSTER_IDENTITY_MISMATCH",
            f"worker on {socket.gethostname()} (pid {os.getpid()}) refused a shard: {detail}. "
            "Install the same engine, tzdata, world and policy on every worker",
            key=",".join(differ),
        )


def prepare_worker(config: RunConfig) -> float:
    """Open ``config``'s run in this worker and build what every shard needs (world arrays,
    grouping, tz tables, compiled kernels); the seconds it took."""
    t0 = time.perf_counter()
    run = _open_run(config)
    run.ctx.arrays, run.ctx.grouping, run.ctx.tz  # noqa: B018 - built on first use
    warm_up_kernels()
    return time.perf_counter() - t0


def compute_shard(config: RunConfig, identity: dict[str, str], state: str, shard: Shard
                  ) -> dict[str, Any]:
    """Run ``state`` (s3 or s4) over ``shard`` into the shard area of the storage root; a
    summary for the coordinator, naming the attempt whose files to publish. Each attempt
    writes a directory of its own: a recomputed shard (its worker died or was cut off) never
    shares files with an earlier attempt that may still be running."""
    t0, cpu0 = time.perf_counter(), _process_cpu_s()
    shard = Shard(shard.lo, shard.hi, f"{shard.attempt}-{uuid.uuid4().hex[:8]}".lstrip("-"))
    run = _open_run(config)
    if not run.store.storage.is_local:
        # on an object store a shard is written locally, then uploaded: into this worker's
        # scratch directory, which dask cleans when the worker dies
        run = replace(run, store=replace(run.store,
                                         local_shard_base=_worker_local_directory()))
    check_identity(identity, run.ctx)
    # Numba's thread count is per calling thread: set it in the worker's task thread
    numba.set_num_threads(run.ctx.threads)
    try:
        res = run.state(state, shard=shard)
    except EngineError:
        raise
    except Exception as exc:
        # the coordinator gets a plain, picklable error with the worker's message (an
        # exception that fails to serialise would leave it waiting for the shard)
        raise EngineError(
            "CLUSTER_TASK_FAILED",
            f"{state} shard {shard.name} failed on {socket.gethostname()} (pid {os.getpid()}): "
            f"{type(exc).__name__}: {exc}",
            key=shard.name,
        ) from None
    for w in run.ctx.windows:  # on an object store: upload, totals last
        run.store.export_shard(DATASETS[state], w.year, shard.name)
    return {"state": state, "shard": [shard.lo, shard.hi], "attempt": shard.attempt,
            "rows": res.rows,
            "events": res.events, "files": len(res.paths), "bytes": res.output_bytes,
            "state_s": res.elapsed_s, "task_s": time.perf_counter() - t0,
            "cpu_s": _process_cpu_s() - cpu0,
            "host": socket.gethostname(), "pid": os.getpid(), "peak_rss_mb": peak_rss_mb()}


def _process_cpu_s() -> float:
    """CPU seconds of this worker process so far, every thread (its Numba and writer threads,
    and dask's own: with ``--nthreads 1`` one shard runs at a time, so a shard's delta is
    what it cost the worker)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
