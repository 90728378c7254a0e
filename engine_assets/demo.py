"""Materialise one partition through Dagster from the command line, no web server needed.

    arrival-engine-dagster [--partition 'baseline|2026'] [--world small] [--seed 42]
                           [--storage-root ./data] [--threads N]

Runs every asset of the chain and every asset check in one process, exactly as a run launched
from the UI would, records the run in the Dagster instance under ``DAGSTER_HOME`` when that is
set (so it shows up in ``dagster dev`` later) or in a throw-away instance otherwise, and prints
where the output went with a JSON summary. Exit code 0 when every asset materialised and the
partition passed validation, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import Any

import dagster as dg

from engine_assets.definitions import ENGINE_ASSETS
from engine_assets.partitions import engine_partitions, parse_partition_key
from engine_assets.resources import (
    DEFAULT_SEED,
    DEFAULT_STORAGE_ROOT,
    DEFAULT_WORLD,
    AlertSettings,
    EngineSettings,
    EngineStorage,
)

DEFAULT_PARTITION = "baseline|2026"


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
    return p.parse_args(argv)


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
    with _instance() as (instance, where):
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
    summary["storage_root"] = storage.resolved_root()
    report = summary["assets"].get("s5_validation_report", {})
    print(f"partition {key}: {'PASSED' if result.success else 'FAILED'}", file=sys.stderr)
    print(f"output under {summary['run_root'] or summary['storage_root']}", file=sys.stderr)
    if report.get("path"):
        print(f"validation report: {report.get('report_path')}", file=sys.stderr)
    print(json.dumps(summary, indent=2, default=str))
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
