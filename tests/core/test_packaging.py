"""The package installs from its wheel and works outside the repository (SPEC §2).

The wheel carries configs/ as ``engine_core.configs``; an installed engine must never read
the source tree. The test builds the wheel, installs it (not editable) into a fresh venv in a
temporary directory, and runs the CLI there from another working directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _packages_on_disk() -> set[str]:
    found = {"engine_core.configs"}
    for top in ("engine_core", "engine_assets"):
        for init in (REPO / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(REPO).parts))
    return found


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    assert listed == _packages_on_disk()


def _run(cmd: list[str], cwd: Path, timeout: int, env: dict | None = None
         ) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    # build from a copy: setuptools leaves build/ behind in the tree it builds
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "data", "artifacts", "*.egg-info", "__pycache__",
        ".pytest_cache", ".ruff_cache", ".hypothesis"))
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
         tmp_path, 600)
    (wheel,) = dist.glob("arrival_engine-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "engine_core/configs/policy.yaml" in names
    assert "engine_core/configs/worlds/tiny.yaml" in names
    assert not any(n.startswith(("configs/", "tests/")) for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], tmp_path, 120)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], tmp_path, 900)
    work = tmp_path / "work"
    work.mkdir()
    # a clean environment: no PYTHONPATH into the repository, a cache of the venv's own
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path),
           "NUMBA_NUM_THREADS": "2", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    where = _run([str(venv / "bin" / "python"), "-c",
                  "import engine_core.config as c; print(c.DEFAULT_POLICY_PATH)"],
                 work, 120, env)
    assert Path(where.stdout.strip()).is_relative_to(venv)

    cli = str(venv / "bin" / "arrival-engine")
    _run([cli, "world", "export", "--preset", "tiny", "--out", str(work / "world")], work,
         300, env)
    assert (work / "world" / "merchants.parquet").is_file()
    proc = _run([cli, "run", "--world", "tiny", "--scenario", "baseline", "--start",
                 "2026-01-01", "--end", "2026-02-01", "--out", str(work / "out"), "--quiet"],
                work, 900, env)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["passed"] is True and summary["events"] > 0
    assert os.path.isfile(os.path.join(summary["out"], "validation", "scenario=baseline",
                                       "year=2026", "_passed.flag"))
