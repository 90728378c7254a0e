"""Which failures are transient (engine_core/io/transient.py) and how an engine step turns
each into a Dagster failure that its retry policy may or may not retry
(engine_assets/retries.py). The messages are the ones pyarrow's S3 client raises, as seen
through tests/ops/fault_proxy.py."""

from __future__ import annotations

import dagster as dg
import pytest

from engine_assets.retries import (
    INTERNAL_ERROR,
    classified_failures,
    step_failure,
    transient_rule_errors,
)
from engine_core.checks.verdicts import not_evaluated
from engine_core.errors import EngineError
from engine_core.io.transient import STORAGE_TRANSIENT, is_transient, is_transient_message

TRANSIENT = [
    "When uploading part for key 'y' in bucket 'b': AWS Error INTERNAL_FAILURE during "
    "UploadPart operation: We encountered an internal error. Please try again.",
    "When getting information for key 'x' in bucket 'b': AWS Error UNKNOWN (HTTP status 500) "
    "during HeadObject operation: No response body.",
    "AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 52, Server returned "
    "nothing (no headers, no data); Details: Empty reply from server",
    "AWS Error SLOW_DOWN during PutObject operation: Please reduce your request rate.",
    "AWS Error UNKNOWN (HTTP status 503) during PutObject operation: Service Unavailable",
    "AWS Error UNKNOWN (HTTP status 429) during ListObjectsV2 operation: Too Many Requests",
]
PERMANENT = [
    "When creating bucket 'b': AWS Error UNKNOWN (HTTP status 400) during CreateBucket "
    "operation: InvalidBucketName",
    "When reading information for key 'k' in bucket 'b': AWS Error ACCESS_DENIED during "
    "HeadObject operation: Access Denied",
    "AWS Error NO_SUCH_BUCKET during PutObject operation: The specified bucket does not exist",
    "AWS Error UNKNOWN (HTTP status 404) during HeadObject operation",
    "[Errno 28] No space left on device",
    "",
]


def _wrapped(code: str, cause: BaseException) -> EngineError:
    try:
        raise EngineError(code, f"could not write: {cause}") from cause
    except EngineError as err:
        return err


@pytest.mark.parametrize("text", TRANSIENT)
def test_object_store_server_errors_and_dropped_connections_are_transient(text):
    assert is_transient_message(text)
    assert is_transient(OSError(text))
    assert is_transient(_wrapped("STORAGE_WRITE_FAILED", OSError(text)))
    assert is_transient(_wrapped("STORAGE_NOT_WRITABLE", OSError(text)))


@pytest.mark.parametrize("text", PERMANENT)
def test_client_errors_and_local_disk_errors_are_permanent(text):
    assert not is_transient_message(text)
    assert not is_transient(OSError(28, text) if "Errno" in text else OSError(text))
    assert not is_transient(_wrapped("STORAGE_WRITE_FAILED", OSError(text)))


def test_input_and_validation_codes_are_never_transient_whatever_their_cause():
    cause = OSError(TRANSIENT[0])
    for code in ("WORLD_NOT_FOUND", "POLICY_INVALID", "UPSTREAM_MISSING", "DOMAIN_ALIGN_FAILED"):
        assert not is_transient(_wrapped(code, cause)), code
    assert not is_transient(ValueError("bad value"))
    assert is_transient(EngineError(STORAGE_TRANSIENT, "read failed"))


def test_step_failure_allows_retries_only_for_transient_errors():
    transient = step_failure(_wrapped("STORAGE_WRITE_FAILED", OSError(TRANSIENT[2])))
    assert transient.allow_retries is True
    assert transient.metadata["code"].value == "STORAGE_WRITE_FAILED"
    assert transient.metadata["transient"].value is True

    bad_input = step_failure(EngineError("WORLD_NOT_FOUND", "no such world", key="/x"))
    assert bad_input.allow_retries is False
    assert bad_input.metadata["code"].value == "WORLD_NOT_FOUND"
    assert bad_input.description.startswith("WORLD_NOT_FOUND: ")

    raw_read = step_failure(OSError(TRANSIENT[1]))
    assert raw_read.allow_retries is True
    assert raw_read.metadata["code"].value == STORAGE_TRANSIENT

    defect = step_failure(KeyError("column"))
    assert defect.allow_retries is False
    assert defect.metadata["code"].value == INTERNAL_ERROR


def test_classified_failures_wraps_everything_but_a_failure():
    with pytest.raises(dg.Failure) as caught, classified_failures():
        raise OSError(TRANSIENT[0])
    assert caught.value.allow_retries is True
    original = dg.Failure("as is", allow_retries=False)
    with pytest.raises(dg.Failure) as caught, classified_failures():
        raise original
    assert caught.value is original


def test_a_rule_that_could_not_read_the_data_is_no_verdict():
    unreadable = not_evaluated("EVENTS_SCHEMA", OSError(TRANSIENT[2]))
    genuine = not_evaluated("EVENTS_SORTED", ValueError("rows out of order"))
    assert transient_rule_errors([unreadable, genuine]) == [
        f"EVENTS_SCHEMA: OSError: {TRANSIENT[2]}"
    ]
    # the same, from the dicts of a report.json
    as_dicts = [{"code": r.code, "passed": r.passed, "figures": r.figures}
                for r in (unreadable, genuine)]  # fmt: skip
    assert transient_rule_errors(as_dicts) == transient_rule_errors([unreadable, genuine])
