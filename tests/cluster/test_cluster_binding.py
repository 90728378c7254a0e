"""Every documented command that starts a scheduler or a worker names the address it binds
(Dask's own default is every interface): loopback, or a private address the reader chooses;
the tests' cluster binds 127.0.0.1."""

from __future__ import annotations

import re
from pathlib import Path

from tests.cluster import conftest as cluster_conftest

REPO = Path(__file__).resolve().parents[2]
LAUNCH = re.compile(r"\bdask (scheduler|worker)\s+--?\w|\bdask (scheduler|worker) \S+://")
HOST = re.compile(r"--host[ =](\S+)")


def test_documented_dask_commands_name_their_bind_address():
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not LAUNCH.search(line):
                continue
            found.append(line)
            hosts = HOST.findall(line)
            assert hosts, f"{path.name}: no --host in {line.strip()!r}"
            for h in hosts:
                h = h.strip("`'\"")
                assert h in ("127.0.0.1", "localhost", "<private") or h.startswith("10."), line
    assert len(found) >= 4


def test_the_tests_cluster_binds_loopback():
    source = Path(cluster_conftest.__file__).read_text()
    assert source.count('"--host", "127.0.0.1"') == 2  # scheduler and workers
