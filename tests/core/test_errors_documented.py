"""Every error code the code can raise, and every validation rule, is listed in docs/errors.md."""

from __future__ import annotations

import re
from pathlib import Path

from engine_core.checks.catalogue import RULES

ROOT = Path(__file__).resolve().parents[2]
CODE = re.compile(r'EngineError\(\s*\n?\s*"([A-Z][A-Z0-9_]+)"')
FAIL = re.compile(r'_fail\(\s*\n?\s*"([A-Z][A-Z0-9_]+)"')


def raised_codes() -> set[str]:
    codes: set[str] = set()
    for pkg in ("engine_core", "engine_assets"):
        for path in (ROOT / pkg).rglob("*.py"):
            text = path.read_text()
            codes |= set(CODE.findall(text)) | set(FAIL.findall(text))
    return codes


def test_every_raised_code_is_documented():
    doc = (ROOT / "docs" / "errors.md").read_text()
    codes = raised_codes()
    assert len(codes) > 20
    missing = sorted(c for c in codes if f"`{c}`" not in doc)
    assert not missing, f"undocumented error codes: {missing}"


def test_every_rule_is_documented():
    doc = (ROOT / "docs" / "errors.md").read_text()
    missing = sorted(r.code for r in RULES if f"`{r.code}`" not in doc)
    assert not missing, missing
