"""SIGKILL soak: kill `arrival-engine run` at random moments during S3 and S4, then check that
no partial dataset is visible, that no PASS flag appears, and that re-running the partition
gives the bytes of an uninterrupted run.

    python benchmarks/soak_kill.py [--trials 20] [--world small] [--start 2026-01-01] \
        [--end 2026-04-01] [--seed 42] [--workdir DIR] [--json PATH] [--keep]

Protocol (docs/reliability.md):

1. **Reference.** One uninterrupted `arrival-engine run` into ``<work>/reference``. Its stderr
   timeline gives the kill window: from the S2 progress line (S3 starts right after it) to
   the last S4 line.
2. **Trial k of n.** A fresh storage root (even k), or a copy of the complete reference (odd
   k: a re-run over published partitions, which exercises the swap of an existing partition).
   The CLI starts; when its S2 line appears on stderr the harness waits
   ``d_k = (k + U) / n × window`` (U uniform in [0, 1): stratified, so the trials cover S3
   and S4 evenly) and sends SIGKILL to that process.
3. **What is visible** after the kill: every partition directory holds exactly the files of
   the reference partition, byte for byte (a ``_passed.flag`` may be missing: a run withdraws
   it before it republishes anything); every Parquet file reads in full; ``_totals.json``
   agrees with the files; no ``_passed.flag`` at all after a kill in S3 or S4, and anywhere
   only where every dataset of that partition is complete. Staging leftovers (invisible to
   readers) are counted.
4. **Re-run** to completion in the same root: same exit code as the reference, the whole
   output tree byte-identical to the reference, no staging leftovers.

The state a kill interrupted is read from the storage root: the first of S3, S4, S5 whose
partition this process had not yet published (a partition directory that is new, or whose
inode changed, was published by it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
from run_args import add_partition_args

REPO = Path(__file__).resolve().parents[1]
STATE_OF_DATASET = {"bucket_counts": "s3", "arrival_events": "s4", "validation": "s5"}
STAGING = "_staging"
ICEBERG = "_iceberg"  # the Iceberg catalog: snapshot ids and commit times, not output bytes
SWEEP_LOCK = ".sweep.lock"
TRIGGER = "[s2]"
FLAG = "_passed.flag"


@dataclass(frozen=True)
class SoakConfig:
    world: str = "small"
    scenario: str = "baseline"
    start: str = "2026-01-01"
    end: str = "2026-04-01"
    seed: int = 42

    def argv(self, root: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "engine_core.cli",
            "run",
            "--world",
            self.world,
            "--scenario",
            self.scenario,
            "--start",
            self.start,
            "--end",
            self.end,
            "--seed",
            str(self.seed),
            "--out",
            str(root),
        ]


@dataclass
class Trial:
    k: int
    mode: str  # fresh | overwrite
    delay_s: float
    killed_in: str = "?"  # s3 | s4 | s5 | finished (exited before the kill)
    exit_code: int | None = None
    visible_partitions: int = 0
    flags_after_kill: int = 0
    staging_leftovers: int = 0
    staging_leftover_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    rerun_exit: int | None = None
    rerun_identical: bool | None = None
    rerun_staging_clean: bool | None = None
    elapsed_s: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.rerun_identical is not False
            and (self.rerun_staging_clean is not False)
        )


# ------------------------------------------------------------------------------ inspection
def snapshot(root: Path, datasets: tuple[str, ...] | None = None) -> dict[str, str]:
    """Relative path -> SHA-256 of every published file (lock files, staging and the Iceberg
    catalog excluded), of the given datasets only when ``datasets`` is set."""
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        if rel.parts[:1] in ((STAGING,), (ICEBERG,)) or (
            datasets is not None and len(rel.parts) > 3 and rel.parts[3] not in datasets
        ):
            dirnames[:] = []
            continue
        for name in filenames:
            if name.endswith(".lock"):
                continue
            out[str(rel / name)] = hashlib.sha256((Path(dirpath) / name).read_bytes()).hexdigest()
    return out


def partition_dirs(root: Path) -> list[Path]:
    """Every visible ``<dataset>/scenario=<id>/year=<yyyy>`` directory under ``root``."""
    return sorted(p for p in root.glob("*/*/seed=*/*/scenario=*/year=*") if p.is_dir())


def _files_of(root: Path, part: Path, snap: dict[str, str]) -> dict[str, str]:
    prefix = str(part.relative_to(root)) + "/"
    return {k[len(prefix) :]: v for k, v in snap.items() if k.startswith(prefix)}


def partition_problems(part: Path) -> list[str]:
    """Reader-side completeness of one partition: every file reads in full and the totals
    written with it agree with what the files hold."""
    dataset = part.parent.parent.name
    problems: list[str] = []
    names = sorted(p.name for p in part.iterdir())
    if any(".tmp-" in n for n in names):
        problems.append(f"{part}: temporary file visible")
    rows = 0
    counts = 0
    parquet = [n for n in names if n.endswith(".parquet")]
    for name in parquet:
        try:
            table = pq.read_table(part / name)
        except Exception as exc:  # any failure to read is the finding
            problems.append(f"{part / name}: unreadable ({type(exc).__name__}: {exc})")
            continue
        rows += table.num_rows
        if dataset == "bucket_counts":
            counts += int(pc.sum(table.column("count")).as_py() or 0)
    if dataset == "validation":
        try:
            json.loads((part / "report.json").read_text())
        except (OSError, ValueError) as exc:
            problems.append(f"{part}: report.json unreadable ({exc})")
        return problems
    if not parquet:
        problems.append(f"{part}: no Parquet file")
    if dataset in ("bucket_counts", "arrival_events"):
        try:
            totals = json.loads((part / "_totals.json").read_text())
        except (OSError, ValueError) as exc:
            return [*problems, f"{part}: _totals.json unreadable ({exc})"]
        if dataset == "bucket_counts":
            expected = (totals["rows"], totals["sum_count"])
            got = (rows, counts)
        else:
            expected = (totals["events"], totals["files"])
            got = (rows, len(parquet))
        if got != expected:
            problems.append(f"{part}: files hold {got}, _totals.json says {expected}")
    return problems


def visible_problems(
    root: Path,
    reference_root: Path,
    reference: dict[str, str],
    datasets: tuple[str, ...] | None = None,
) -> tuple[list[str], int, int]:
    """(problems, visible partitions, visible PASS flags) of a storage root after a kill.
    Partitions of ``datasets`` (all when None) must equal the reference byte for byte."""
    snap = snapshot(root)
    problems: list[str] = []
    parts = partition_dirs(root)
    complete: set[tuple[str, str, str]] = set()  # (run/dataset, scenario, year)
    for part in parts:
        found = partition_problems(part)
        if datasets is None or part.parent.parent.name in datasets:
            mine = _files_of(root, part, snap)
            ref_part = reference_root / part.relative_to(root)
            theirs = _files_of(reference_root, ref_part, reference)
            if FLAG not in mine:  # a re-run withdraws the flag before it republishes
                theirs.pop(FLAG, None)
            if mine != theirs:
                missing = sorted(set(theirs) - set(mine))
                changed = sorted(n for n in set(mine) & set(theirs) if mine[n] != theirs[n])
                extra = sorted(set(mine) - set(theirs))
                found.append(
                    f"{part.relative_to(root)}: differs from the uninterrupted run "
                    f"(missing {missing}, changed {changed}, extra {extra})"
                )
        problems += found
        if not found:
            run = str(part.parent.parent.parent.relative_to(root))
            complete.add((f"{run}/{part.parent.parent.name}", part.parent.name, part.name))
    flags = sorted(root.rglob(FLAG))
    for flag in flags:
        part = flag.parent
        run = str(part.parent.parent.parent.relative_to(root))
        for dataset in (
            "time_grid",
            "grouping",
            "latent_intensity",
            "bucket_counts",
            "arrival_events",
        ):
            if (f"{run}/{dataset}", part.parent.name, part.name) not in complete:
                problems.append(
                    f"{flag.relative_to(root)}: PASS flag visible while "
                    f"{dataset} of the partition is not"
                )
    return problems, len(parts), len(flags)


def staging_leftovers(root: Path) -> tuple[int, int]:
    staging = root / STAGING
    if not staging.is_dir():
        return 0, 0
    entries = [p for p in staging.iterdir() if p.name != SWEEP_LOCK]
    size = sum(f.stat().st_size for e in entries for f in e.rglob("*") if f.is_file())
    return len(entries), size


def _inodes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_ino for p in partition_dirs(root)}


def killed_in(root: Path, before: dict[str, int], finished: bool) -> str:
    if finished:
        return "finished"
    after = _inodes(root)
    published = {
        Path(rel).parent.parent.name for rel, ino in after.items() if before.get(rel) != ino
    }
    for dataset, state in STATE_OF_DATASET.items():
        if dataset not in published:
            return state
    return "after s5"


# ------------------------------------------------------------------------------ running
@dataclass
class Timeline:
    code: int
    lines: list[tuple[float, str]]

    def at(self, prefix: str, last: bool = False) -> float | None:
        hits = [t for t, line in self.lines if line.startswith(prefix)]
        return (hits[-1] if last else hits[0]) if hits else None


def run_to_completion(cfg: SoakConfig, root: Path, timeout_s: float = 3600) -> Timeline:
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cfg.argv(root), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[tuple[float, str]] = []
    reader = threading.Thread(target=_read_lines, args=(proc, lines, t0, None), daemon=True)
    reader.start()
    proc.stdout.read()
    code = proc.wait(timeout=timeout_s)
    reader.join()
    return Timeline(code, lines)


def _read_lines(
    proc: subprocess.Popen, lines: list, t0: float, trigger: threading.Event | None
) -> None:
    for line in proc.stderr:
        lines.append((time.perf_counter() - t0, line.rstrip("\n")))
        if trigger is not None and line.startswith(TRIGGER):
            trigger.set()


def kill_during(
    cfg: SoakConfig, root: Path, delay_s: float, timeout_s: float = 600
) -> tuple[int | None, bool]:
    """Start a run, SIGKILL it ``delay_s`` after its S2 line; (exit code, finished itself)."""
    proc = subprocess.Popen(
        cfg.argv(root), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    lines: list[tuple[float, str]] = []
    trigger = threading.Event()
    reader = threading.Thread(
        target=_read_lines, args=(proc, lines, time.perf_counter(), trigger), daemon=True
    )
    reader.start()
    try:
        if not trigger.wait(timeout_s):
            raise RuntimeError(f"no {TRIGGER} line within {timeout_s}s: {lines[-5:]}")
        time.sleep(delay_s)
        finished = proc.poll() is not None
        if not finished:
            os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    return code, finished


def run_trial(
    cfg: SoakConfig,
    k: int,
    n: int,
    window_s: float,
    reference_root: Path,
    reference: dict[str, str],
    work: Path,
    rng: random.Random,
    rerun: Callable[[Path], int],
    reference_exit: int,
    datasets: tuple[str, ...] | None = None,
) -> Trial:
    """One kill, inspection and re-run (module docstring). ``datasets`` restricts the byte
    comparison to those datasets (the reference of the test suite stops after S4)."""
    t0 = time.perf_counter()
    mode = "overwrite" if k % 2 else "fresh"
    trial = Trial(k=k, mode=mode, delay_s=round((k + rng.random()) / n * window_s, 3))
    root = work / f"trial-{k:02d}"
    if root.exists():
        shutil.rmtree(root)
    if mode == "overwrite":
        shutil.copytree(reference_root, root)
    before = _inodes(root) if root.exists() else {}
    trial.exit_code, finished = kill_during(cfg, root, trial.delay_s)
    trial.killed_in = killed_in(root, before, finished) if root.exists() else "s3"
    problems, trial.visible_partitions, trial.flags_after_kill = (
        visible_problems(root, reference_root, reference, datasets) if root.exists() else ([], 0, 0)
    )
    trial.problems = problems
    if trial.killed_in in ("s3", "s4") and trial.flags_after_kill:
        trial.problems.append("a PASS flag is visible after a kill in S3/S4")
    trial.staging_leftovers, trial.staging_leftover_bytes = staging_leftovers(root)
    trial.rerun_exit = rerun(root)
    trial.rerun_identical = (
        trial.rerun_exit == reference_exit and snapshot(root, datasets) == reference
    )
    trial.rerun_staging_clean = staging_leftovers(root) == (0, 0)
    trial.elapsed_s = round(time.perf_counter() - t0, 1)
    return trial


def summarise(trials: list[Trial]) -> dict:
    by_state: dict[str, int] = {}
    for t in trials:
        by_state[t.killed_in] = by_state.get(t.killed_in, 0) + 1
    return {
        "trials": len(trials),
        "killed_in": by_state,
        "ok": sum(t.ok for t in trials),
        "problems": sum(len(t.problems) for t in trials),
        "flags_after_kill_in_s3_s4": sum(
            t.flags_after_kill for t in trials if t.killed_in in ("s3", "s4")
        ),
        "rerun_identical": sum(bool(t.rerun_identical) for t in trials),
        "staging_leftovers_after_kill": sum(t.staging_leftovers for t in trials),
        "staging_clean_after_rerun": sum(bool(t.rerun_staging_clean) for t in trials),
    }


# ------------------------------------------------------------------------------ script
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20)
    add_partition_args(p, world="small")
    p.add_argument("--rng-seed", type=int, default=20260101, help="seed of the kill delays")
    p.add_argument("--workdir", default=None, help="default: a temporary directory")
    p.add_argument("--json", default=None, help="write the results here as JSON")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    cfg = SoakConfig(args.world, args.scenario, args.start, args.end, args.seed)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="soak-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.rng_seed)
    try:
        print(f"reference run: {' '.join(cfg.argv(work / 'reference')[3:])}", flush=True)
        ref_root = work / "reference"
        shutil.rmtree(ref_root, ignore_errors=True)
        timeline = run_to_completion(cfg, ref_root)
        t_s2, t_s4 = timeline.at(TRIGGER), timeline.at("[s4]", last=True)
        if t_s2 is None or t_s4 is None:
            print("reference run printed no S2/S4 progress:", timeline.lines[-5:])
            return 2
        window = t_s4 - t_s2
        reference = snapshot(ref_root)
        print(
            f"reference: exit {timeline.code}, {len(reference)} files, "
            f"S3+S4 window {window:.1f}s after the S2 line, total {timeline.lines[-1][0]:.1f}s",
            flush=True,
        )

        def rerun(root: Path) -> int:
            return run_to_completion(cfg, root).code

        trials = []
        header = (
            f"{'k':>3} {'mode':9} {'delay':>6} {'killed':8} {'exit':>5} {'parts':>5} "
            f"{'flags':>5} {'stg':>3} {'stg MB':>7} {'rerun':>5} {'same':>5} {'ok':>3}"
        )
        print(header, flush=True)
        for k in range(args.trials):
            t = run_trial(
                cfg, k, args.trials, window, ref_root, reference, work, rng, rerun, timeline.code
            )
            trials.append(t)
            print(
                f"{t.k:>3} {t.mode:9} {t.delay_s:>6.2f} {t.killed_in:8} {t.exit_code!s:>5} "
                f"{t.visible_partitions:>5} {t.flags_after_kill:>5} {t.staging_leftovers:>3} "
                f"{t.staging_leftover_bytes / 1e6:>7.1f} {t.rerun_exit!s:>5} "
                f"{t.rerun_identical!s:>5} {'yes' if t.ok else 'NO':>3}",
                flush=True,
            )
            for problem in t.problems:
                print(f"      problem: {problem}", flush=True)
            shutil.rmtree(work / f"trial-{k:02d}", ignore_errors=True)
        summary = summarise(trials)
        print(json.dumps(summary, sort_keys=True))
        if args.json:
            Path(args.json).write_text(
                json.dumps(
                    {
                        "config": asdict(cfg),
                        "window_s": window,
                        "reference_exit": timeline.code,
                        "summary": summary,
                        "trials": [asdict(t) for t in trials],
                    },
                    indent=2,
                )
            )
        return 0 if summary["ok"] == len(trials) else 1
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
