"""The PostgreSQL instance (deploy/dagster.postgres.yaml) as a multi-host deployment runs it.

A throwaway PostgreSQL on 127.0.0.1 holds the instance. The code location is its own gRPC
server (`dagster api grpc`, as the Helm chart's user-code deployment), next to a
`dagster-daemon` and a `dagster-webserver` sharing one instance directory; a second
`dagster-webserver` with an instance directory of its own (the same dagster.yaml, nothing
else) plays the second host. A backfill of 2 scenarios x 2 years of the tiny world is launched
through GraphQL on the first web server, queued and run by the daemon; then, from the second
web server only: every run succeeded, every asset is materialised for every partition and
every asset check passed for every partition; from the database: the runs and the check
evaluations are rows there. A run that fails because of bad input fails once with its code
and is marked by the run-retry logic as not to be retried.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from benchmarks.bench_backfill import (
    ENGINE_ASSETS,
    LAUNCHER,
    LOCATION,
    GraphQLClient,
    GraphQLError,
    launch_backfill,
    location_loaded,
    partition_keys,
    run_by_id,
    run_partition,
    runs,
    wait_for_backfill,
    wait_for_run,
)
from benchmarks.bench_backfill import free_port as _free_port

from .postgres_server import PostgresServer, install_postgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
INSTANCE_FILE = REPO / "deploy" / "dagster.postgres.yaml"
YEARS = (2025, 2026)
SCENARIOS = ("baseline", "stress")
BIN = Path(sys.executable).parent

DAEMONS_QUERY = """
query { instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""
CHECK_EXECUTIONS = """
query Checks($asset: AssetKeyInput!, $check: String!) {
  assetCheckExecutions(assetKey: $asset, checkName: $check, limit: 50) {
    runId status partition evaluation { success partition }
  }
}
"""
STEP_ATTEMPTS = """
query Attempts($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { stepStats { stepKey status attempts { startTime } } }
  }
}
"""


class DagsterProcess:
    """One Dagster command (web server, daemon, code server) in a session of its own, stopped
    by SIGINT to its PID, then SIGKILL to its process group."""

    def __init__(self, name: str, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.name, self.argv, self.env, self.log = name, argv, dict(env), log
        self.process: subprocess.Popen | None = None

    def start(self) -> DagsterProcess:
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER, *self.argv],
                cwd=str(REPO), env=self.env, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    def alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited:\n{self.tail()}")

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is None:
            return
        pid = self.process.pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def _wait(what: str, ready, processes: list[DagsterProcess], timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        for p in processes:
            p.alive()
        try:
            if ready():
                return
        except (OSError, GraphQLError):
            pass
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.tail()}" for p in processes)
            raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s\n{tails}")
        time.sleep(0.5)


def _webserver_up(gql: GraphQLClient) -> bool:
    with urllib.request.urlopen(f"{gql.url}/server_info", timeout=5) as response:
        return response.status == 200 and location_loaded(gql)


def _daemons(gql: GraphQLClient) -> dict[str, dict]:
    statuses = gql(DAEMONS_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
    return {s["daemonType"]: s for s in statuses}


class Deployment:
    def __init__(self, pg: PostgresServer, base: Path) -> None:
        self.pg, self.base = pg, base
        self.storage_root = base / "data"
        self.processes: list[DagsterProcess] = []
        self.grpc_port = _free_port()
        self.workspace = base / "workspace.yaml"
        self.workspace.write_text(
            "load_from:\n  - grpc_server:\n"
            f"      host: 127.0.0.1\n      port: {self.grpc_port}\n"
            f"      location_name: {LOCATION}\n"
        )
        self.web_a = GraphQLClient(f"http://127.0.0.1:{_free_port()}", timeout_s=60)
        self.web_b = GraphQLClient(f"http://127.0.0.1:{_free_port()}", timeout_s=60)

    def home(self, name: str) -> Path:
        """An instance directory holding only the shipped PostgreSQL dagster.yaml."""
        home = self.base / name
        home.mkdir()
        (home / "dagster.yaml").write_text(INSTANCE_FILE.read_text())
        return home

    def env(self, home: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "DAGSTER_"))}
        env.update(self.pg.env())
        env.update({
            "DAGSTER_HOME": str(home),
            "ENGINE_WORLD": "tiny",
            "ENGINE_SEED": "42",
            "ENGINE_STORAGE_ROOT": str(self.storage_root),
            "ENGINE_ALERT_LOG": str(self.base / "alerts.jsonl"),
        })  # fmt: skip
        return env

    def spawn(self, name: str, argv: list[str], home: Path) -> DagsterProcess:
        proc = DagsterProcess(name, argv, self.env(home), self.base / f"{name}.log").start()
        self.processes.append(proc)
        return proc

    def start(self) -> None:
        host_a, host_b = self.home("host_a"), self.home("host_b")
        self.spawn("code-server", [
            str(BIN / "dagster"), "api", "grpc", "-m", "engine_assets.definitions", "-a", "defs",
            "-h", "127.0.0.1", "-p", str(self.grpc_port), "--location-name", LOCATION,
        ], host_a)  # fmt: skip
        web = [str(BIN / "dagster-webserver"), "-w", str(self.workspace), "-h", "127.0.0.1"]
        self.spawn("webserver-a", [*web, "-p", self.web_a.url.rsplit(":", 1)[1]], host_a)
        self.spawn("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.workspace)],
                   host_a)  # fmt: skip
        self.spawn("webserver-b", [*web, "-p", self.web_b.url.rsplit(":", 1)[1]], host_b)
        _wait("web server a", lambda: _webserver_up(self.web_a), self.processes)
        _wait("web server b", lambda: _webserver_up(self.web_b), self.processes)

        def daemons_healthy() -> bool:
            statuses = _daemons(self.web_b)
            return all(s["healthy"] for s in statuses.values() if s["required"])

        _wait("daemon", daemons_healthy, self.processes, timeout_s=120)

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    reason = install_postgres()
    if reason is not None:
        pytest.skip(f"the PostgreSQL instance test needs PostgreSQL: {reason}")
    with PostgresServer() as pg:
        deploy = Deployment(pg, tmp_path_factory.mktemp("pg-instance"))
        try:
            deploy.start()
            yield deploy
        finally:
            deploy.stop()
        for proc in deploy.processes:
            assert proc.process is not None and proc.process.poll() is not None, proc.name


