"""The installed Dagster family is consistent: what pyproject pins is what is installed, core
and web server share one patch, and every official integration is the release made for that
patch (``0.(minor + 16).patch`` for core ``1.minor.patch``; each requires core exactly).

``pip check`` would report a broken set, but only for what is installed; the pin checks below
also catch a pyproject edit that moved one package without the others (docs/operations.md,
"Upgrading Dagster").
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
CORE_FAMILY = ("dagster", "dagster-webserver", "dagster-graphql", "dagster-pipes", "dagster-shared")
INTEGRATIONS = ("dagster-postgres", "dagster-aws", "dagster-k8s")
# Integration releases are numbered 0.(minor + 16).patch against core 1.minor.patch.
INTEGRATION_MINOR_OFFSET = 16


def _pins() -> dict[str, str]:
    """``name -> exact version`` of every ``==`` requirement in pyproject (all extras too)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pins = {}
    for text in requirements:
        req = Requirement(text)
        exact = [s.version for s in req.specifier if s.operator == "=="]
        if exact:
            pins[req.name.lower()] = exact[0]
    return pins


def _integration_version_for(core: str) -> str:
    major, minor, patch = (int(x) for x in core.split("."))
    assert major == 1, f"the integration numbering rule is for dagster 1.x, not {core}"
    return f"0.{minor + INTEGRATION_MINOR_OFFSET}.{patch}"


def test_pip_check_is_clean():
    done = subprocess.run(
        [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_pyproject_pins_the_whole_family_to_one_patch():
    pins = _pins()
    core = pins["dagster"]
    assert re.fullmatch(r"1\.\d+\.\d+", core), core
    assert pins["dagster-webserver"] == core
    for name in INTEGRATIONS:
        assert pins.get(name) == _integration_version_for(core), (
            f"{name} must be pinned to {_integration_version_for(core)} beside dagster=={core}"
        )


def test_installed_versions_are_the_pinned_ones():
    pins = _pins()
    for name in (*CORE_FAMILY[:2], *INTEGRATIONS):
        assert metadata.version(name) == pins[name], f"{name} installed differs from its pin"
    core = metadata.version("dagster")
    for name in CORE_FAMILY:
        assert metadata.version(name) == core, f"{name} {metadata.version(name)} != dagster {core}"


def test_every_integration_requires_exactly_the_installed_core():
    core = metadata.version("dagster")
    for name in INTEGRATIONS:
        requires = [Requirement(r) for r in metadata.requires(name) or []]
        on_core = [r for r in requires if r.name == "dagster" and r.marker is None]
        assert on_core, f"{name} declares no dependency on dagster"
        assert all(core in r.specifier for r in on_core), (
            f"{name} {metadata.version(name)} requires {on_core}, installed dagster is {core}"
        )
        assert metadata.version(name) == _integration_version_for(core)
