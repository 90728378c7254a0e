"""Fixtures of the reliability tests: the tiny world as Parquet, a storage root that already
holds one good partition, the CLI run in-process, and digests of a storage tree."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine_core.cli import main
from engine_core.world import export_world, generate_world
from tests.reliability.catalogue import HORIZON

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def error_line(self) -> str:
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        return lines[-1] if lines else ""

    @property
    def summary(self) -> dict:
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        return json.loads(lines[-1])


def run_cli(argv: list[str]) -> CliResult:
    """``arrival-engine <argv>`` in this process: exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code
    return CliResult(int(code), out.getvalue(), err.getvalue())


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file under ``root`` (``<dir>`` for directories)."""
    out: dict[str, str] = {}
    root = Path(root)
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for d in dirnames:
            out[str(rel / d)] = "<dir>"
        for f in filenames:
            out[str(rel / f)] = hashlib.sha256((Path(dirpath) / f).read_bytes()).hexdigest()
    return out


def dataset_digest(root: Path) -> dict[str, str]:
    """``tree_digest`` without lock files, the staging area and the Iceberg catalog (its
    metadata holds snapshot ids and commit times by design): the published datasets."""
    return {
        k: v
        for k, v in tree_digest(root).items()
        if not k.startswith(("_staging", "_iceberg")) and not k.endswith(".lock")
    }


def good_run_argv(root: Path, *extra: str) -> list[str]:
    return [
        "run",
        "--world",
        "tiny",
        "--scenario",
        "baseline",
        "--start",
        HORIZON[0],
        "--end",
        HORIZON[1],
        "--out",
        str(root),
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_world_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_world") / "world"
    export_world(generate_world("tiny"), out)
    return out


@pytest.fixture(scope="session")
def good_root(tmp_path_factory) -> Path:
    """A storage root holding the tiny world's January 2026 partition, validated (PASS).
    Shared: tests must not change it (copy it first)."""
    root = tmp_path_factory.mktemp("good") / "data"
    res = run_cli(good_run_argv(root))
    assert res.code == 0, res.stderr
    flags = list(root.rglob("_passed.flag"))
    assert len(flags) == 1, flags
    return root
