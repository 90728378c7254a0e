"""The small world on a real Dask cluster, on a local root and on an object store, with
workers held to a memory limit.

One week of the small world (≈ 0.4 M events), 4 merchant shards per state:

- one worker, local root, the coordinator in this process;
- two workers, moto's S3 server as the root, the coordinator the CLI.

Both partitions equal the in-process run's (read in file-name order: every column of every
row, same order), and the two cluster runs' part files are byte-identical (different worker
counts, different storage). On the object store the coordinator publishes by server-side
copies: the server's request log shows no GET of any shard object.

Memory, what this proves and what it does not: every worker runs under ``--memory-limit
MEMORY_LIMIT``; the largest peak RSS of a worker process (``ru_maxrss`` at the end of each
shard, which is at least what dask's monitor samples) stays below dask's pause threshold
(80 % of the limit), so no worker was paused or restarted — checked also in the workers'
logs (no pause, spill-pressure or restart message) and by one worker process computing
every shard of the first run. The limit is about twice the measured peak of ≈ 380 MB per
worker process — an opened small world, compiled kernels and the dask worker itself; a
shard's own data is a small part of it — so that dask's 60 % "target" stays above the peak
too (peaks are read from the first run's shard summaries; the second run's workers are
checked through their logs). The coordinator's resident memory, sampled every 20 ms while
S3 and then S4 ran on the local root (measured growth < 1 MB), must grow by less than a
quarter of the decoded S4 partition: it plans from the counts a row group at a time and
moves (local root) or copies server-side (object store) the shards' files, so no
full-partition array passes through it. That S4 writes a shard in chunks bounded
by ``EVENTS_PER_CHUNK`` (configuration, not the partition) is shown on the chunker every
worker runs, in process, in ``test_s4_shard_chunks_are_bounded_by_configuration``: this
week is too small to need more than one chunk per shard.
"""

from __future__ import annotations

import datetime as dt
import glob
import hashlib
import os
import re

import numpy as np
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import FileSelector, FileType

from engine_core.cluster.coordinator import ClusterSettings, compute_state
from engine_core.context import Shard
from engine_core.pipeline import Run, RunConfig, run_all, s4_events
from tests.cluster.conftest import DATASETS, YEAR, cli_run, decoded, summary_of
from tests.ops.test_object_storage import BUCKET, CREDENTIALS, s3_server  # noqa: F401

pytestmark = pytest.mark.timeout(900)

WORLD, START, END = "small", "2026-03-02", "2026-03-09"
SHARDS = 4
MEMORY_LIMIT, LIMIT_MB = "768MiB", 768.0
PAUSE_FRACTION = 0.8  # dask's distributed.worker.memory.pause default
MEMORY_WORDS = re.compile(r"pausing|paused|restarting|exceeded|memory use is high|"
                          r"unmanaged memory", re.IGNORECASE)


def _files(root: str, dataset: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "*", "*", "seed=42", dataset,
                                         "scenario=baseline", f"year={YEAR}", "*.parquet")),
                  key=os.path.basename)


