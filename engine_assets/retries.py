"""Step retries: transient object-store failures are retried, nothing else.

Every engine asset carries ``ENGINE_RETRY_POLICY``. Dagster's retry policy retries any
exception a step raises except a ``Failure(allow_retries=False)``, so every failure of an
engine step goes through ``step_failure``, which allows retries only for what
``engine_core.io.transient`` calls transient (an object store's 5xx, throttling, a dropped
connection). Bad input, a failed validation rule, a missing bucket and defects fail once with
their code. A failed *blocking check* is not an exception of the step and is never retried by
Dagster either.

Run-level retries (``run_retries`` in dagster.yaml) cover the other transient failure, a run
worker that died (a killed pod, a lost node); they are configured with
``retry_on_asset_or_op_failure: false`` so a run that failed because a step failed is not run
again (docs/operations.md, "Retries").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg

from engine_core.errors import EngineError
from engine_core.io.transient import STORAGE_TRANSIENT, is_transient, is_transient_message

# 3 more attempts, 1 s, 3 s and 7 s after the failures (Dagster's exponential backoff,
# (2^n - 1) x delay, +/- 1 s jitter). Each failed request has already been tried 3 times by the
# S3 client; a store still failing after this is down, and the step fails with its code
# within ~11 s plus the attempts' own time instead of holding a run slot.
ENGINE_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=1, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)
INTERNAL_ERROR = "INTERNAL_ERROR"


def step_failure(exc: BaseException) -> dg.Failure:
    """``exc`` as the failure of a step: its code, table, column and key in the metadata,
    retries allowed only when it is transient."""
    transient = is_transient(exc)
    if isinstance(exc, EngineError):
        fields = {k: v for k, v in exc.to_dict().items() if v is not None}
        description = str(exc)
    else:
        code = STORAGE_TRANSIENT if transient else INTERNAL_ERROR
        message = f"{type(exc).__name__}: {exc}"
        fields = {"code": code, "message": message}
        description = f"{code}: {message}"
    fields["transient"] = transient
    if transient:
        description += " (transient: the step is retried by its retry policy)"
    return dg.Failure(description=description, metadata=fields, allow_retries=transient)


@contextlib.contextmanager
def classified_failures() -> Iterator[None]:
    """Turn every exception of the block into a ``step_failure`` (a Failure passes as is)."""
    try:
        yield
    except dg.Failure:
        raise
    except Exception as exc:
        raise step_failure(exc) from exc


def transient_rule_errors(rules: Iterable[Any]) -> list[str]:
    """``code: error`` of every failed rule that could not be evaluated because of a transient
    storage error (its verdict says nothing about the data). ``rules`` are RuleResults or
    their dicts in a report."""
    found = []
    for rule in rules:
        as_dict = rule if isinstance(rule, dict) else {
            "code": rule.code, "passed": rule.passed, "figures": rule.figures
        }  # fmt: skip
        error = (as_dict.get("figures") or {}).get("error")
        if not as_dict.get("passed", True) and is_transient_message(error):
            found.append(f"{as_dict.get('code')}: {error}")
    return found


def transient_rule_failure(errors: list[str]) -> dg.Failure:
    """The retryable failure of a step whose rules could not read the data."""
    return dg.Failure(
        description=f"{STORAGE_TRANSIENT}: {len(errors)} rule(s) could not read the published "
        f"data (transient: the step is retried by its retry policy); first: {errors[0]}",
        metadata={"code": STORAGE_TRANSIENT, "rules": errors[:5], "transient": True},
        allow_retries=True,
    )
