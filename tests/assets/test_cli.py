"""The command-line paths: headless `dagster asset materialize`, a `dagster job backfill` of
two years executed by the daemon's run queue, and the `arrival-engine-dagster` script.

`dagster asset materialize` takes no workspace file in Dagster 1.13 (only -m/-f/--package-name),
so it names the definitions module; every other command uses workspace.yaml."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from engine_assets import demo
from engine_assets.jobs import ENGINE_JOB
from tests.terminal import run_on_terminal

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env(tmp_path: Path, **extra) -> dict:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(home),
        ENGINE_WORLD="tiny",
        ENGINE_STORAGE_ROOT=str(tmp_path / "data"),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        **extra,
    )
    for var in ("ENGINE_SEED", "ENGINE_THREADS", "ENGINE_POLICY", "ENGINE_ALERT_WEBHOOK"):
        env.pop(var, None)
    return env


def _flags(root: Path) -> list[str]:
    return sorted(
        str(p.relative_to(root)).split("/validation/")[1] for p in root.rglob("_passed.flag")
    )


def test_headless_asset_materialize(tmp_path):
    proc = subprocess.run(
        [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "engine_assets.definitions",
            "--select",
            "*",
            "--partition",
            "baseline|2026",
        ],
        cwd=REPO,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=240,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert "RUN_SUCCESS" in log
    assert _flags(tmp_path / "data") == ["scenario=baseline/year=2026/_passed.flag"]


@pytest.mark.slow
def test_job_backfill_of_two_years_runs_through_the_queue(tmp_path, monkeypatch):
    env = _env(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    shutil.copy(REPO / "dagster.yaml", Path(env["DAGSTER_HOME"]) / "dagster.yaml")
    # Create and migrate the instance's SQLite storage once, before the daemon and the CLI
    # open it side by side (two processes migrating a fresh database race in Alembic).
    with dg.DagsterInstance.get() as instance:
        instance.get_runs(limit=1)
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        proc = subprocess.run(
            [
                str(BIN / "dagster"),
                "job",
                "backfill",
                "-w",
                "workspace.yaml",
                "-j",
                ENGINE_JOB,
                "--partitions",
                "baseline|2024,baseline|2025",
                "--noprompt",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Launched backfill job" in proc.stdout
        deadline = time.monotonic() + 200
        statuses: dict[str, str] = {}
        while time.monotonic() < deadline:
            with dg.DagsterInstance.get() as instance:
                runs = instance.get_runs()
                statuses = {r.tags.get("dagster/partition"): r.status.value for r in runs}
            if len(runs) == 2 and all(
                s in ("SUCCESS", "FAILURE", "CANCELED") for s in statuses.values()
            ):
                break
            time.sleep(2)
        assert statuses == {"baseline|2024": "SUCCESS", "baseline|2025": "SUCCESS"}
        assert _flags(tmp_path / "data") == [
            "scenario=baseline/year=2024/_passed.flag",
            "scenario=baseline/year=2025/_passed.flag",
        ]
    finally:
        os.killpg(daemon.pid, signal.SIGINT)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait(timeout=10)


def test_demo_script_materialises_one_partition(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    code = demo.main(
        ["--partition", "stress|2025", "--world", "tiny", "--storage-root", str(tmp_path)]
    )
    out = capsys.readouterr()
    summary = json.loads(out.out)
    assert code == 0, out.err
    assert summary["success"] and summary["partition"] == "stress|2025"
    assert summary["checks"]["failed"] == [] and summary["checks"]["evaluated"] > 0
    assert summary["assets"]["s4_arrival_events"]["events"] > 0
    assert summary["run_root"].startswith(str(tmp_path))
    assert _flags(tmp_path) == ["scenario=stress/year=2025/_passed.flag"]
    # stderr is not a terminal here: plain progress lines and the summary, no event log
    assert "[s4] " in out.err and "events/s" in out.err and "checks passed" in out.err
    assert "DEBUG" not in out.err and "STEP_SUCCESS" not in out.err
    log = Path(summary["event_log"])
    assert f"Dagster event log: {log}" in out.err
    text = log.read_text()
    assert "RUN_SUCCESS" in text and "STEP_SUCCESS" in text and "\x1b[" not in text


def test_demo_script_on_a_terminal_shows_bars_and_a_summary(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "DAGSTER_"))}
    log = tmp_path / "events.log"
    run = run_on_terminal(
        [str(BIN / "arrival-engine-dagster"), "--partition", "baseline|2026", "--world", "tiny",
         "--storage-root", str(tmp_path / "data"), "--log-file", str(log)],
        env={**env, "NUMBA_NUM_THREADS": "2"}, cwd=str(tmp_path),
    )
    assert run.returncode == 0, run.text
    assert run.line_starting("Dagster event log:") == f"Dagster event log: {log}"
    for label in ("world validation", "s1 time grid", "s2 latent field", "s3 bucket counts",
                  "s4 arrival events", "s5 validation"):
        assert "100.0%" in run.line_starting(label), label
    bar = run.line_starting("s4 arrival events")
    assert "━" in bar and "events/s" in bar and "ETA" in bar
    table = {}
    for line in run.screen:
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and line.startswith("│"):
            table[cells[0]] = cells[1]
    evaluated = len(table) and table["checks passed"].split("/")
    assert evaluated[0] == evaluated[1] and int(evaluated[0]) > 0
    assert table["result"] == "PASSED" and int(table["events"].replace(",", "")) > 100_000
    assert table["output"].startswith(str(tmp_path / "data"))
    assert table["Dagster event log"] == str(log)
    # the noise stays in the file
    for noise in ("DEBUG", "STEP_START", "RUN_SUCCESS", "dagster - "):
        assert noise not in run.text, noise
    assert "RUN_SUCCESS" in log.read_text()


def test_verbose_sends_the_event_log_to_stderr(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    missing = str(tmp_path / "no-world")
    code = demo.main(["--world", missing, "--storage-root", str(tmp_path), "--verbose"])
    err = capsys.readouterr().err
    assert code == 1
    assert "Dagster event log: stderr (--verbose)" in err
    assert "STEP_FAILURE" in err and "WORLD_NOT_FOUND" in err
    code = demo.main(["--world", missing, "--storage-root", str(tmp_path),
                      "--log-file", str(tmp_path / "quiet.log")])
    err = capsys.readouterr().err
    assert code == 1 and "STEP_FAILURE" not in err and "checks passed" in err
    assert "STEP_FAILURE" in (tmp_path / "quiet.log").read_text()


def test_demo_script_rejects_an_unknown_partition(capsys):
    assert demo.main(["--partition", "nope|2026"]) == 2
    assert "unknown scenario" in capsys.readouterr().err
