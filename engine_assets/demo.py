"""Materialise one partition through Dagster from the command line, no web server needed.

    arrival-engine-dagster [--partition 'baseline|2026'] [--world small] [--seed 42]
                           [--storage-root ./data] [--threads N] [--verbose] [--log-file F]

Runs every asset of the chain and every asset check in one process, exactly as a run launched
from the UI would, records the run in the Dagster instance under ``DAGSTER_HOME`` when that is
set (so it shows up in ``dagster dev`` later) or in a throw-away instance otherwise.

On stderr a person sees one live bar per state (plain periodic lines when stderr is not a
terminal) and a summary table: events, wall time, throughput, checks passed, where the output
is. Dagster's own event log goes to a file whose path is printed first (``--verbose`` sends it
to stderr instead). stdout carries the JSON summary only. Exit code 0 when every asset
materialised and the partition passed validation, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import IO, Any

import dagster as dg

from engine_assets.asset_keys import S4_ARRIVAL_EVENTS, S5_VALIDATION_REPORT
from engine_assets.definitions import ENGINE_ASSETS
from engine_assets.partitions import engine_partitions, parse_partition_key
from engine_assets.progress import add_listener, remove_listener
from engine_assets.resources import (
    DEFAULT_SEED,
    DEFAULT_STORAGE_ROOT,
    DEFAULT_WORLD,
    AlertSettings,
    EngineSettings,
    EngineStorage,
)
from engine_core.console import TerminalProgress, print_summary, summary_rows

DEFAULT_PARTITION = "baseline|2026"
BAR_STATES = ("world", "s1", "s2", "s3", "s4", "s5")


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ
    p = argparse.ArgumentParser(
        prog="arrival-engine-dagster",
        description="Materialise one (scenario|year) partition of the arrival engine through "
        "Dagster: world, S1-S5 and every asset check.",
    )
    p.add_argument(
        "--partition",
        default=DEFAULT_PARTITION,
        help="partition key 'scenario|year' (default %(default)s)",
    )
    p.add_argument(
        "--world",
        default=env.get("ENGINE_WORLD") or DEFAULT_WORLD,
        help="world preset or directory (default $ENGINE_WORLD or %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=int(env.get("ENGINE_SEED") or DEFAULT_SEED),
        help="u64 seed (default $ENGINE_SEED or %(default)s)",
    )
    p.add_argument(
        "--storage-root",
        default=env.get("ENGINE_STORAGE_ROOT") or DEFAULT_STORAGE_ROOT,
        help="output root (default $ENGINE_STORAGE_ROOT or %(default)s)",
    )
    threads = env.get("ENGINE_THREADS")
    p.add_argument(
        "--threads",
        type=int,
        default=int(threads) if threads else None,
        help="Numba threads (default $ENGINE_THREADS or all cores)",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="Dagster's event log on stderr instead of a file",
    )
    p.add_argument(
        "--log-file",
        default=None,
        help="file for Dagster's event log (default under $DAGSTER_HOME/logs or the temp dir)",
    )
    return p.parse_args(argv)


def default_log_path(partition: str) -> str:
    home = os.environ.get("DAGSTER_HOME")
    base = os.path.join(home, "logs") if home else os.path.join(
        tempfile.gettempdir(), "arrival-engine-dagster")
    stamp = time.strftime("%Y%m%dT%H%M%S")
    return os.path.join(base, f"{partition.replace('|', '-')}-{stamp}-{os.getpid()}.log")


@contextlib.contextmanager
def _event_log(verbose: bool, path: str) -> Iterator[None]:
    """Where Dagster's console log (and any other stderr chatter of the run) goes."""
    if verbose:
        yield
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a", encoding="utf-8") as log, contextlib.redirect_stderr(_PlainText(log)):
        yield


class _PlainText(io.TextIOBase):
    """A text stream that drops ANSI colour codes: Dagster's console logger colours its lines
    whenever stdout is a terminal, wherever its own stream goes."""

    _ANSI = re.compile(r"\x1b\[[0-9;]*m")

    def __init__(self, target: IO[str]) -> None:
        self._target = target

    def write(self, text: str) -> int:
        self._target.write(self._ANSI.sub("", text))
        return len(text)

    def flush(self) -> None:
        self._target.flush()

    def isatty(self) -> bool:
        return False


