"""`arrival-engine`: the engine without Dagster, same code path and output layout.

    arrival-engine run --world tiny --scenario baseline --start 2026-01-01 --end 2027-01-01 \
        --seed 42 --out DIR [--threads N] [--policy FILE] [--scheduler ADDRESS|FILE]
    arrival-engine world export --preset reference --out DIR
    arrival-engine world check DIR
    arrival-engine fidelity RUN_DIR --scenario S --year Y [--world W] [--policy FILE]

Progress goes to stderr (one live bar per state on a terminal, plain periodic lines
otherwise) followed by a summary table; the last line on stdout is a JSON summary. Exit
codes: 0 success, 1 validation failed (for ``fidelity``: a target does not hold), 2 bad input
(the error code is printed on stderr), 3 an internal error (a defect: traceback and
INTERNAL_ERROR on stderr).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Sequence

from engine_core.errors import EngineError

EXIT_OK, EXIT_FAILED_VALIDATION, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def _parse_ts(text: str) -> dt.datetime:
    try:
        ts = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise EngineError("HORIZON_INVALID", f"not an ISO date/time: {text!r}") from exc
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


def _one_line(text: str) -> str:
    """Error text on one line: control characters (say, from a corrupt file) escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _report_bad_input(exc: EngineError) -> int:
    print(_one_line(str(exc)), file=sys.stderr)
    print(json.dumps({"passed": False, "error": exc.to_dict()}))
    return EXIT_BAD_INPUT


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 as well; keep the code visible
        self.print_usage(sys.stderr)
        raise SystemExit(_report_bad_input(EngineError("CLI_USAGE", message)))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="arrival-engine", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run S1–S5 for a horizon")
    r.add_argument("--world", default="tiny",
                   help="preset (tiny, small, reference, large) or a directory")
    r.add_argument("--scenario", default="baseline")
    r.add_argument("--start", required=True, help="UTC, bucket-aligned, e.g. 2026-01-01")
    r.add_argument("--end", required=True, help="UTC, exclusive")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--out", required=True, help="storage root: a directory or s3://bucket/prefix")
    r.add_argument("--threads", type=int, default=None)
    r.add_argument("--policy", default=None, help="policy YAML (default configs/policy.yaml)")
    r.add_argument("--quiet", action="store_true", help="no progress on stderr")
    r.add_argument("--scheduler", default=None,
                   help="Dask scheduler address or scheduler file: S3 and S4 run as merchant "
                   "shards on its workers (default $ENGINE_DASK_SCHEDULER; unset = in process)")
    r.add_argument("--shards", type=int, default=None,
                   help="merchant shards per state on the cluster (default: from the work)")
    r.add_argument("--tls-ca-file", default=None, help="CA of the cluster's TLS certificates")
    r.add_argument("--tls-cert", default=None, help="this client's TLS certificate")
    r.add_argument("--tls-key", default=None, help="this client's TLS private key")
    r.add_argument("--require-tls", action="store_true",
                   help="refuse a scheduler that is neither tls:// nor on loopback "
                   "(CLUSTER_INSECURE; also ENGINE_DASK_REQUIRE_TLS=1)")
    w = sub.add_parser("world", help="export or check a world")
    wsub = w.add_subparsers(dest="world_command", required=True)
    we = wsub.add_parser("export", help="write a preset's tables as Parquet")
    we.add_argument("--preset", required=True)
    we.add_argument("--out", required=True)
    wc = wsub.add_parser("check", help="validate a directory of world Parquet")
    wc.add_argument("path")
    f = sub.add_parser("fidelity", help="compare a run's output with the realism targets")
    f.add_argument("run_dir", help="the run directory a run prints as `out`")
    f.add_argument("--scenario", required=True)
    f.add_argument("--year", type=int, required=True)
    f.add_argument("--world", default=None, help="world of the run (default: from its report)")
    f.add_argument("--policy", default=None, help="policy YAML the run was made with")
    f.add_argument("--targets", default=None, help="targets YAML (default configs/fidelity.yaml)")
    f.add_argument("--report", default=None, help="also write the full report as JSON here")
    return p


