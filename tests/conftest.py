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


@pytest.fixture
def storage_root(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    return str(root)
