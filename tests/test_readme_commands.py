"""The README's set-up commands are the ones CI and users run."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.+?)\n```", section, flags=re.S)


def test_the_readme_has_two_setup_commands_and_ci_runs_the_second():
    commands = _setup_commands()
    assert len(commands) == 2, commands
    install_and_run, install_and_test = commands
    assert "arrival-engine-dagster --partition" in install_and_run
    assert "pytest" in install_and_test and "'.[dev]'" in install_and_test
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == install_and_test, "'.ci/run' must run exactly the README's test command"