def _cmd_run(args: argparse.Namespace) -> int:
    # imported here, not at the top: `world` and `--help` need no Numba
    from engine_core.cluster import (
        ClusterSettings,
        compute_state,
        connect,
        disconnect,
        require_tls_from_env,
        resolve_scheduler,
    )
    from engine_core.console import TerminalProgress, print_summary
    from engine_core.pipeline import STATES, Run, RunConfig, run_all

    if args.threads is not None and args.threads < 1:
        raise EngineError("CLI_USAGE", f"--threads must be >= 1, got {args.threads}")
    cfg = RunConfig(
        world=args.world, scenario=args.scenario, start=_parse_ts(args.start),
        end=_parse_ts(args.end), storage_root=args.out, seed=args.seed, threads=args.threads,
        policy_path=args.policy,
    )
    if args.shards is not None and args.shards < 1:
        raise EngineError("CLI_USAGE", f"--shards must be >= 1, got {args.shards}")
    started = time.perf_counter()
    progress = None if args.quiet else TerminalProgress(STATES, stream=sys.stderr)
    try:
        run = Run.open(cfg, progress=progress)
        run.store.storage.ensure_writable()
        scheduler = resolve_scheduler(args.scheduler)
        if scheduler is None:
            summary = run_all(run)
        else:
            settings = ClusterSettings(scheduler, shards=args.shards,
                                       tls_ca_file=args.tls_ca_file, tls_cert=args.tls_cert,
                                       tls_key=args.tls_key,
                                       require_tls=require_tls_from_env(args.require_tls))
            client = connect(settings)
            try:
                summary = run_all(run, lambda name: compute_state(run, name, settings, client))
            finally:
                disconnect(client)
    finally:
        if progress is not None:
            progress.close()
    if not args.quiet:
        print_summary(_summary_rows(summary, time.perf_counter() - started), stream=sys.stderr)
    if not summary["passed"]:
        print("VALIDATION_FAILED: " + " ".join(summary["failed_rules"]), file=sys.stderr)
    print(json.dumps(summary, sort_keys=True, default=str))
    return EXIT_OK if summary["passed"] else EXIT_FAILED_VALIDATION


def _summary_rows(summary: dict, wall_s: float) -> list[tuple[str, str]]:
    """The closing table of a run: the JSON summary's figures a person looks at."""
    from engine_core.checks.catalogue import RULES
    from engine_core.console import summary_rows

    total = len(RULES) * max(len(summary.get("years") or []), 1)
    return summary_rows(
        events=int(summary.get("events", 0)), wall_s=wall_s,
        checks_passed=total - len(summary.get("failed_rules") or []), checks_total=total,
        output=str(summary.get("out", "")), passed=bool(summary.get("passed")),
        extra={"years": ", ".join(str(y) for y in summary.get("years") or [])},
    )


def _cmd_world(args: argparse.Namespace) -> int:
    from engine_core.world import export_world, generate_world, load_world

    if args.world_command == "export":
        world = generate_world(args.preset)
        paths = export_world(world, args.out)
        print(json.dumps({"fingerprint": world.fingerprint, "files": [str(p) for p in paths]}))
        return EXIT_OK
    world = load_world(args.path)
    counts = {name: t.num_rows for name, t in world.tables.items()}
    print(json.dumps({"valid": True, "fingerprint": world.fingerprint, "rows": counts}))
    return EXIT_OK


def _cmd_fidelity(args: argparse.Namespace) -> int:
    from engine_core.config import load_policy
    from engine_core.fidelity import fidelity_report, load_targets, summary_line

    report = fidelity_report(
        args.run_dir, args.scenario, args.year, world=args.world,
        policy=load_policy(args.policy) if args.policy else None,
        targets=load_targets(args.targets) if args.targets else None,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    for check in report["checks"]:
        verdict = {True: "ok", False: "FAILED", None: "not judged"}[check["passed"]]
        print(f"{check['code']}: {verdict}", file=sys.stderr)
    if args.report:
        with open(args.report, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1, default=str)
    print(json.dumps(summary_line(report), sort_keys=True, default=str))
    return EXIT_OK if report["passed"] else EXIT_FAILED_VALIDATION


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "fidelity":
            return _cmd_fidelity(args)
        return _cmd_world(args)
    except EngineError as exc:
        return _report_bad_input(exc)
    except Exception as exc:  # a defect, not bad input: keep it apart from exit 1 and 2
        import traceback

        traceback.print_exc(file=sys.stderr)
        print(f"INTERNAL_ERROR: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(json.dumps({"passed": False, "error": {"code": "INTERNAL_ERROR",
                                                     "message": f"{type(exc).__name__}: {exc}"}}))
        return EXIT_INTERNAL


if __name__ == "__main__":
    raise SystemExit(main())