@contextlib.contextmanager
def _instance() -> Iterator[tuple[dg.DagsterInstance, str]]:
    if os.environ.get("DAGSTER_HOME"):
        with dg.DagsterInstance.get() as instance:
            yield instance, f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}"
    else:
        with tempfile.TemporaryDirectory(prefix="arrival-engine-dagster-") as home:
            with dg.DagsterInstance.local_temp(tempdir=home) as instance:
                yield instance, "temporary instance (set DAGSTER_HOME to keep the run history)"


def _summary(result: dg.ExecuteInJobResult, partition: str) -> dict[str, Any]:
    assets: dict[str, Any] = {}
    run_root = None
    for event in result.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        md = {k: v.value for k, v in mat.metadata.items()}
        run_root = run_root or md.get("run_root")
        assets[mat.asset_key.to_user_string()] = {
            k: md[k]
            for k in (
                "dagster/row_count",
                "events",
                "events_per_s",
                "elapsed_s",
                "output_bytes",
                "peak_rss_mb",
                "path",
                "passed",
                "report_path",
            )
            if k in md
        }
    checks = result.get_asset_check_evaluations()
    failed = [f"{c.asset_key.to_user_string()}/{c.check_name}" for c in checks if not c.passed]
    return {
        "partition": partition,
        "success": result.success,
        "run_root": run_root,
        "assets": assets,
        "checks": {"evaluated": len(checks), "passed": len(checks) - len(failed), "failed": failed},
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    try:
        partition = parse_partition_key(args.partition)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    key = str(partition.key)
    if key not in engine_partitions.get_partition_keys():
        print(
            f"error: partition {key!r} is not defined (years from 2024 to the current one)",
            file=sys.stderr,
        )
        return 2
    storage = EngineStorage(root=args.storage_root)
    resources = {
        "storage": storage,
        "engine": EngineSettings(world=args.world, seed=args.seed, threads=args.threads),
        "alerts": AlertSettings(),
    }
    log_path = None if args.verbose else os.path.abspath(args.log_file or default_log_path(key))
    stderr = sys.stderr
    print(f"partition {key}: world={args.world} seed={args.seed}", file=stderr)
    print(f"Dagster event log: {log_path or 'stderr (--verbose)'}", file=stderr, flush=True)
    started = time.perf_counter()
    progress = TerminalProgress(BAR_STATES, stream=stderr)
    add_listener(progress)
    try:
        with _instance() as (instance, where):
            with _event_log(args.verbose, log_path or ""):
                result = dg.materialize(
                    ENGINE_ASSETS,
                    partition_key=partition.key,
                    resources=resources,
                    instance=instance,
                    raise_on_error=False,
                    tags={"engine/trigger": "arrival-engine-dagster"},
                )
            summary = _summary(result, key)
            summary["run_id"] = result.run_id
            summary["dagster_instance"] = where
    finally:
        remove_listener(progress)
        progress.close()
    summary["storage_root"] = storage.resolved_root()
    summary["event_log"] = log_path
    print_summary(_summary_rows(summary, time.perf_counter() - started), stream=stderr,
                  title=f"arrival engine, partition {key}")
    print(json.dumps(summary, indent=2, default=str))
    return 0 if result.success else 1


def _summary_rows(summary: dict[str, Any], wall_s: float) -> list[tuple[str, str]]:
    events = summary["assets"].get(S4_ARRIVAL_EVENTS, {}).get("events", 0)
    report = summary["assets"].get(S5_VALIDATION_REPORT, {})
    checks = summary["checks"]
    extra = {"validation report": str(report.get("report_path") or "not written")}
    extra["Dagster event log"] = summary["event_log"] or "stderr"
    temporary = summary["dagster_instance"].startswith("temporary")
    extra["Dagster run"] = f"{summary['run_id']}{' (temporary instance)' if temporary else ''}"
    return summary_rows(
        events=int(events), wall_s=wall_s, checks_passed=checks["passed"],
        checks_total=checks["evaluated"], passed=bool(summary["success"]),
        output=str(summary["run_root"] or summary["storage_root"]), extra=extra,
    )


if __name__ == "__main__":
    sys.exit(main())
