"""What every state asset does around its core call: one place, so the state modules stay
a few lines each.

A step parses its partition, opens the core run with a progress reporter, runs its state
(which withdraws the partition's ``_passed.flag`` before it republishes anything: a flag must
never vouch for data a later run replaced), publishes metadata and evaluates its rules as
asset checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import dagster as dg

from engine_assets.checks import check_results_for
from engine_assets.metadata import (
    DatasetStats,
    data_version_of,
    dataset_stats,
    png_markdown,
    state_metadata,
)
from engine_assets.partitions import EnginePartition, partition_of
from engine_assets.progress import RunProgressReporter
from engine_assets.resources import EngineSettings, EngineStorage
from engine_assets.retries import (
    classified_failures,
    step_failure,
    transient_rule_errors,
    transient_rule_failure,
)
from engine_core.checks import Rider
from engine_core.cluster import compute_state
from engine_core.errors import EngineError
from engine_core.pipeline.run import Run
from engine_core.pipeline.types import RuleResult, StateResult

T = TypeVar("T")


def engine_failure(err: EngineError) -> dg.Failure:
    """An EngineError as a step failure whose metadata names code, table, column and key;
    the step's retry policy applies only when the error is transient (engine_assets/retries.py).
    """
    return step_failure(err)


class StateStep:
    """One asset step of one partition, bound to a core run."""

    def __init__(
        self,
        context: dg.AssetExecutionContext,
        storage: EngineStorage,
        settings: EngineSettings,
    ) -> None:
        self.context = context
        self.storage = storage
        self.settings = settings
        with classified_failures():  # a malformed key is bad input: fails once
            self.partition: EnginePartition = partition_of(context)
        self.progress = RunProgressReporter(context)
        self._run: Run | None = None

    @property
    def run(self) -> Run:
        if self._run is None:
            raise RuntimeError("StateStep.open() must be called first")
        return self._run

    def open(self) -> Run:
        """Open the core run (loads and fingerprints the world); raises EngineError."""
        run = self._run = self.settings.open_run(self.partition, self.storage, self.progress)
        run.store.storage.ensure_writable()
        self.context.log.info(
            f"partition {self.partition}: world={self.settings.world} seed={self.settings.seed} "
            f"world_fingerprint={run.ctx.world_fingerprint[:12]} "
            f"parameter_hash={run.ctx.parameter_hash[:12]} "
            f"tzdata={run.ctx.tzdata_version} run_root={run.store.run_root}"
        )
        return run

    def open_or_fail(self) -> Run:
        """Open the run; bad input fails the step with the engine's error code."""
        with classified_failures():
            return self.open()

    # ------------------------------------------------------------------------- running
    def compute(self, state: str) -> StateResult:
        """Run a state: S3 and S4 as shards on the Dask cluster when the engine resource
        names a scheduler, in process otherwise."""
        settings = self.settings.cluster_settings()
        if settings is None:
            return self.run.state(state)
        self.context.log.info(f"{state}: merchant shards on the Dask cluster {settings.scheduler}")
        return compute_state(self.run, state, settings)

    def call(self, state: str, fn: Callable[[], T]) -> T:
        """Run a core call, turning an EngineError into a readable step failure."""
        started = time.perf_counter()
        try:
            out = fn()
        except EngineError as err:
            self.context.log.error(f"{state} failed: {err}")
            raise engine_failure(err) from err
        except Exception as exc:
            self.context.log.error(f"{state} failed: {type(exc).__name__}: {exc}")
            raise step_failure(exc) from exc
        elapsed = time.perf_counter() - started
        if isinstance(out, StateResult):
            self.progress.finished(state, out.events or out.rows, out.elapsed_s)
            self.context.log.info(f"{state} done in {elapsed:.2f}s: {out.summary()}")
        return out

    # ------------------------------------------------------------------------- outputs
    def dataset_path(self, dataset: str) -> str:
        """The partition directory as a path of the storage's filesystem."""
        return str(self.run.store.dataset_path(dataset, self.partition.year))

    def dataset_uri(self, dataset: str) -> str:
        """The same directory as something another reader can open: a local path, or an
        ``s3://bucket/key?…`` URI carrying the root's endpoint options."""
        return self.run.store.uri(self.dataset_path(dataset))

    def data_version(self, dataset: str) -> dg.DataVersion:
        """The data version of what this step published for ``dataset``."""
        return data_version_of(self.dataset_uri(dataset))

    def stats(self, dataset: str) -> DatasetStats:
        return dataset_stats(self.dataset_uri(dataset))

    def metadata(
        self,
        result: StateResult,
        dataset: str,
        plots: dict[str, Callable[[], bytes]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        with classified_failures():
            stats = self.stats(dataset)
            md = state_metadata(self.run, result, dataset, stats, extra)
        md.update(self.render_plots(plots or {}))
        return md

    def render_plots(
        self, plots: dict[str, Callable[[], bytes]], failures: list[str] | None = None
    ) -> dict[str, Any]:
        """Render each plot; a plot that fails is logged (or added to ``failures``, for a
        caller drawing off the step's thread), never fails the step."""
        out: dict[str, Any] = {}
        for title, render in plots.items():
            try:
                out[f"plot_{title.lower().replace(' ', '_')}"] = png_markdown(render(), title)
            except Exception as exc:
                message = f"plot {title!r} not rendered: {exc!r}"
                if failures is None:
                    self.context.log.warning(message)
                else:
                    failures.append(message)
        return out

    def published(
        self,
        result: StateResult,
        dataset: str,
        state: str,
        specs: list[dg.AssetCheckSpec],
        plots: dict[str, Callable[[], bytes]] | None = None,
        rider: Rider | None = None,
        beside_rules: bool = True,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        """The materialisation of ``dataset``, then the verdicts of every rule of ``state``.

        Its metadata (the footers' statistics, the plots: reading and drawing on one core) is
        drawn on a thread of its own while the rules run on this one, where the step's log and
        progress stay; or before the rules, when ``beside_rules`` is False (a state whose
        rules hold the run's peak memory). The materialisation is yielded first, and also
        when the rules fail."""
        failures: list[str] = []

        def draw() -> dict[str, Any]:
            with classified_failures():
                stats = self.stats(dataset)
                md = state_metadata(self.run, result, dataset, stats)
            md.update(self.render_plots(plots or {}, failures))
            return md

        def materialized(metadata: dict[str, Any]) -> dg.MaterializeResult:
            for message in failures:
                self.context.log.warning(message)
            return dg.MaterializeResult(
                metadata=metadata, data_version=self.data_version(dataset))

        if not beside_rules:
            yield materialized(draw())
            yield from self.check_results(state, specs, rider)
            return
        with ThreadPoolExecutor(1, thread_name_prefix=f"{state}-metadata") as pool:
            drawn = pool.submit(draw)
            try:
                checks = self.check_results(state, specs, rider)
            except BaseException:
                yield materialized(drawn.result())
                raise
            yield materialized(drawn.result())
        yield from checks

    def check_results(
        self, state: str, specs: list[dg.AssetCheckSpec], rider: Rider | None = None
    ) -> list[dg.AssetCheckResult]:
        """Evaluate every rule of ``state`` over the published data (the S4 rules handing
        ``rider`` every table of rows they read)."""
        results = self.call(f"{state} checks", lambda: self.run.check(state, rider=rider))
        return self.rule_results(results, specs)

    def rule_results(
        self, results: list[RuleResult], specs: list[dg.AssetCheckSpec]
    ) -> list[dg.AssetCheckResult]:
        """The engine's rule verdicts as the asset check results of ``specs``.

        A rule that could not read the data because of a transient storage error has no
        verdict: the step fails retryably instead of reporting a failed check."""
        unreadable = transient_rule_errors(results)
        if unreadable:
            self.context.log.warning(f"rules could not read the data: {unreadable}")
            raise transient_rule_failure(unreadable)
        failed = [r.code for r in results if not r.passed]
        if failed:
            self.context.log.warning(f"failed rules: {failed}")
        return check_results_for(specs, results, self.context.log)
