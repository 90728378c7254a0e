"""S5 output: the validation report of one year partition.

Published atomically under ``validation/scenario=<id>/year=<yyyy>/``:

- ``report.json``: the verdict, the run identity, the totals the checked datasets were created
  with, and every rule of the catalogue with pass/fail, blocking flag, figures and examples;
- ``issues.parquet`` (``schemas.VALIDATION_ISSUES``): one row per example of a failed rule
  (one row without a key when the rule gave none);
- ``_passed.flag``: written **only when every rule passed**, blocking and non-blocking alike.
  The statistical (non-blocking) thresholds are wide (|z| ≤ 6, about a one-in-10⁸ event for a
  normal statistic), so such a failure is not noise; consumers that gate on the flag should not
  read a partition whose traffic is not what the model says. ``blocking_passed`` in the report
  tells the two kinds of failure apart.

The files hold no clock time, host or path, so re-validating the same partition rewrites the
same bytes. Because the directory is replaced as a whole, a failing re-validation also removes
an earlier ``_passed.flag``.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine_core import schemas
from engine_core.checks.catalogue import RULES
from engine_core.checks.verdicts import RuleResult, not_evaluated, plain
from engine_core.io import publish_dir
from engine_core.io.store import PASSED_FLAG

REPORT_VERSION = 1

# the dataset each rule judges (issues.parquet's ``dataset`` column)
DATASET_OF_STATE = {
    "world": "world",
    "s2": "latent_intensity",
    "s3": "bucket_counts",
    "s4": "arrival_events",
}


def dataset_of(rule: RuleResult) -> str:
    if rule.state == "s1":
        return "time_grid" if rule.code.startswith("GRID_") else "grouping"
    return DATASET_OF_STATE.get(rule.state, rule.state)


def with_every_rule(results: list[RuleResult]) -> list[RuleResult]:
    """The catalogue's rules in order; a rule without a verdict fails (never silently passes)."""
    by_code: dict[str, RuleResult] = {}
    for r in results:
        by_code.setdefault(r.code, r)
    return [
        by_code.get(spec.code) or not_evaluated(spec.code, "the rule was not evaluated")
        for spec in RULES
    ]


def _created_from(ctx, store, year: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dataset in ("bucket_counts", "arrival_events"):
        try:
            out[dataset] = store.read_totals(dataset, year)
        except Exception as exc:  # reported, and the rules over that dataset fail anyway
            out[dataset] = {"error": f"{type(exc).__name__}: {exc}"}
    return out


def issues_table(results: list[RuleResult]) -> pa.Table:
    rows: dict[str, list] = {"rule": [], "severity": [], "dataset": [], "key": [], "detail": []}
    for r in results:
        if r.passed:
            continue
        severity = "error" if r.blocking else "warning"
        for example in r.examples or (None,):
            key, detail = None, r.description
            if example is not None:
                key, _, rest = example.partition("; ")
                detail = rest or r.description
            rows["rule"].append(r.code)
            rows["severity"].append(severity)
            rows["dataset"].append(dataset_of(r))
            rows["key"].append(key)
            rows["detail"].append(detail)
    return pa.table(rows, schema=schemas.VALIDATION_ISSUES)


def build_report(ctx, store, year: int, results: list[RuleResult]) -> dict[str, Any]:
    rules = with_every_rule(results)
    failed = [r.code for r in rules if not r.passed]
    return plain(
        {
            "report_version": REPORT_VERSION,
            "year": int(year),
            "scenario": ctx.scenario,
            "passed": not failed,
            "blocking_passed": all(r.passed for r in rules if r.blocking),
            "verdict": "PASS" if not failed else "FAIL",
            "rules_total": len(rules),
            "rules_failed": failed,
            "identity": ctx.identity(),
            "created_from": _created_from(ctx, store, year),
            "rules": [r.to_dict() for r in rules],
        }
    )


def publish_report(
    ctx, store, year: int, results: list[RuleResult]
) -> tuple[dict[str, Any], list[str]]:
    """Write report.json, issues.parquet and (on PASS only) _passed.flag for ``year``."""
    report = build_report(ctx, store, year, results)
    text = json.dumps(report, indent=2, sort_keys=True, allow_nan=False) + "\n"
    final = store.dataset_path("validation", year)
    names = ["report.json", "issues.parquet"]
    with publish_dir(store.storage, store.layout.staging_root, final) as stage:
        with open(os.path.join(stage, "report.json"), "w", encoding="utf-8") as fh:
            fh.write(text)
        rules = with_every_rule(results)
        pq.write_table(
            issues_table(rules), os.path.join(stage, "issues.parquet"), compression="zstd"
        )
        if report["passed"]:
            flag = {
                "passed": True,
                "year": int(year),
                "identity": report["identity"],
                "report_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            }
            with open(os.path.join(stage, PASSED_FLAG), "w", encoding="utf-8") as fh:
                fh.write(json.dumps(flag, indent=2, sort_keys=True) + "\n")
            names.append(PASSED_FLAG)
    return report, [f"{final}/{n}" for n in names]
