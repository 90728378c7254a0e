"""What the benchmarks share: the partition a benchmark measures (its command-line options
and its run configuration, the same in every script that opens a run) and the process CPU
they time parts by."""

from __future__ import annotations

import argparse
import datetime as dt
import resource

from engine_core.pipeline import RunConfig


def add_partition_args(p: argparse.ArgumentParser, world: str = "reference") -> None:
    """``--world --scenario --start --end --seed`` (the reference world's first quarter of
    2026 unless told otherwise)."""
    p.add_argument("--world", default=world)
    p.add_argument("--scenario", default="baseline")
    p.add_argument("--start", default="2026-01-01")
    p.add_argument("--end", default="2026-04-01")
    p.add_argument("--seed", type=int, default=42)


def utc(day: str) -> dt.datetime:
    """An ISO date or time as a UTC datetime."""
    return dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)


def run_config(args: argparse.Namespace, storage_root: str, **extra) -> RunConfig:
    """The run of the partition ``args`` names, stored under ``storage_root``."""
    return RunConfig(world=args.world, scenario=args.scenario, start=utc(args.start),
                     end=utc(args.end), storage_root=storage_root, seed=args.seed, **extra)


def process_cpu_s() -> float:
    """User + system CPU seconds of every thread of this process so far (``getrusage``)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
