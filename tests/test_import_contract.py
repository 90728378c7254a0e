"""The import contract of pyproject.toml holds, and it fails on an upward import.

docs/architecture.md draws the layers; `lint-imports` checks them (and the forbidden and
acyclic contracts) over the source tree. The second test adds one upward import to a copy of
the tree and expects the layers contract to break there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([LINT, "--config", str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contract_holds():
    proc = lint(REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize("module,upward", [
    ("engine_core/rng/philox.py", "import engine_core.pipeline.run"),
    ("engine_core/checks/verdicts.py", "import engine_core.pipeline.types"),
    ("engine_core/kernels/jit.py", "import engine_core.io.store"),
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    for part in ("engine_core", "engine_assets", "configs"):
        shutil.copytree(REPO / part, tmp_path / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{upward}  # an upward import\n")
    proc = lint(tmp_path)
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout
    assert module.removesuffix(".py").replace("/", ".") in proc.stdout