def _check_keys() -> list[tuple[str, str]]:
    from engine_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    # the backfill covers the engine's chain; the fidelity report is not in it
    return sorted((k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys
                  if k.asset_key.to_user_string() in ENGINE_ASSETS)


def test_backfill_on_postgres_seen_from_a_second_web_server(deployment):
    keys = partition_keys(SCENARIOS, YEARS)
    daemons = _daemons(deployment.web_b)
    # run_retries in the shipped file turns on the daemon that re-launches failed runs (the
    # event log consumer), run_monitoring the one that fails runs whose worker is gone.
    for daemon in ("EVENT_LOG_CONSUMER", "MONITORING"):
        assert daemons[daemon]["required"] is True and daemons[daemon]["healthy"] is True
    assert daemons["BACKFILL"]["healthy"] and daemons["QUEUED_RUN_COORDINATOR"]["healthy"]

    backfill_id = launch_backfill(deployment.web_a, keys, title="postgres instance")
    submitted = time.monotonic()
    status, _ = wait_for_backfill(deployment.web_a, backfill_id, timeout_s=420)
    print(f"backfill of {len(keys)} partitions on PostgreSQL: {time.monotonic() - submitted:.1f}s")
    assert status["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), status

    # Everything below is read through the second web server (another instance directory).
    seen = runs(deployment.web_b, {"dagster/backfill": backfill_id})
    assert len(seen) == len(keys), "one run per partition, visible from the second host"
    assert all(r["status"] == "SUCCESS" for r in seen), [(r["runId"], r["status"]) for r in seen]
    assert {r["runId"] for r in seen} == {
        r["runId"] for r in runs(deployment.web_a, {"dagster/backfill": backfill_id})
    }
    materialised = {
        (m["assetKey"]["path"][-1], m["partition"])
        for r in seen
        for step in r["stepStats"]
        for m in step["materializations"]
    }
    assert materialised == {(a, k) for a in ENGINE_ASSETS for k in keys}

    # A backfill run is a one-partition range: its check evaluations carry no partition key
    # (the run's tags say which partition they judged), and the planned execution recorded
    # with the key at run start stays SKIPPED beside the evaluated one.
    partition_of_run = {r["runId"]: run_partition({t["key"]: t["value"] for t in r["tags"]})
                        for r in seen}  # fmt: skip
    assert sorted(partition_of_run.values()) == sorted(keys)
    run_ids = set(partition_of_run)
    check_keys = _check_keys()
    assert len(check_keys) >= 30
    for asset, check in check_keys:
        result = deployment.web_b(CHECK_EXECUTIONS, {"asset": {"path": [asset]}, "check": check})
        executions = [
            e for e in result["assetCheckExecutions"]
            if e["runId"] in run_ids and e["evaluation"] is not None
        ]  # fmt: skip
        by_partition = {partition_of_run[e["runId"]]: e for e in executions}
        assert len(by_partition) == len(executions), (asset, check, executions)
        assert sorted(by_partition) == sorted(keys), (asset, check, executions)
        for key, execution in by_partition.items():
            assert execution["status"] == "SUCCEEDED", (asset, check, key, execution)
            assert execution["evaluation"]["success"] is True, (asset, check, key)

    # The history lives in PostgreSQL, not in either instance directory.
    rows = deployment.pg.sql(
        "SELECT run_id, status FROM runs WHERE run_id IN ("
        + ",".join(f"'{r}'" for r in sorted(run_ids)) + ")"
    )  # fmt: skip
    assert sorted(rows) == sorted([r, "SUCCESS"] for r in run_ids)
    evaluations = deployment.pg.sql(
        "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION'"
    )
    assert int(evaluations[0][0]) >= len(check_keys) * len(keys)
    for home in ("host_a", "host_b"):
        assert not list((deployment.base / home).glob("**/*.db")), "no SQLite storage"

    # Consumers' gate: every partition passed validation.
    flags = sorted(deployment.storage_root.glob("*/*/seed=42/validation/*/*/_passed.flag"))
    assert len(flags) == len(keys)


def test_bad_input_fails_once_and_is_not_run_retried(deployment):
    """A run failing on bad input: one attempt of the failing step, the failure names its
    code, and the run-retry logic marks it as not to be retried (a step failure)."""
    # The world comes from the run config: a directory that does not exist.
    params = {
        "selector": {
            "repositoryLocationName": LOCATION,
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": ["world"]}],
        },
        "runConfigData": {"resources": {"engine": {"config": {"world": "/no/such/world"}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "baseline|2026"}]},
    }
    launched = deployment.web_a(LAUNCH_RUN_CONFIG, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    bad = launched["run"]["runId"]
    run = wait_for_run(deployment.web_b, bad, timeout_s=180)
    assert run["status"] == "FAILURE"
    deadline = time.monotonic() + 60
    while True:
        tags = {t["key"]: t["value"] for t in run_by_id(deployment.web_b, bad)["tags"]}
        if "dagster/will_retry" in tags or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert tags.get("dagster/will_retry") == "false", tags
    attempts = deployment.web_b(STEP_ATTEMPTS, {"runId": bad})["runOrError"]["stepStats"]
    world_step = next(s for s in attempts if s["stepKey"] == "world")
    assert world_step["status"] == "FAILURE" and len(world_step["attempts"]) == 1
    children = runs(deployment.web_b, {"dagster/parent_run_id": bad})
    assert children == [], "a failed input must not be run again"
    messages = deployment.pg.sql(
        "SELECT count(*) FROM event_logs WHERE run_id = '" + bad + "' AND "
        "event LIKE '%WORLD_NOT_FOUND%'"
    )
    assert int(messages[0][0]) >= 1, "the failure names its code"


LAUNCH_RUN_CONFIG = """
mutation LaunchRun($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
