"""The package's file list: every package of the tree is in the wheel (SPEC §2).

The wheel itself is built, installed non-editable in a fresh venv outside the checkout and run
(world export, a one-month run, the code location) by tests/ops/test_image.py.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

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
