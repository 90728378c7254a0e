"""Shared fixtures: a temporary storage root and engine factories for the tiny world."""

from __future__ import annotations

import datetime as dt
import os

import pytest

# Tests never depend on the developer's numba cache or thread settings.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")

UTC = dt.UTC


def utc(y: int, m: int = 1, d: int = 1) -> dt.datetime:
    return dt.datetime(y, m, d, tzinfo=UTC)


def pytest_collection_modifyitems(items):
    """Files holding a ``slow`` or ``browser`` test run first, each file's order kept: with
    the suite spread over workers a file at a time (``-n 2 --dist loadfile``, the README's
    command), the long files then start at once instead of ending the run one by one."""
    slow_files = {item.path for item in items
                  if item.get_closest_marker("slow") or item.get_closest_marker("browser")}
    items.sort(key=lambda item: item.path not in slow_files)


@pytest.fixture
def storage_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    return str(root)
