"""The on-disk Numba cache directory is named after a digest of every kernel source file.

Numba revalidates a cached kernel against its own file only; a kernel calling a kernel of
another file would otherwise keep running the old callee after an edit."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import engine_core
from engine_core.source_digest import source_digest, source_files
from tests.reliability.conftest import REPO


def _defines_kernel(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                name = target.attr if isinstance(target, ast.Attribute) else getattr(
                    target, "id", "")
                if name in ("njit", "jit", "vectorize", "guvectorize", "cfunc"):
                    return True
    return False


def test_every_file_defining_a_kernel_is_in_the_cache_digest():
    covered = {p.resolve() for p in source_files(engine_core.KERNEL_SOURCES)}
    kernels = [p.resolve() for d in ("engine_core", "engine_assets")
               for p in (REPO / d).rglob("*.py") if _defines_kernel(p)]
    assert len(kernels) >= 8  # the scan found the kernel modules (rng, kernels, checks, tz)
    missing = sorted(str(p.relative_to(REPO)) for p in kernels if p not in covered)
    assert missing == [], f"kernel files outside engine_core.KERNEL_SOURCES: {missing}"


def test_the_digest_follows_kernel_sources_and_only_them(tmp_path, monkeypatch):
    copy = tmp_path / "engine_core"
    shutil.copytree(Path(engine_core.__file__).parent, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(engine_core, "_source_digest",
                        lambda names: source_digest(names, root=copy))
    before = engine_core.kernel_source_digest()
    run_py = copy / "pipeline" / "run.py"
    run_py.write_text(run_py.read_text() + "\n# not a kernel source\n")
    assert engine_core.kernel_source_digest() == before
    callee = copy / "checks" / "world_index.py"  # search_sorted, called by the row scan
    callee.write_text(callee.read_text() + "\n# an edit to a kernel file\n")
    assert engine_core.kernel_source_digest() != before
