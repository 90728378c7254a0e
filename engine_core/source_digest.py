"""One digest of source files, for the two things that must change when code changes: the
Numba cache directory (the kernel sources) and the recorded verdicts (every engine source)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def source_files(names: Iterable[str] | None = None, root: Path = PACKAGE_DIR) -> list[Path]:
    """The ``*.py`` files of the named files and folders under ``root`` (all without names)."""
    if names is None:
        return sorted(root.rglob("*.py"))
    files: list[Path] = []
    for name in names:
        p = root / name
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return files


def source_digest(names: Iterable[str] | None = None, root: Path = PACKAGE_DIR) -> str:
    """Hex SHA-256 over each file's path (relative to ``root``) and bytes."""
    h = hashlib.sha256()
    for f in source_files(names, root):
        h.update(str(f.relative_to(root)).encode())
        h.update(b"\0")
        h.update(f.read_bytes())
    return h.hexdigest()
