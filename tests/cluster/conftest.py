"""A real Dask cluster on 127.0.0.1: the ``dask scheduler`` and ``dask worker`` commands a
cluster runs, started as processes with a scheduler file in a temporary directory, workers
with one thread each. Every process is stopped by its own process group in teardown.

Workers preload ``pause_preload.py``: when the test arms it (a file), the first S4 shard to
write a part file records its worker's pid and pauses, so a test can kill that worker — or
the scheduler — in the middle of a shard.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

DASK = str(Path(sys.executable).parent / "dask")
PRELOAD = str(Path(__file__).with_name("pause_preload.py"))
START_TIMEOUT_S = 60
YEAR = 2026
START, END = "2026-03-01", "2026-04-01"
DATASETS = ("bucket_counts", "arrival_events")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """Stop a process this fixture started, and its children (its own process group)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(grace_s)
        except ProcessLookupError:
            pass
    else:  # the group leader is gone; its children may not be
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class DaskCluster:
    """A scheduler and its workers, all on 127.0.0.1."""

    base: Path
    tls: list[str] = field(default_factory=list)  # extra CLI options of every process
    scheduler: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    protocol: str = "tcp"
    env: dict[str, str] = field(default_factory=dict)  # extra environment of every process

    @property
    def scheduler_file(self) -> str:
        return str(self.base / "scheduler.json")

    @property
    def pause_dir(self) -> Path:
        return self.base / "pause"

    @property
    def address(self) -> str:
        return json.loads(Path(self.scheduler_file).read_text())["address"]

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen:
        env = {**os.environ, **self.env, "ENGINE_TEST_PAUSE_DIR": str(self.pause_dir),
               "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
        out = open(self.base / log, "ab")  # noqa: SIM115 - the process owns it
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)

    def start_scheduler(self, port: int | None = None) -> None:
        Path(self.scheduler_file).unlink(missing_ok=True)
        self.scheduler = self._spawn(
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port or free_port()),
             "--protocol", self.protocol, "--no-dashboard", "--scheduler-file",
             self.scheduler_file, *self.tls], "scheduler.log")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not os.path.exists(self.scheduler_file):
            assert self.scheduler.poll() is None, (self.base / "scheduler.log").read_text()
            assert time.monotonic() < deadline, "scheduler did not start"
            time.sleep(0.2)

    def add_workers(self, n: int, memory_limit: str = "2GiB") -> None:
        for _ in range(n):
            self.workers.append(self._spawn(
                [DASK, "worker", "--scheduler-file", self.scheduler_file, "--nthreads", "1",
                 "--host", "127.0.0.1", "--no-dashboard", "--memory-limit", memory_limit,
                 "--death-timeout", "60", "--preload", PRELOAD, *self.tls],
                f"worker-{len(self.workers)}.log"))
        self.wait_for_workers(len(self.workers))

    def client(self, timeout: float = START_TIMEOUT_S):
        from distributed import Client

        from engine_core.cluster.coordinator import ClusterSettings, connect

        if self.tls:
            return connect(ClusterSettings(self.scheduler_file, **self.tls_settings()))
        return Client(scheduler_file=self.scheduler_file, timeout=timeout,
                      set_as_default=False)

    def tls_settings(self) -> dict[str, str]:
        opts = dict(zip(self.tls[::2], self.tls[1::2], strict=True))
        return {"tls_ca_file": opts["--tls-ca-file"], "tls_cert": opts["--tls-cert"],
                "tls_key": opts["--tls-key"]}

    def wait_for_workers(self, n: int) -> None:
        with self.client() as c:
            c.wait_for_workers(n, timeout=START_TIMEOUT_S)

    def arm_pause(self) -> None:
        self.pause_dir.mkdir(exist_ok=True)
        (self.pause_dir / "armed").touch()

    def paused_pid(self, run: subprocess.Popen, timeout_s: float = 120) -> int:
        """The pid of the worker process that paused in the middle of a shard of ``run``."""
        pid_file = self.pause_dir / "paused"
        deadline = time.monotonic() + timeout_s
        while not pid_file.exists():
            if run.poll() is not None:
                raise AssertionError(f"the run ended before a shard paused: "
                                     f"{run.stderr.read()[-3000:] if run.stderr else ''}")
            assert time.monotonic() < deadline, "no shard paused"
            time.sleep(0.1)
        return int(pid_file.read_text())

    def stop_all(self) -> None:
        for w in self.workers:
            stop(w)
        if self.scheduler is not None:
            stop(self.scheduler)
        self.workers.clear()


def cli_run(root: str, *extra: str, timeout: float = 300, scheduler_env: str = "",
            world: str = "tiny", start: str = START, end: str = END,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`arrival-engine run` (by default of the tiny world's March 2026); ``scheduler_env`` is
    ENGINE_DASK_SCHEDULER (empty: unset)."""
    return subprocess.run(
        [sys.executable, "-m", "engine_core.cli", "run", "--world", world, "--scenario",
         "baseline", "--start", start, "--end", end, "--out", root, "--quiet", *extra],
        capture_output=True, text=True, timeout=timeout,
        env={**(env or os.environ), "ENGINE_DASK_SCHEDULER": scheduler_env},
    )


def summary_of(done: subprocess.CompletedProcess) -> dict:
    return json.loads(done.stdout.strip().splitlines()[-1])


def partition_files(root: str, dataset: str) -> list[str]:
    found = glob.glob(os.path.join(root, "*", "*", "seed=42", dataset, "scenario=baseline",
                                   f"year={YEAR}", "*.parquet"))
    return sorted(found, key=os.path.basename)


def decoded(files: list[str]) -> pa.Table:
    """The partition in file-name order, dictionary columns decoded (files number their
    dictionaries independently)."""
    t = pa.concat_tables([pq.read_table(f) for f in files])
    return pa.table({f.name: (t.column(f.name).cast(f.type.value_type)
                              if pa.types.is_dictionary(f.type) else t.column(f.name))
                     for f in t.schema})


def digests(root: str, dataset: str) -> dict[str, str]:
    return {os.path.basename(f): hashlib.sha256(open(f, "rb").read()).hexdigest()
            for f in partition_files(root, dataset)}


@pytest.fixture(scope="session")
def in_process(tmp_path_factory) -> str:
    """The storage root of the in-process run every cluster run is compared with."""
    root = str(tmp_path_factory.mktemp("in-process") / "data")
    done = cli_run(root)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture
def make_cluster(tmp_path_factory) -> Iterator:
    clusters: list[DaskCluster] = []

    def make(workers: int, tls: list[str] | None = None, protocol: str = "tcp",
             env: dict[str, str] | None = None, memory_limit: str = "2GiB") -> DaskCluster:
        c = DaskCluster(tmp_path_factory.mktemp("dask"), tls or [], protocol=protocol,
                        env=env or {})
        clusters.append(c)
        c.start_scheduler()
        c.add_workers(workers, memory_limit)
        return c

    yield make
    for c in clusters:
        c.stop_all()
