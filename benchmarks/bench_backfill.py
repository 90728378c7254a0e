"""Benchmark of a multi-partition backfill through Dagster's daemon and run queue.

    python benchmarks/bench_backfill.py [--world tiny] [--years 2025 2026] \
        [--scenarios baseline stress] [--max-concurrent-runs 2] [--url http://127.0.0.1:3000] \
        [--dequeue-interval S] [--timeout 600] [--json PATH]

Without ``--url`` it starts ``dagster dev -w workspace.yaml`` on a free loopback port with a
fresh ``DAGSTER_HOME`` (the repository's ``dagster.yaml`` with ``max_concurrent_runs`` set) and
a temporary storage root, exactly as an operator would, and stops it afterwards. With
``--url`` it drives an already running web server (its daemon must be running).

It launches one asset backfill of every engine asset over years x scenarios through GraphQL
``launchPartitionBackfill``, waits for the backfill and its runs to finish, and reads back from
GraphQL, per run: creation, enqueue, launch, start and end times (run stats) and every step's
start and end (step stats) with the ``events`` metadata of ``s4_arrival_events``. It prints

- partitions/hour and aggregate events/s over the wall clock (submission -> last run end);
- where the time went: the daemon (submission -> first run, run created -> dequeued by the
  run queue, dequeued -> run worker started) against compute (step durations) and the run
  worker's own overhead (run start -> end minus its steps).

The module also holds what the tests of ``tests/ops`` share with it: the ``dagster dev``
process (``DagsterDev``) and a small GraphQL client.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
LOCATION = "arrival_engine"
REPOSITORY = "__repository__"
ASSET_JOB = "__ASSET_JOB"  # the implicit job behind ad-hoc asset runs
ENGINE_ASSETS = (
    "world",
    "s1_time_grid",
    "s1_grouping",
    "s2_latent_intensity",
    "s3_bucket_counts",
    "s4_arrival_events",
    "s5_validation_report",
)
EVENTS_STEP = "s4_arrival_events"
TERMINAL_RUN_STATUSES = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL_STATUSES = {
    "COMPLETED",
    "COMPLETED_SUCCESS",
    "COMPLETED_FAILED",
    "FAILED",
    "CANCELED",
}

# A process started in the background by a non-interactive shell inherits SIGINT (and maybe
# SIGTERM) as ignored; `dagster dev` would then ignore the signal meant to stop it. The launcher
# restores the default handlers and unblocks both before it becomes `dagster dev`.
LAUNCHER = (
    "import os, signal, sys\n"
    "for s in (signal.SIGINT, signal.SIGTERM):\n"
    "    signal.signal(s, signal.SIG_DFL)\n"
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------- GraphQL
class GraphQLError(RuntimeError):
    pass


class GraphQLClient:
    """POSTs queries to ``<url>/graphql``; raises GraphQLError on transport or query errors."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def __call__(self, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
        body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read())
        except (urllib.error.URLError, OSError) as exc:
            raise GraphQLError(f"{self.url}/graphql unreachable: {exc}") from exc
        if payload.get("errors"):
            raise GraphQLError(json.dumps(payload["errors"])[:2000])
        return payload["data"]


def expect_type(result: Mapping[str, Any], typename: str) -> Mapping[str, Any]:
    """A union member of the expected type, or GraphQLError with the server's message."""
    if result.get("__typename") != typename:
        raise GraphQLError(f"expected {typename}, got {json.dumps(result)[:2000]}")
    return result


LOCATION_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
        }
      }
    }
  }
}
"""

SET_NUX_SEEN = "mutation { setNuxSeen }"

START_SENSOR = """
mutation StartSensor($selector: SensorSelector!) {
  startSensor(sensorSelector: $selector) {
    __typename
    ... on Sensor { name sensorState { status } }
    ... on PythonError { message }
  }
}
"""

LAUNCH_BACKFILL = """
mutation LaunchBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message stack }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { stepKey invalidOutputName }
    ... on UnauthorizedError { message }
  }
}
"""

LAUNCH_RUN = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query BackfillStatus($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id
      status
      numPartitions
      timestamp
      endTimestamp
      error { message }
    }
    ... on PythonError { message }
  }
}
"""

