"""Every rule code of the catalogue has a pair of unit tests on hand-made inputs.

For code ``X`` of state ``s``, ``tests/checks/test_rules_<s>.py`` defines
``test_<x>_passes`` (the rule passes on the law's rows) and ``test_<x>_fails`` (it fails on a
changed copy, naming the code and why). A new rule without both fails here.
"""

from __future__ import annotations

import importlib
import re

from engine_core.checks.catalogue import RULES

STATES = ("world", "s1", "s2", "s3", "s4")


def pair_tests() -> dict[str, set[str]]:
    """code → the kinds (passes, fails) its state's test module defines."""
    found: dict[str, set[str]] = {}
    for state in STATES:
        module = importlib.import_module(f"tests.checks.test_rules_{state}")
        for name, fn in vars(module).items():
            m = re.fullmatch(r"test_([a-z0-9_]+)_(passes|fails)", name)
            if m and callable(fn):
                found.setdefault(f"{state}:{m.group(1).upper()}", set()).add(m.group(2))
    return found


def test_every_rule_code_has_a_passing_and_a_failing_unit_test():
    found = pair_tests()
    want = {"passes", "fails"}
    missing = [
        f"{r.code} ({r.state}): no test_{r.code.lower()}_{kind}"
        for r in RULES
        for kind in sorted(want - found.get(f"{r.state}:{r.code}", set()))
    ]
    assert missing == [], f"rule codes without a pair of unit tests in tests/checks: {missing}"


def test_no_pair_names_a_code_outside_the_catalogue():
    known = {f"{r.state}:{r.code}" for r in RULES}
    assert sorted(set(pair_tests()) - known) == []