def _ts(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def small_in_process(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("small-in-process") / "data")
    done = cli_run(root, world=WORLD, start=START, end=END)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_small_world_on_the_cluster_local_and_object_store_under_a_memory_limit(
        make_cluster, s3_server, small_in_process, tmp_path):  # noqa: F811
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_server.endpoint}
    cluster = make_cluster(workers=1, env=env, memory_limit=MEMORY_LIMIT)

    # one worker, local root, the coordinator here (its state metrics are read below)
    local = str(tmp_path / "local")
    run = Run.open(RunConfig(world=WORLD, scenario="baseline", start=_ts(START), end=_ts(END),
                             storage_root=local))
    settings = ClusterSettings(cluster.scheduler_file, shards=SHARDS)
    results = {}
    with cluster.client() as client:
        def compute(name):
            results[name] = compute_state(run, name, settings, client)
            return results[name]

        summary = run_all(run, compute)
    assert summary["passed"], summary["failed_rules"]
    assert results["s4"].events > 300_000

    # two workers, object store, the CLI
    cluster.add_workers(1, MEMORY_LIMIT)
    log_mark = s3_server.log.stat().st_size
    done = cli_run(f"s3://{BUCKET}/small", "--scheduler", cluster.scheduler_file,
                   "--shards", str(SHARDS), world=WORLD, start=START, end=END,
                   env={**s3_server.env(), **env}, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary_of(done)["passed"]

    fs = s3_server.filesystem()
    infos = fs.get_file_info(FileSelector(f"{BUCKET}/small", recursive=True))
    for dataset in DATASETS:
        mine = _files(local, dataset)
        assert len(mine) >= SHARDS
        want = decoded(_files(small_in_process, dataset))
        got = decoded(mine)
        assert got.num_rows == want.num_rows > 0
        assert got.schema == want.schema
        for name in want.column_names:
            assert got.column(name).equals(want.column(name)), f"{dataset}.{name} differs"
        # the object store's partition: byte for byte the local one (2 workers against 1)
        prefix = f"/{dataset}/scenario=baseline/year={YEAR}/"
        remote = sorted((i.path for i in infos
                         if prefix in i.path and i.path.endswith(".parquet")),
                        key=os.path.basename)
        assert [os.path.basename(p) for p in remote] == [os.path.basename(p) for p in mine]
        for r, m in zip(remote, mine, strict=True):
            with fs.open_input_stream(r) as fh:
                body = fh.read()
            assert hashlib.sha256(body).digest() == hashlib.sha256(
                open(m, "rb").read()).digest(), f"{os.path.basename(m)} differs"
    # nothing left of either run's shards (on the object store at most empty "directory"
    # markers, which hold no data)
    assert not [i for i in infos if "/_shards/" in i.path and i.type == FileType.File]
    assert not os.path.exists(os.path.join(local, "_shards"))
    # published by server-side copy: no shard object was downloaded (the log's requests of
    # this run only)
    with open(s3_server.log, "rb") as fh:
        fh.seek(log_mark)
        requests = fh.read().decode(errors="replace")
    assert "/_shards/" in requests  # the workers' uploads are in the log ...
    assert not re.search(r'"GET [^"]*/_shards/[^"]*\.parquet', requests)  # ... no download

    # memory: no worker came near dask's pause threshold, none was paused or restarted
    for name in ("s3", "s4"):
        m = results[name].metrics
        assert 0 < m["worker_peak_rss_mb"] < PAUSE_FRACTION * LIMIT_MB, m
    # one worker process did every shard of S3 and S4: it was never restarted
    assert len({*results["s3"].metrics["workers"], *results["s4"].metrics["workers"]}) == 1
    for log in cluster.base.glob("worker-*.log"):
        text = log.read_text(errors="replace")
        assert not MEMORY_WORDS.search(text), f"{log.name}: {MEMORY_WORDS.search(text)[0]}"
    # the coordinator: S4 grew its resident memory by far less than the partition it published
    events_bytes = decoded(_files(local, "arrival_events")).nbytes
    for name in ("s3", "s4"):
        growth = results[name].metrics["coordinator_rss_growth_mb"] * 2**20
        assert growth < events_bytes / 4, (name, growth / 2**20, events_bytes / 2**20)


def test_s4_shard_chunks_are_bounded_by_configuration(small_in_process, monkeypatch):
    """The S4 chunker a worker runs over its shard cuts the shard's counts into chunks of at
    most EVENTS_PER_CHUNK events (plus, at most, the one (merchant, bucket) that crosses the
    bound: a group is never split), whatever the shard's size — here with the bound lowered
    so that one shard of the small world's week needs many chunks."""
    run = Run.open(RunConfig(world=WORLD, scenario="baseline", start=_ts(START), end=_ts(END),
                             storage_root=small_in_process))
    w = run.ctx.windows[0]
    shard = Shard(0, len(run.ctx.merchant_ids) // 2)
    counts = pq.read_table(_files(small_in_process, "bucket_counts"))
    largest_group = int(counts.group_by(["merchant_id", "bucket_start_utc"])
                        .aggregate([("count", "sum")]).column("count_sum").to_numpy().max())
    bound = 10_000
    monkeypatch.setattr(s4_events, "EVENTS_PER_CHUNK", bound)
    sizes = [int(np.sum(c.column("count").to_numpy()))
             for c in s4_events.count_chunks(run.ctx, run.store, w, shard)]
    lo, hi = run.ctx.shard_merchants(shard)
    mids = counts.column("merchant_id").to_numpy()
    in_shard = int(np.sum(counts.column("count").to_numpy()[(mids >= lo) & (mids <= hi)]))
    assert sum(sizes) == in_shard > 10 * bound
    assert len(sizes) >= in_shard // (bound + largest_group)
    assert max(sizes) <= bound + largest_group
