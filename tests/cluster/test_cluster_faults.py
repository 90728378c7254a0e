"""Faults on a real Dask cluster: a worker SIGKILLed in the middle of a shard, the scheduler
killed, a coordinator SIGKILLed. Nothing partial is ever published; a killed worker's shard is
recomputed and the partition equals the in-process one; a lost scheduler fails the run with
CLUSTER_UNAVAILABLE and a re-run on a new cluster succeeds.

Nothing is left behind: after a publish and after a failed run the storage root has no
``_shards`` area (abandoned attempts, the run's shards, its lease: all removed). What a
crashed coordinator left is removed by the next run of the partition once the crashed run's
lease has expired, while the area of a run still going on (its lease live) is not touched.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def shard_entries(root: str, dataset: str = "arrival_events") -> set[str]:
    """Names in the partition's shard area: attempt directories and runs' leases."""
    area = glob.glob(os.path.join(root, "_shards", "*", "*", "seed=42", dataset,
                                  "scenario=baseline", "year=2026"))
    return {n for a in area for n in os.listdir(a)}


def run_tag(name: str) -> str:
    """The run tag of ``m<lo>-<hi>.<tag>-<attempt>`` or ``_lease.<tag>.json``."""
    if name.startswith("_lease."):
        return name.removeprefix("_lease.").removesuffix(".json")
    return name.split(".", 1)[1].split("-", 1)[0]


def rearm(cluster) -> None:
    """Let the preload pause the next S4 part file written (it pauses once per arming)."""
    for name in ("claim", "paused"):
        (cluster.pause_dir / name).unlink(missing_ok=True)
    cluster.arm_pause()


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
    killed = shard_entries(root)
    assert any(n.startswith("m") for n in killed)  # the attempt the kill abandons
    os.kill(pid, signal.SIGKILL)
    done = finish(proc)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary_of(done)["passed"]
    # the abandoned attempt, the published ones' directories and the lease: all gone
    assert not os.path.exists(os.path.join(root, "_shards"))
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
    assert not os.path.exists(os.path.join(root, "_shards"))  # the failed run cleaned up
    cluster.stop_all()

    again = make_cluster(workers=1)
    proc = start_cli(root, again.scheduler_file)
    done = finish(proc)
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary_of(done)["passed"]
    got, want = (decoded(partition_files(root, "arrival_events")),
                 decoded(partition_files(in_process, "arrival_events")))
    assert got.equals(want)


def test_a_crashed_runs_shards_are_swept_a_concurrent_runs_are_not(make_cluster, in_process,
                                                                    tmp_path):
    """Run C's coordinator is SIGKILLed mid-shard (its lease stays, with its attempt); run A
    is paused mid-shard (alive, lease live); run B, on another cluster, runs the same
    partition to the end. B removes C's leftovers once C's lease has expired (the test
    moves C's expiry into the past instead of waiting LEASE_S) and leaves A's area alone; A
    then finishes (its paused worker killed, the shard recomputed) and the root has no shard
    area left."""
    cluster = make_cluster(workers=1)
    root = str(tmp_path / "data")
    area_glob = os.path.join(root, "_shards", "*", "*", "seed=42", "arrival_events",
                             "scenario=baseline", "year=2026")

    cluster.arm_pause()
    crashed = start_cli(root, cluster.scheduler_file)
    worker_c = cluster.paused_pid(crashed)
    crashed.send_signal(signal.SIGKILL)  # the coordinator dies: nobody cleans up
    finish(crashed, timeout=30)
    os.kill(worker_c, signal.SIGKILL)  # and its paused shard never finishes
    c_entries = shard_entries(root)
    (c_tag,) = {run_tag(n) for n in c_entries}
    assert f"_lease.{c_tag}.json" in c_entries and len(c_entries) >= 2
    lease = Path(glob.glob(area_glob)[0]) / f"_lease.{c_tag}.json"
    lease.write_text(json.dumps({"run": c_tag, "until": time.time() - 1}))  # expired
    cluster.wait_for_workers(1)  # the nanny restarted the killed worker

    rearm(cluster)
    alive = start_cli(root, cluster.scheduler_file)
    worker_a = cluster.paused_pid(alive)
    a_entries = shard_entries(root) - c_entries
    (a_tag,) = {run_tag(n) for n in a_entries}

    other = make_cluster(workers=1)
    done = finish(start_cli(root, other.scheduler_file))
    assert done.returncode == 0, done.stderr[-3000:]
    assert summary_of(done)["passed"]
    left = shard_entries(root)
    assert not left & c_entries  # the crashed run's attempt and lease: swept
    assert a_entries <= left  # the live run's area: untouched
    assert {run_tag(n) for n in left} == {a_tag}  # and B left nothing of its own

    os.kill(worker_a, signal.SIGKILL)
    done = finish(alive)
    assert done.returncode == 0, done.stderr[-3000:]
    assert not os.path.exists(os.path.join(root, "_shards"))
    got, want = (decoded(partition_files(root, "arrival_events")),
                 decoded(partition_files(in_process, "arrival_events")))
    assert got.equals(want)
