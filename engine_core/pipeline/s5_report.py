"""S5: the validation report of every year window; ``_passed.flag`` only on PASS.

:func:`check` evaluates one state's rules over what it published (the Dagster asset checks
call it) and remembers the verdicts under a signature of the files they judged
(engine_core/checks/memo.py); S5 with ``reuse`` takes those verdicts while the signature still
holds instead of evaluating again.
"""

from __future__ import annotations

import time

from engine_core.checks import Rider, evaluate, memo
from engine_core.checks.report import publish_report
from engine_core.checks.verdicts import RuleResult
from engine_core.context import RunContext, Shard
from engine_core.io.iceberg import sync_partition
from engine_core.io.memory import release_memory
from engine_core.io.store import DatasetStore
from engine_core.pipeline.jit import await_validation_kernels
from engine_core.pipeline.progress import ProgressReporter, peak_rss_mb
from engine_core.pipeline.types import ProgressCallback, StateResult

STATES_JUDGED = ("world", "s1", "s2", "s3", "s4")


def check(ctx: RunContext, store: DatasetStore, state: str, year: int | None = None,
          remember: bool = True, reuse: bool = False, rider: Rider | None = None
          ) -> list[RuleResult]:
    """Every rule of ``state`` over the published data (every window unless ``year``);
    with ``reuse``, verdicts recorded for exactly these files (a cluster's S4 rules) are
    taken instead of evaluated. The S4 rules hand ``rider`` every table of rows they read
    (not when their verdicts are taken from the record)."""
    await_validation_kernels()
    out = []
    for y in [year] if year is not None else ctx.years:
        recalled = (memo.recall(ctx, store, state, y)
                    if reuse and state in memo.STATES else None)
        if recalled is not None:
            out += recalled
            continue
        sig = (memo.signature(ctx, store, state, y)
               if remember and state in memo.STATES else None)
        results = evaluate(ctx, store, state, y, rider)
        if sig is not None:
            memo.record(ctx, store, state, y, results, sig)
        out += results
    return out


def run(ctx: RunContext, store: DatasetStore, progress: ProgressCallback | None = None,
        shard: Shard | None = None, reuse: bool = False) -> StateResult:
    """Judge and report every window; ``result.report`` is the merged report and
    ``result.passed`` the verdict. A report covers a whole partition (``shard`` must be
    None)."""
    if shard is not None:
        raise ValueError("a validation report judges a whole partition: no shard")
    jit_s = await_validation_kernels()
    t0 = time.perf_counter()
    paths: list[str] = []
    reports = []
    rules: list[RuleResult] = []
    reused: list[str] = []
    rep = ProgressReporter(progress, "s5", len(ctx.windows) * len(STATES_JUDGED), "rule groups")
    k = 0
    for w in ctx.windows:
        results: list[RuleResult] = []
        for state in STATES_JUDGED:
            recalled = (memo.recall(ctx, store, state, w.year)
                        if reuse and state != "world" else None)
            if recalled is not None:
                reused.append(f"{state}|{w.year}")
            results += recalled if recalled is not None else evaluate(ctx, store, state, w.year)
            release_memory()  # the next state's rules start from what is live, not retained
            k += 1
            rep.update(k)
        report, files = publish_report(ctx, store, w.year, results)
        # the Iceberg tables follow the verdict: a PASS is registered, a FAIL withdrawn
        sync_partition(store.layout, ctx.scenario, w.year, report["passed"])
        reports.append(report)
        paths += files
        rules += results
    rep.finish()
    passed = all(r["passed"] for r in reports)
    merged = {
        "passed": passed,
        "years": [r["year"] for r in reports],
        "rules": [rule for r in reports for rule in r["rules"]],
        "reports": reports,
    }
    return StateResult(
        jit_compile_s=jit_s,
        state="s5", rows=len(rules), elapsed_s=time.perf_counter() - t0,
        output_bytes=store.file_bytes(paths), paths=paths,
        metrics={"passed": passed, "peak_rss_mb": peak_rss_mb(), "reused_verdicts": reused},
        rules=rules, report=merged,
    )
