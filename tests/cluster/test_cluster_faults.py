"""Faults on a real Dask cluster: a worker SIGKILLed in the middle of a shard, the scheduler
killed. Nothing partial is ever published; a killed worker's shard is recomputed and the
partition equals the in-process one; a lost scheduler fails the run with CLUSTER_UNAVAILABLE
and a re-run on a new cluster succeeds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.cluster.conftest import (
    DATASETS,
    END,
    START,
    decoded,
    partition_files,
    summary_of,
)

pytestmark = pytest.mark.timeout(600)
SHARDS = 3


def start_cli(root: str, scheduler: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "engine_core.cli", "run", "--world", "tiny", "--scenario",
         "baseline", "--start", START, "--end", END, "--out", root, "--quiet",
         "--scheduler", scheduler, "--shards", str(SHARDS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> subprocess.CompletedProcess:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the run did not finish: {err[-3000:]}") from None
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_worker_killed_mid_shard_is_recomputed(make_cluster, in_process, tmp_path):
    cluster = make_cluster(workers=2)
    cluster.arm_pause()
    root = str(tmp_path / "data")
    proc = start_cli(root, cluster.scheduler_file)
    pid = cluster.paused_pid(proc)
    # a shard has written a part file and paused: nothing of S4 is published
    assert partition_files(root, "bucket_counts")
    assert not partition_files(root, "arrival_events")
    os.kill(pid, signal.SIGKILL)
    done = finish(proc)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary_of(done)["passed"]
    for dataset in DATASETS:
        got, want = decoded(partition_files(root, dataset)), decoded(
            partition_files(in_process, dataset))
        assert got.num_rows == want.num_rows > 0
        for name in want.column_names:
            assert got.column(name).equals(want.column(name)), f"{dataset}.{name} differs"


def test_scheduler_killed_fails_coded_and_a_rerun_succeeds(make_cluster, in_process, tmp_path):
    cluster = make_cluster(workers=1)
    cluster.arm_pause()
    root = str(tmp_path / "data")
    proc = start_cli(root, cluster.scheduler_file)
    cluster.paused_pid(proc)
    os.killpg(cluster.scheduler.pid, signal.SIGKILL)
    t0 = time.monotonic()
    done = finish(proc, timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "CLUSTER_UNAVAILABLE" in done.stderr
    assert summary_of(done)["error"]["code"] == "CLUSTER_UNAVAILABLE"
    assert time.monotonic() - t0 < 30
    assert not partition_files(root, "arrival_events")  # nothing published
    cluster.stop_all()

    again = make_cluster(workers=1)
    proc = start_cli(root, again.scheduler_file)
    done = finish(proc)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary_of(done)["passed"]
    got, want = (decoded(partition_files(root, "arrival_events")),
                 decoded(partition_files(in_process, "arrival_events")))
    assert got.equals(want)