RUNS_QUERY = """
query Runs($filter: RunsFilter, $limit: Int) {
  runsOrError(filter: $filter, limit: $limit) {
    __typename
    ... on Runs {
      results {
        runId
        status
        creationTime
        startTime
        endTime
        tags { key value }
        stats {
          __typename
          ... on RunStatsSnapshot { enqueuedTime launchTime startTime endTime stepsFailed }
        }
        stepStats {
          stepKey
          status
          startTime
          endTime
          materializations {
            assetKey { path }
            partition
            metadataEntries {
              label
              __typename
              ... on IntMetadataEntry { intValue }
              ... on FloatMetadataEntry { floatValue }
            }
          }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


CHECK_EXECUTIONS = """
query CheckExecutions($assetKey: AssetKeyInput!, $checkName: String!, $limit: Int!,
                      $partition: String) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, limit: $limit,
                       partition: $partition) {
    runId
    status
    partition
    evaluation { severity }
  }
}
"""


def location_loaded(gql: GraphQLClient, location: str = LOCATION) -> bool:
    """True once the code location is loaded; GraphQLError when it failed to load."""
    data = gql(LOCATION_QUERY)["workspaceOrError"]
    for entry in data.get("locationEntries", []):
        if entry["name"] != location or entry["loadStatus"] != "LOADED":
            continue
        loaded = entry["locationOrLoadError"] or {}
        if loaded.get("__typename") == "PythonError":
            raise GraphQLError(f"code location {location} failed to load: {loaded['message']}")
        return loaded.get("__typename") == "RepositoryLocation"
    return False


def set_nux_seen(gql: GraphQLClient) -> None:
    """Dismiss the web UI's first-visit ("join the community") modal for this instance."""
    gql(SET_NUX_SEEN)


def start_sensor(gql: GraphQLClient, sensor: str, location: str = LOCATION) -> str:
    selector = {
        "repositoryLocationName": location,
        "repositoryName": REPOSITORY,
        "sensorName": sensor,
    }
    result = gql(START_SENSOR, {"selector": selector})["startSensor"]
    return expect_type(result, "Sensor")["sensorState"]["status"]


def launch_backfill(
    gql: GraphQLClient,
    partitions: Sequence[str],
    assets: Sequence[str] = ENGINE_ASSETS,
    title: str | None = None,
) -> str:
    params: dict[str, Any] = {
        "partitionNames": list(partitions),
        "assetSelection": [{"path": [a]} for a in assets],
        "fromFailure": False,
        "tags": [{"key": "engine/trigger", "value": "bench_backfill"}],
    }
    if title:
        params["title"] = title
    result = gql(LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    return expect_type(result, "LaunchBackfillSuccess")["backfillId"]


def launch_run(
    gql: GraphQLClient,
    assets: Sequence[str],
    partition: str,
    tags: Mapping[str, str] | None = None,
    location: str = LOCATION,
) -> str:
    """Launch one run materialising ``assets`` (with their checks) for one partition key."""
    run_tags = {"dagster/partition": partition, **(tags or {})}
    params = {
        "selector": {
            "repositoryLocationName": location,
            "repositoryName": REPOSITORY,
            "jobName": ASSET_JOB,
            "assetSelection": [{"path": [a]} for a in assets],
        },
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in run_tags.items()]},
    }
    result = gql(LAUNCH_RUN, {"params": params})["launchRun"]
    return expect_type(result, "LaunchRunSuccess")["run"]["runId"]


