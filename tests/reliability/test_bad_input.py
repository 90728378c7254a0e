"""Bad input, end to end through `arrival-engine`: every case of the catalogue is refused before
any state runs, with exit code 2, a stable code from docs/errors.md, a message that names the
file or table, the column and the key, and nothing published — an earlier good partition in
the same storage root stays byte for byte as it was, and a fresh root is not even created."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.catalogue import CASES, Case, Context, mount_tmpfs, unmount
from tests.reliability.conftest import REPO, run_cli, tree_digest

DOCS = REPO / "docs"
CODE_IN_TABLE = re.compile(r"^\|\s*`([A-Z][A-Z0-9_]+)`")


@pytest.fixture(scope="module")
def documented_codes() -> set[str]:
    codes: set[str] = set()
    for path in DOCS.glob("errors*.md"):
        for line in path.read_text(encoding="utf-8").splitlines():
            m = CODE_IN_TABLE.match(line)
            if m:
                codes.add(m.group(1))
    return codes


def _location(table, column, key) -> str:
    where = []
    if table is not None:
        where.append(f"table={table}")
    if column is not None:
        where.append(f"column={column}")
    if key is not None:
        where.append(f"key={key!r}")
    return f" [{', '.join(where)}]" if where else ""


def _assert_refused(res, case: Case, bad) -> None:
    assert res.code == 2, f"exit {res.code}\n{res.stderr}"
    line = res.error_line
    assert line.startswith(f"{case.code}: "), res.stderr
    loc = _location(bad.table, bad.column, bad.key)
    assert line.endswith(loc), f"expected to end with {loc!r}: {line}"
    if not loc:
        assert not re.search(r" \[(table|column|key)=", line), line
    for text in bad.names:
        assert text in line, f"{text!r} not named in: {line}"
    summary = res.summary
    assert summary["passed"] is False
    err = summary["error"]
    assert err["code"] == case.code
    assert (err["table"], err["column"]) == (bad.table, bad.column)
    assert err["key"] == (None if bad.key is None else str(bad.key))
    assert err["message"]
    # refused before any state ran: no progress line at all
    assert not [ln for ln in res.stderr.splitlines() if ln.startswith("[")], res.stderr


def test_catalogue_is_large_and_documented():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 30
    doc = (DOCS / "reliability.md").read_text(encoding="utf-8")
    missing = [i for i in ids if f"`{i}`" not in doc]
    assert not missing, f"catalogue cases absent from docs/reliability.md: {missing}"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input_is_refused(case: Case, tmp_path, tiny_world_dir, good_root, documented_codes):
    assert case.code in documented_codes, f"{case.code} is not listed in docs/errors*.md"
    before = tree_digest(good_root)
    ctx = Context(tmp_path, tiny_world_dir, good_root)
    bad = case.build(ctx)
    mounted = None
    if case.needs_mount:
        mounted = tmp_path / "ro"
        if not mount_tmpfs(mounted, "ro,size=1m"):
            pytest.skip("cannot mount a read-only tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        res = run_cli(bad.argv)
    finally:
        if mounted is not None:
            unmount(mounted)
    _assert_refused(res, case, bad)
    if bad.after is not None:
        bad.after()
    for path in bad.must_not_exist:
        assert not path.exists(), path
    # the earlier good partition (same root) is untouched, nothing was added next to it
    assert tree_digest(good_root) == before

    # the same input against a fresh root: the root is not even created
    if str(good_root) in bad.argv:
        fresh = tmp_path / "fresh"
        argv = [str(fresh) if a == str(good_root) else a for a in bad.argv]
        res = run_cli(argv)
        _assert_refused(res, case, bad)
        assert not fresh.exists()

    # a bad world directory is refused the same way by `world check`
    if case.group == "world" and ctx._world is not None:
        res = run_cli(["world", "check", str(ctx._world)])
        _assert_refused(res, case, bad)


@pytest.mark.parametrize("case_id", ["world_tz_mars", "policy_python_object", "cli_seed_not_int"])
def test_console_script_exit_code(case_id, tmp_path, tiny_world_dir, good_root):
    """The installed `arrival-engine` script itself: exit status 2 and the code on stderr."""
    case = next(c for c in CASES if c.id == case_id)
    bad = case.build(Context(tmp_path, tiny_world_dir, good_root))
    before = tree_digest(good_root)
    script = Path(sys.executable).parent / "arrival-engine"
    proc = subprocess.run(
        [str(script), *bad.argv],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"{case.code}: ")
    assert f'"code": "{case.code}"' in proc.stdout.strip().splitlines()[-1]
    if bad.after is not None:
        bad.after()
    assert tree_digest(good_root) == before
