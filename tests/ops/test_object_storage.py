"""Storage beyond one machine: the CLI publishes to an S3-compatible server and polars reads
the result back over S3.

The server is moto in server mode on 127.0.0.1 (a real HTTP S3 API, nothing leaves the
machine). The endpoint reaches the engine the two standard ways: the AWS environment
(``AWS_ENDPOINT_URL`` and credentials) and the URI query (``?endpoint_override=...&scheme=
http``). Readers use polars' own object-store client with ``storage_options``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.fs as pafs
import pytest

from benchmarks.bench_backfill import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

BUCKET = "engine-data"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}
CLI = str(Path(sys.executable).with_name("arrival-engine"))


@dataclass
class S3Server:
    endpoint: str  # http://127.0.0.1:PORT
    log: Path | None = None  # the server's output: one line per request (method and path)

    @property
    def host_port(self) -> str:
        return self.endpoint.removeprefix("http://")

    def env(self, with_endpoint: bool = True) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(CREDENTIALS)
        if with_endpoint:
            env["AWS_ENDPOINT_URL"] = self.endpoint
        return env

    def polars_options(self) -> dict[str, str]:
        return {
            "aws_endpoint_url": self.endpoint,
            "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            "aws_region": CREDENTIALS["AWS_REGION"],
            "aws_allow_http": "true",
        }

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region=CREDENTIALS["AWS_REGION"],
            endpoint_override=self.host_port,
            scheme="http",
            allow_bucket_creation=True,
        )


def _root(summary: dict) -> str:
    """The run root as bucket/key: the summary's ``out`` is an ``s3://bucket/key?…`` URI."""
    from urllib.parse import urlsplit

    parts = urlsplit(summary["out"])
    return f"{parts.netloc}{parts.path}"


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> Iterator[S3Server]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto_server.log"
    moto = str(Path(sys.executable).with_name("moto_server"))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [moto, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = S3Server(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"moto_server exited: {log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"{server.endpoint}/moto-api/", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.3)
        server.filesystem().create_dir(BUCKET)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_cli(out: str, env: dict[str, str], start: str, end: str) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [CLI, "run", "--world", "tiny", "--scenario", "baseline", "--start", start,
         "--end", end, "--seed", "42", "--out", out, "--quiet"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    return proc.returncode, json.loads(lines[-1]) if lines else {}, proc.stderr


def dataset_uri(summary: dict, dataset: str, year: int = 2026) -> str:
    # ``out`` is the run root inside the filesystem: bucket/prefix/<fp>/<hash>/seed=42
    return f"s3://{_root(summary)}/{dataset}/scenario=baseline/year={year}"


def test_a_partition_published_to_s3_reads_back_with_polars(s3_server, tmp_path):
    code, summary, stderr = run_cli(
        f"s3://{BUCKET}/runs", s3_server.env(), "2026-01-01", "2027-01-01"
    )
    assert code == 0, stderr
    assert summary["passed"] is True and summary["years"] == [2026]
    assert _root(summary).startswith(f"{BUCKET}/runs/") and summary["out"].startswith("s3://")
    opts = s3_server.polars_options()

    events = pl.scan_parquet(f"{dataset_uri(summary, 'arrival_events')}/*.parquet",
                             storage_options=opts)  # fmt: skip
    assert events.select(pl.len()).collect().item() == summary["events"]
    assert summary["events"] == summary["states"]["s4"]["events"] > 100_000
    counts = (
        pl.scan_parquet(f"{dataset_uri(summary, 'bucket_counts')}/*.parquet", storage_options=opts)
        .select(pl.len().alias("rows"), pl.col("count").sum().alias("events"))
        .collect()
    )
    assert counts["rows"].item() == summary["states"]["s3"]["rows"]
    assert counts["events"].item() == summary["events"]

    # The whole run root as one Hive-partitioned dataset, as a downstream reader sees it.
    every = pl.scan_parquet(
        f"s3://{_root(summary)}/arrival_events/**/*.parquet",
        storage_options=opts,
        hive_partitioning=True,
    )
    by_partition = every.group_by("scenario", "year").agg(pl.len()).collect()
    assert by_partition.rows() == [("baseline", 2026, summary["events"])]

    # Each published partition carries its marker, written last; validation passed.
    fs = s3_server.filesystem()
    events_dir = dataset_uri(summary, "arrival_events").removeprefix("s3://")
    with fs.open_input_stream(f"{events_dir}/_published.json") as fh:
        marker = json.loads(fh.read())
    listed = sorted(
        i.base_name for i in fs.get_file_info(pafs.FileSelector(events_dir)) if i.is_file
    )
    assert sorted([*marker["files"], "_published.json"]) == listed
    validation = dataset_uri(summary, "validation").removeprefix("s3://")
    assert fs.get_file_info(f"{validation}/_passed.flag").is_file
    with fs.open_input_stream(f"{validation}/report.json") as fh:
        assert json.loads(fh.read())["passed"] is True

    # Same bytes as a local run: the storage never changes the output.
    code, local, stderr = run_cli(str(tmp_path / "local"), s3_server.env(), "2026-01-01",
                                  "2027-01-01")  # fmt: skip
    assert code == 0, stderr
    local_dir = Path(local["out"]) / "arrival_events/scenario=baseline/year=2026"
    for name in marker["files"]:
        with fs.open_input_stream(f"{events_dir}/{name}") as fh:
            assert fh.read() == (local_dir / name).read_bytes(), name


def test_endpoint_in_the_uri_and_republishing_over_a_stale_partition(s3_server):
    """No AWS_ENDPOINT_URL: the endpoint comes from the URI's query. A re-run replaces the
    partition: an object left by an earlier publish is removed, the marker rewritten."""
    out = f"s3://{BUCKET}/uri-config?endpoint_override={s3_server.host_port}&scheme=http"
    env = s3_server.env(with_endpoint=False)
    code, summary, stderr = run_cli(out, env, "2026-03-02", "2026-03-09")
    assert code == 0, stderr
    assert summary["passed"] is True

    fs = s3_server.filesystem()
    events_dir = dataset_uri(summary, "arrival_events").removeprefix("s3://")
    with fs.open_output_stream(f"{events_dir}/part-99999.parquet") as fh:
        fh.write(b"left over by an older publish")
    first = {
        i.base_name: i.size for i in fs.get_file_info(pafs.FileSelector(events_dir)) if i.is_file
    }

    code, again, stderr = run_cli(out, env, "2026-03-02", "2026-03-09")
    assert code == 0, stderr
    assert again["events"] == summary["events"]
    second = {
        i.base_name: i.size for i in fs.get_file_info(pafs.FileSelector(events_dir)) if i.is_file
    }
    assert "part-99999.parquet" not in second
    assert second == {k: v for k, v in first.items() if k != "part-99999.parquet"}
    with fs.open_input_stream(f"{events_dir}/_published.json") as fh:
        marker = json.loads(fh.read())
    assert sorted(marker["files"]) == sorted(k for k in second if k != "_published.json")
    assert all(marker["bytes"][k] == second[k] for k in marker["files"])

    read = pl.scan_parquet(f"{dataset_uri(summary, 'arrival_events')}/*.parquet",
                           storage_options=s3_server.polars_options())  # fmt: skip
    assert read.select(pl.len()).collect().item() == summary["events"]


def test_a_missing_bucket_is_refused_before_any_state_runs(s3_server, tmp_path):
    started = time.monotonic()
    code, summary, stderr = run_cli("s3://no-such-bucket/x", s3_server.env(), "2026-01-01",
                                    "2026-01-08")  # fmt: skip
    assert code == 2
    assert summary["error"]["code"] == "STORAGE_NOT_WRITABLE"
    assert "no-such-bucket" in summary["error"]["message"]
    assert "testing" not in stderr  # no credentials in the error
    assert time.monotonic() - started < 60


def test_the_reading_api_reads_an_s3_root(s3_server, monkeypatch):
    """engine_core.read_arrivals over s3://, the endpoint in the URI query and the
    credentials from the environment; the validated partition only."""
    import engine_core
    from engine_core.errors import EngineError

    out = f"s3://{BUCKET}/reader?endpoint_override={s3_server.host_port}&scheme=http"
    env = s3_server.env(with_endpoint=False)
    code, summary, stderr = run_cli(out, env, "2026-05-04", "2026-05-11")
    assert code == 0, stderr
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    events = engine_core.read_arrivals(out, world="tiny", scenario="baseline", years=[2026])
    df = events.select("arrival_id", "ts_utc").collect()
    assert df.height == summary["events"] and df["arrival_id"].n_unique() == df.height
    counts = engine_core.read_bucket_counts(out, world="tiny", scenario="baseline",
                                            columns=["count"]).collect()
    assert counts["count"].sum() == summary["events"]
    files = engine_core.validated_files(out, world="tiny", scenario="baseline")
    assert files and all(f.startswith(f"s3://{BUCKET}/reader/") for f in files)
    # withdraw the flag: the partition is refused, by name
    fs = s3_server.filesystem()
    fs.delete_file(f"{dataset_uri(summary, 'validation').removeprefix('s3://')}/_passed.flag")
    with pytest.raises(EngineError) as err:
        engine_core.read_arrivals(out, world="tiny", scenario="baseline")
    assert err.value.code == "PARTITION_NOT_VALIDATED" and "year=2026" in err.value.message
    unchecked = engine_core.read_arrivals(out, world="tiny", scenario="baseline",
                                          require_passed=False).select(pl.len()).collect()
    assert unchecked.item() == summary["events"]