def backfill_status(gql: GraphQLClient, backfill_id: str) -> dict[str, Any]:
    result = gql(BACKFILL_STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    return dict(expect_type(result, "PartitionBackfill"))


def runs(gql: GraphQLClient, tags: Mapping[str, str] | None = None, limit: int = 100) -> list:
    run_filter = {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
    result = gql(RUNS_QUERY, {"filter": run_filter, "limit": limit})["runsOrError"]
    return list(expect_type(result, "Runs")["results"])


def run_by_id(gql: GraphQLClient, run_id: str) -> dict[str, Any]:
    result = gql(RUNS_QUERY, {"filter": {"runIds": [run_id]}, "limit": 1})["runsOrError"]
    found = expect_type(result, "Runs")["results"]
    if not found:
        raise GraphQLError(f"run {run_id} not found")
    return found[0]


def check_executions(
    gql: GraphQLClient,
    asset: str,
    check: str,
    partition: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Executions of one asset check, newest first, as the asset's Checks tab lists them
    (run id, status, the partition it was recorded under); only one partition's when given."""
    variables = {
        "assetKey": {"path": [asset]},
        "checkName": check,
        "limit": limit,
        "partition": partition,
    }
    return list(gql(CHECK_EXECUTIONS, variables)["assetCheckExecutions"])


def wait_for_run(gql: GraphQLClient, run_id: str, timeout_s: float, poll_s: float = 1.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        run = run_by_id(gql, run_id)
        if run["status"] in TERMINAL_RUN_STATUSES:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still {run['status']} after {timeout_s:.0f}s")
        time.sleep(poll_s)


def wait_for_backfill(
    gql: GraphQLClient, backfill_id: str, timeout_s: float, poll_s: float = 1.0
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wait until the backfill is done and each of its runs finished; return both."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = backfill_status(gql, backfill_id)
        backfill_runs = runs(gql, {"dagster/backfill": backfill_id})
        finished = [r for r in backfill_runs if r["status"] in TERMINAL_RUN_STATUSES]
        if status["status"] in TERMINAL_BACKFILL_STATUSES and len(finished) == len(backfill_runs):
            return status, backfill_runs
        if time.monotonic() > deadline:
            states = {r["runId"][:8]: r["status"] for r in backfill_runs}
            raise TimeoutError(
                f"backfill {backfill_id} still {status['status']} after {timeout_s:.0f}s; "
                f"runs {states}"
            )
        time.sleep(poll_s)


# ----------------------------------------------------------------------------- dagster dev
def instance_yaml(max_concurrent_runs: int | None, dequeue_interval_s: int | None = None) -> str:
    """The repository's dagster.yaml, with the run queue limit (and the run coordinator's
    dequeue interval, default 5 s) replaced when given."""
    config = yaml.safe_load((REPO / "dagster.yaml").read_text()) or {}
    if max_concurrent_runs is not None:
        runs_cfg = config.setdefault("concurrency", {}).setdefault("runs", {})
        runs_cfg["max_concurrent_runs"] = int(max_concurrent_runs)
    if dequeue_interval_s is not None:
        config["run_coordinator"] = {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"dequeue_interval_seconds": int(dequeue_interval_s)},
        }
    config.setdefault("telemetry", {"enabled": False})
    return yaml.safe_dump(config, sort_keys=False)


class DagsterDev:
    """``dagster dev -w workspace.yaml`` (web server, daemon, code server) as a child process.

    Started through ``LAUNCHER`` in a session of its own; stopped with SIGINT to its PID, then
    SIGKILL to its whole process group for anything left (run workers included).
    """

    def __init__(
        self,
        home: Path,
        env: Mapping[str, str],
        port: int | None = None,
        max_concurrent_runs: int | None = None,
        workspace: Path = REPO / "workspace.yaml",
        dequeue_interval_s: int | None = None,
    ) -> None:
        self.home = Path(home)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = self.home / "dagster_dev.log"
        self.workspace = workspace
        self.max_concurrent_runs = max_concurrent_runs
        self.dequeue_interval_s = dequeue_interval_s
        self.env = {**os.environ, **env, "DAGSTER_HOME": str(self.home)}
        self.process: subprocess.Popen | None = None
        self.gql = GraphQLClient(self.url)
        self.started_s: float | None = None
        self.ready_s: float | None = None

    def start(self) -> DagsterDev:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "dagster.yaml").write_text(
            instance_yaml(self.max_concurrent_runs, self.dequeue_interval_s)
        )
        dagster = Path(sys.executable).with_name("dagster")
        command = [
            sys.executable, "-c", LAUNCHER, str(dagster), "dev",
            "-w", str(self.workspace), "-h", "127.0.0.1", "-p", str(self.port),
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 (owned by the child from here on)
        try:
            self.started_s = time.monotonic()
            self.process = subprocess.Popen(
                command,
                cwd=str(self.workspace.parent),
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        return self

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Wait until /server_info answers and the code location is loaded; return seconds."""
        assert self.process is not None and self.started_s is not None
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                    up = response.status == 200
                if up and location_loaded(self.gql):
                    self.ready_s = time.monotonic() - self.started_s
                    return self.ready_s
            except (urllib.error.URLError, OSError, GraphQLError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"dagster dev not ready after {timeout_s:.0f}s:\n{self.log_tail()}"
                )
            time.sleep(0.5)

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGINT to dagster dev, SIGKILL to its process group after ``grace_s``."""
        if self.process is None:
            return None
        pid = self.process.pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the session (dagster dev itself, run workers, code servers).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        return self.process.returncode

    def __enter__(self) -> DagsterDev:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ----------------------------------------------------------------------------- measurement
@dataclass
class RunTiming:
    run_id: str
    partition: str
    status: str
    created: float
    enqueued: float | None
    launched: float | None
    started: float | None
    ended: float | None
    steps: dict[str, float]
    events: int

    @property
    def queue_s(self) -> float:
        """Created -> dequeued by the run queue coordinator (waiting for a free slot)."""
        return _gap(self.created, self.launched)

    @property
    def launch_s(self) -> float:
        """Dequeued -> run worker started (process spawn, code location import)."""
        return _gap(self.launched, self.started)

    @property
    def compute_s(self) -> float:
        return float(sum(self.steps.values()))

    @property
    def worker_overhead_s(self) -> float:
        """Run worker start -> end that no step accounts for (setup, event writes, teardown)."""
        return max(0.0, _gap(self.started, self.ended) - self.compute_s)


def peak_slots_held(runs: Sequence[RunTiming]) -> int:
    """The most runs holding a run-queue slot (dequeued, not yet ended) at any instant."""
    edges = []
    for r in runs:
        if r.launched is not None:
            edges += [(r.launched, 1), (r.ended if r.ended is not None else float("inf"), -1)]
    held = peak = 0
    for _t, step in sorted(edges):
        held += step
        peak = max(peak, held)
    return peak


def _gap(a: float | None, b: float | None) -> float:
    return max(0.0, float(b) - float(a)) if a is not None and b is not None else 0.0


def _events_of(run: Mapping[str, Any]) -> int:
    for step in run["stepStats"]:
        for mat in step["materializations"]:
            if mat["assetKey"]["path"] != [EVENTS_STEP]:
                continue
            for entry in mat["metadataEntries"]:
                if entry["label"] == "events" and entry.get("intValue") is not None:
                    return int(entry["intValue"])
    return 0


def run_partition(tags: Mapping[str, str]) -> str:
    """The partition key of a run: its ``dagster/partition`` tag. A run tagged only with a
    partition range (a backfill policy's run, whose check evaluations Dagster records without a
    partition) reads ``start...end``, even for a one-key range, so the report shows it."""
    if "dagster/partition" in tags:
        return tags["dagster/partition"]
    start = tags.get("dagster/asset_partition_range_start", "")
    end = tags.get("dagster/asset_partition_range_end", "")
    return f"{start}...{end}"


def run_timing(run: Mapping[str, Any]) -> RunTiming:
    stats = run["stats"] if run["stats"]["__typename"] == "RunStatsSnapshot" else {}
    tags = {t["key"]: t["value"] for t in run["tags"]}
    steps = {
        s["stepKey"]: _gap(s["startTime"], s["endTime"])
        for s in run["stepStats"]
        if s["startTime"] is not None
    }
    return RunTiming(
        run_id=run["runId"],
        partition=run_partition(tags),
        status=run["status"],
        created=float(run["creationTime"]),
        enqueued=stats.get("enqueuedTime"),
        launched=stats.get("launchTime"),
        started=run["startTime"] or stats.get("startTime"),
        ended=run["endTime"] or stats.get("endTime"),
        steps=steps,
        events=_events_of(run),
    )


@dataclass
class BackfillReport:
    partitions: list[str]
    max_concurrent_runs: int | None
    world: str
    backfill_id: str
    backfill_status: str
    submitted: float
    runs: list[RunTiming]
    server_ready_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> list[RunTiming]:
        return [r for r in self.runs if r.status == "SUCCESS"]

    @property
    def first_created(self) -> float:
        return min(r.created for r in self.runs)

    @property
    def last_ended(self) -> float:
        return max(r.ended or r.created for r in self.runs)

    @property
    def wall_s(self) -> float:
        return self.last_ended - self.submitted

    @property
    def events(self) -> int:
        return sum(r.events for r in self.succeeded)

    def summary(self) -> dict[str, Any]:
        wall = self.wall_s
        done = self.succeeded
        step_names = sorted({k for r in done for k in r.steps})
        run_spans = [_gap(r.started, r.ended) for r in done]
        busy = sum(run_spans)
        slots = sum(_gap(r.launched, r.ended) for r in self.runs)
        return {
            "partitions": len(self.partitions),
            "runs": len(self.runs),
            "runs_succeeded": len(done),
            "backfill_status": self.backfill_status,
            "wall_s": round(wall, 2),
            "partitions_per_hour": round(len(done) / wall * 3600, 1) if wall > 0 else 0.0,
            "events": self.events,
            "events_per_s": round(self.events / wall, 1) if wall > 0 else 0.0,
            "events_per_compute_s": round(
                self.events / sum(r.steps.get(EVENTS_STEP, 0.0) for r in done), 1
            )
            if done and any(r.steps.get(EVENTS_STEP) for r in done)
            else 0.0,
            "daemon": {
                "submission_to_first_run_s": round(self.first_created - self.submitted, 2),
                "submission_to_last_run_created_s": round(
                    max(r.created for r in self.runs) - self.submitted, 2
                ),
                "queued_to_dequeued_s": _spread([r.queue_s for r in self.runs]),
                "dequeued_to_started_s": _spread([r.launch_s for r in self.runs]),
            },
            "compute": {
                "steps_total_s": round(sum(r.compute_s for r in done), 2),
                "per_step_median_s": {
                    k: round(statistics.median(r.steps[k] for r in done if k in r.steps), 2)
                    for k in step_names
                },
                "run_worker_overhead_s": _spread([r.worker_overhead_s for r in done]),
            },
            "overlap": {
                "run_seconds": round(busy, 2),
                "mean_concurrent_runs": round(busy / wall, 2) if wall > 0 else 0.0,
                # a run holds its queue slot from dequeue (launch) to its end
                "mean_queue_slots_held": round(slots / wall, 2) if wall > 0 else 0.0,
                "peak_queue_slots_held": peak_slots_held(self.runs),
            },
        }

    def to_text(self) -> str:
        s = self.summary()
        d, c = s["daemon"], s["compute"]
        lines = [
            f"backfill {self.backfill_id} ({s['backfill_status']}): {s['runs_succeeded']}/"
            f"{s['partitions']} partitions of world {self.world!r}, "
            f"max_concurrent_runs={self.max_concurrent_runs}",
            f"  wall clock (submission -> last run end) {s['wall_s']:.1f} s",
            f"  partitions/hour                          {s['partitions_per_hour']:.1f}",
            f"  events                                   {s['events']:,}",
            f"  events/s aggregate (wall clock)          {s['events_per_s']:,.0f}",
            f"  events/s in the S4 step                  {s['events_per_compute_s']:,.0f}",
            "  where the time went:",
            f"    daemon: submission -> first run created   {d['submission_to_first_run_s']:.1f} s"
            f" (last run created at +{d['submission_to_last_run_created_s']:.1f} s)",
            f"    daemon: run queued -> dequeued            {_fmt(d['queued_to_dequeued_s'])}",
            f"    daemon: dequeued -> run worker started    {_fmt(d['dequeued_to_started_s'])}",
            f"    compute: steps, all runs                  {c['steps_total_s']:.1f} s",
            f"    run worker outside steps                  {_fmt(c['run_worker_overhead_s'])}",
            f"    mean runs executing / holding a slot      "
            f"{s['overlap']['mean_concurrent_runs']} / {s['overlap']['mean_queue_slots_held']}"
            f" (peak {s['overlap']['peak_queue_slots_held']} slots held)",
            "  median step durations: "
            + ", ".join(f"{k} {v:.2f}s" for k, v in c["per_step_median_s"].items()),
            "  runs:",
        ]
        for r in sorted(self.runs, key=lambda r: r.created):
            lines.append(
                f"    {r.partition:<16} {r.status:<8} created +{r.created - self.submitted:5.1f}s"
                f" queue {r.queue_s:5.1f}s launch {r.launch_s:4.1f}s compute {r.compute_s:5.1f}s"
                f" worker {r.worker_overhead_s:4.1f}s events {r.events:,}"
            )
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": self.summary(),
            "server_ready_s": self.server_ready_s,
            "runs": [asdict(r) for r in self.runs],
            "partition_keys": self.partitions,
        }


def _spread(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"total": 0.0, "median": 0.0, "max": 0.0}
    return {
        "total": round(float(sum(values)), 2),
        "median": round(float(statistics.median(values)), 2),
        "max": round(float(max(values)), 2),
    }


def _fmt(spread: Mapping[str, float]) -> str:
    return (
        f"total {spread['total']:.1f} s (median {spread['median']:.1f} s, "
        f"max {spread['max']:.1f} s per run)"
    )


def partition_keys(scenarios: Sequence[str], years: Sequence[int]) -> list[str]:
    """Multi-partition key strings: dimensions in alphabetical order, ``scenario|year``."""
    return [f"{s}|{y}" for y in years for s in scenarios]


def measure_backfill(
    gql: GraphQLClient,
    partitions: Sequence[str],
    world: str,
    max_concurrent_runs: int | None,
    timeout_s: float = 600.0,
) -> BackfillReport:
    """Launch the backfill, wait for it and read the timings back from GraphQL."""
    submitted = time.time()
    backfill_id = launch_backfill(gql, partitions, title="bench_backfill")
    status, finished = wait_for_backfill(gql, backfill_id, timeout_s)
    return BackfillReport(
        partitions=list(partitions),
        max_concurrent_runs=max_concurrent_runs,
        world=world,
        backfill_id=backfill_id,
        backfill_status=status["status"],
        submitted=submitted,
        runs=[run_timing(r) for r in finished],
    )


@contextlib.contextmanager
def dagster_dev_for_benchmark(
    world: str,
    max_concurrent_runs: int,
    dequeue_interval_s: int | None = None,
    workdir: Path | None = None,
) -> Iterator[DagsterDev]:
    with contextlib.ExitStack() as stack:
        base = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bfb-")))
        env = {
            "ENGINE_WORLD": world,
            "ENGINE_STORAGE_ROOT": str(base / "data"),
            "ENGINE_ALERT_LOG": str(base / "alerts.jsonl"),
        }
        server = DagsterDev(
            base / "dagster_home",
            env,
            max_concurrent_runs=max_concurrent_runs,
            dequeue_interval_s=dequeue_interval_s,
        )
        yield stack.enter_context(server)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--world", default="tiny")
    p.add_argument("--years", type=int, nargs="+", default=[2025, 2026])
    p.add_argument("--scenarios", nargs="+", default=["baseline", "stress"])
    p.add_argument("--max-concurrent-runs", type=int, default=2)
    p.add_argument(
        "--dequeue-interval",
        type=int,
        default=None,
        help="run coordinator dequeue interval in seconds (Dagster's default: 5)",
    )
    p.add_argument("--url", default=None, help="drive this running web server instead")
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--json", default=None, help="also write the measurements here")
    args = p.parse_args(argv)
    keys = partition_keys(args.scenarios, args.years)
    if args.url:
        report = measure_backfill(GraphQLClient(args.url), keys, args.world, None, args.timeout)
        report.notes.append(f"existing server {args.url}: world and queue limit as configured")
    else:
        with dagster_dev_for_benchmark(
            args.world, args.max_concurrent_runs, args.dequeue_interval
        ) as server:
            report = measure_backfill(
                server.gql, keys, args.world, args.max_concurrent_runs, args.timeout
            )
            report.server_ready_s = server.ready_s
            report.notes.append(f"dagster dev ready in {server.ready_s:.1f} s")
            if args.dequeue_interval is not None:
                report.notes.append(f"run coordinator dequeue interval {args.dequeue_interval} s")
    print(report.to_text())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    return 0 if len(report.succeeded) == len(keys) else 1


if __name__ == "__main__":
    sys.exit(main())
