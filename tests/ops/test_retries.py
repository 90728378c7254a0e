"""Retries under a faulty object store: transient failures are retried, nothing else, and a
partition is never left partial or flagged over missing files.

The moto S3 server on 127.0.0.1 sits behind a loopback fault proxy (fault_proxy.py) that
answers a seeded share of requests with HTTP 500 or drops the connection. A clean run of the
tiny world's baseline|2026 (straight to the server) is the reference. Then, through the proxy:

- random faults plus a burst that outlasts the S3 client's own retries on the S4 upload: the
  partition is published and identical, object for object, to the clean run, the S4 step having
  been retried by its retry policy; or, should the faults outlast every retry, it failed with a
  storage code and nothing is flagged or partially published;
- a permanent outage of one dataset's uploads: the step is attempted 1 + max_retries times and
  fails with STORAGE_WRITE_FAILED; nothing downstream ran, the dataset has no marker, no flag;
- a failed validation rule (a threshold no data can meet) fails S5 once: no retry.

Request counts are bounded by the proxy's budget and each run by the test's timeout.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow.fs as pafs
import pytest
import yaml

from engine_assets.definitions import ENGINE_ASSETS
from engine_assets.resources import AlertSettings, EngineSettings, EngineStorage
from engine_assets.retries import ENGINE_RETRY_POLICY

from .fault_proxy import FaultProxy
from .test_object_storage import BUCKET, CREDENTIALS, S3Server, s3_server  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PARTITION = dg.MultiPartitionKey({"year": "2026", "scenario": "baseline"})
MAX_REQUESTS = 5_000  # a tiny-world partition takes ~500 requests
CLIENT_ATTEMPTS = 31  # pyarrow's S3 client (from_uri defaults) tries a failing request ~31 times
STORAGE_CODES = {"STORAGE_WRITE_FAILED", "STORAGE_NOT_WRITABLE", "STORAGE_TRANSIENT"}


@pytest.fixture(scope="module", autouse=True)
def aws_environment() -> Iterator[None]:
    """The run's S3 client reads credentials from the environment; the endpoint is in the URI."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        patch.delenv("AWS_ENDPOINT_URL", raising=False)
        yield


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:  # noqa: F811
    with FaultProxy(s3_server.endpoint, seed=20261207, max_requests=MAX_REQUESTS) as p:
        yield p


def _materialize(root: str, tmp_path, policy_path: str | None = None):
    resources = {
        "storage": EngineStorage(root=root),
        "engine": EngineSettings(world="tiny", seed=42, policy_path=policy_path),
        "alerts": AlertSettings(log_path=str(tmp_path / "alerts.jsonl")),
    }
    with dg.instance_for_test() as instance:
        return dg.materialize(
            ENGINE_ASSETS, partition_key=PARTITION, resources=resources, instance=instance,
            raise_on_error=False,
        )  # fmt: skip


def _uri(prefix: str, endpoint: str) -> str:
    return f"s3://{BUCKET}/{prefix}?endpoint_override={endpoint}&scheme=http"


def _objects(server: S3Server, prefix: str) -> dict[str, bytes]:
    fs = server.filesystem()
    base = f"{BUCKET}/{prefix}/"
    infos = fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True))
    out = {}
    for info in infos:
        if info.is_file:
            with fs.open_input_stream(info.path) as fh:
                out[info.path.removeprefix(base)] = fh.read()
    return out


def _datasets(objects: dict[str, bytes]) -> dict[str, bytes]:
    """Everything but the verdict memos of the checks (``_verdicts/``) and the fidelity
    report's event tallies (``_fidelity/``), both outside every dataset, which record the
    files' modification times and so differ from run to run by design."""
    return {k: v for k, v in objects.items()
            if not k.startswith(("_verdicts/", "_fidelity/"))}


def _digests(objects: dict[str, bytes]) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest() for k, v in objects.items()}


def _attempts(result, step: str) -> int:
    retries = [
        e for e in result.all_events
        if e.step_key == step and e.event_type_value == "STEP_UP_FOR_RETRY"
    ]  # fmt: skip
    return 1 + len(retries)


def _failure_codes(result) -> dict[str, str]:
    codes = {}
    for event in result.get_step_failure_events():
        data = event.step_failure_data.user_failure_data
        code = data.metadata.get("code") if data is not None else None
        codes[event.step_key] = getattr(code, "value", code)
    return codes


