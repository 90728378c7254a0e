"""Verdicts remembered for the exact published files they judged.

In Dagster every state's rules run as asset checks right after the state publishes; S5 then
needs the same verdicts for its report. Evaluating a year of the reference world twice costs
minutes, so :func:`record` stores a state's verdicts next to the run (outside every dataset
directory) under a signature of everything they depend on, and :func:`recall` hands them back
only when that signature still holds:

- the engine code (a digest of every ``engine_core`` source file) and the run identity
  (world fingerprint, parameter hash, seed, scenario, tzdata version);
- every file of the datasets the state's rules read — its own and those upstream of it
  (``INPUTS``) — with relative path, size and modification time (nanoseconds on local disks).
  Publishing replaces a partition directory as a whole, so a re-run, a corrupted file or a
  hand edit changes the signature and the rules run again; a downstream state publishing
  later does not touch an upstream state's verdicts.

A recalled verdict is the stored JSON of a :class:`RuleResult`; a report built from recalled
verdicts has the same bytes as one built from fresh ones (tests/pipeline/test_memo.py).
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any

from engine_core.checks.verdicts import RuleResult
from engine_core.io.files import file_stamps
from engine_core.io.publish import write_small_file
from engine_core.source_digest import source_digest

MEMO_VERSION = 1
MEMO_DIR = "_verdicts"
# the datasets each state's rules read (engine_core/checks/rules_s*.py, law.py)
INPUTS = {
    "s1": ("time_grid", "grouping"),
    "s2": ("time_grid", "grouping", "latent_intensity"),
    "s3": ("time_grid", "grouping", "latent_intensity", "bucket_counts"),
    "s4": ("time_grid", "grouping", "latent_intensity", "bucket_counts", "arrival_events"),
}
STATES = tuple(INPUTS)


@functools.cache
def code_digest() -> str:
    """sha256 over the engine's own source files (rules, kernels, law)."""
    return source_digest()


def signature(ctx, store, state: str, year: int) -> str:
    """The signature of the files ``state``'s rules read in partition ``year``, the engine
    code and the run identity."""
    h = hashlib.sha256()
    ident = {"memo": MEMO_VERSION, "code": code_digest(), "state": state, **ctx.identity()}
    h.update(json.dumps(ident, sort_keys=True).encode())
    fs = store.storage.fs
    for dataset in INPUTS[state]:
        files = file_stamps(fs, store.dataset_path(dataset, year))
        h.update(json.dumps([dataset, files]).encode())
    return h.hexdigest()


def _path(ctx, store, state: str, year: int) -> str:
    return store.storage.join(
        MEMO_DIR,
        ctx.world_fingerprint[:12],
        ctx.parameter_hash[:12],
        f"seed={ctx.seed}",
        f"scenario={ctx.scenario}",
        f"year={year:04d}",
        f"{state}.json",
    )


def record(ctx, store, state: str, year: int, results: list[RuleResult], sig: str) -> None:
    """Store ``results`` under ``sig`` (taken *before* the rules read the files, so a publish
    racing the evaluation can only make the memo stale, never wrong). Best effort: a memo that
    cannot be written only means S5 evaluates again."""
    if state not in STATES:
        return
    payload = {
        "signature": sig,
        "state": state,
        "year": year,
        "results": [r.to_dict() for r in results],
    }
    path = _path(ctx, store, state, year)
    try:
        text = json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n"
        write_small_file(store.storage.fs, path, text.encode("utf-8"))
    except OSError:
        pass


def recall(ctx, store, state: str, year: int) -> list[RuleResult] | None:
    """The stored verdicts of ``state`` when the partition still has the signature they were
    recorded under; else None."""
    path = _path(ctx, store, state, year)
    try:
        with store.storage.fs.open_input_stream(path) as fh:
            payload: dict[str, Any] = json.loads(fh.read().decode("utf-8"))
    except (OSError, ValueError):
        return None
    if state not in STATES or payload.get("signature") != signature(ctx, store, state, year):
        return None
    try:
        return [
            RuleResult(
                code=r["code"],
                state=r["state"],
                passed=bool(r["passed"]),
                blocking=bool(r["blocking"]),
                description=r["description"],
                figures=r["figures"],
                examples=tuple(r["examples"]),
            )
            for r in payload["results"]
        ]
    except (KeyError, TypeError):
        return None