def assert_never_partial(objects: dict[str, bytes], clean: dict[str, bytes]) -> None:
    """Every dataset with a marker holds exactly the files its marker lists, each identical to
    the clean run's; a _passed.flag only where every dataset of the partition is so published."""
    marked = {k.rsplit("/", 1)[0] for k in objects if k.endswith("/_published.json")}
    for directory in marked:
        marker = json.loads(objects[f"{directory}/_published.json"])
        for name in marker["files"]:
            key = f"{directory}/{name}"
            assert key in objects, f"{key} listed by the marker is missing"
            assert len(objects[key]) == marker["bytes"][name]
            assert objects[key] == clean[key], f"{key} differs from the clean run"
    flags = [k for k in objects if k.endswith("/_passed.flag")]
    if flags:
        clean_marked = {k.rsplit("/", 1)[0] for k in clean if k.endswith("/_published.json")}
        assert marked == clean_marked, "a PASS flag over a partition missing datasets"


@pytest.fixture(scope="module")
def clean(s3_server, tmp_path_factory) -> dict[str, bytes]:  # noqa: F811
    result = _materialize(_uri("clean", s3_server.host_port), tmp_path_factory.mktemp("clean"))
    assert result.success, _failure_codes(result)
    objects = _objects(s3_server, "clean")
    assert any(k.endswith("/validation/scenario=baseline/year=2026/_passed.flag") for k in objects)
    return objects


def test_transient_faults_are_retried_and_the_partition_is_identical(
    clean, s3_server, proxy, tmp_path  # noqa: F811
):
    proxy.set_rates(error_rate=0.08, drop_rate=0.08)
    # More consecutive failures than the S3 client's own attempts at one request (~31 over
    # ~6 s, measured through this proxy): the S4 upload fails, the step's retry policy runs it
    # again, and that attempt's upload gets through after the burst's last failures.
    proxy.fail_next("PUT", "/arrival_events/", CLIENT_ATTEMPTS + 8, kind="error")
    result = _materialize(_uri("faulty", proxy.host_port), tmp_path)
    objects = _objects(s3_server, "faulty")
    print(f"\nproxy: {dict(proxy.counts)} {dict(proxy.faults_by_method)}")

    assert proxy.counts["over_budget"] == 0 and proxy.counts["requests"] < MAX_REQUESTS
    assert proxy.faults >= 20, "the proxy must actually have failed requests"
    assert_never_partial(objects, clean)
    if result.success:
        assert _digests(_datasets(objects)) == _digests(_datasets(clean)), (
            "published partition differs from the clean run"
        )
        assert _attempts(result, "s4_arrival_events") >= 2, "the forced burst was not retried"
    else:  # faults outlasted every retry: a clear storage code, nothing flagged
        codes = _failure_codes(result)
        assert set(codes.values()) <= STORAGE_CODES, codes
        assert not [k for k in objects if k.endswith("/_passed.flag")]


def test_a_permanent_outage_fails_after_the_retries_with_its_code(
    clean, s3_server, proxy, tmp_path  # noqa: F811
):
    proxy.fail_next("PUT", "/bucket_counts/", 10**6, kind="error")
    proxy.fail_next("POST", "/bucket_counts/", 10**6, kind="error")
    result = _materialize(_uri("outage", proxy.host_port), tmp_path)
    objects = _objects(s3_server, "outage")

    assert not result.success
    assert proxy.counts["over_budget"] == 0
    assert _attempts(result, "s3_bucket_counts") == 1 + ENGINE_RETRY_POLICY.max_retries
    assert _failure_codes(result) == {"s3_bucket_counts": "STORAGE_WRITE_FAILED"}
    steps_done = {e.step_key for e in result.get_step_success_events()}
    assert "s4_arrival_events" not in steps_done and "s5_validation_report" not in steps_done
    assert not [k for k in objects if "/bucket_counts/" in k and k.endswith("_published.json")]
    assert not [k for k in objects if k.endswith("/_passed.flag")]
    assert_never_partial(objects, clean)


def test_a_failed_validation_is_not_retried(clean, s3_server, tmp_path):  # noqa: F811
    policy = yaml.safe_load((REPO / "configs" / "policy.yaml").read_text())
    policy["validation"]["uniformity_z_max"] = 1e-9  # no data meets it
    policy_path = tmp_path / "strict.yaml"
    policy_path.write_text(yaml.safe_dump(policy))
    result = _materialize(_uri("strict", s3_server.host_port), tmp_path, str(policy_path))

    assert not result.success
    assert _attempts(result, "s5_validation_report") == 1
    assert all(_attempts(result, s) == 1 for s in {e.step_key for e in result.all_events} if s)
    failure = next(e for e in result.get_step_failure_events())
    assert failure.step_key == "s5_validation_report"
    assert "EVENTS_UNIFORMITY" in failure.step_failure_data.user_failure_data.description
    objects = _objects(s3_server, "strict")
    assert not [k for k in objects if k.endswith("/_passed.flag")]
