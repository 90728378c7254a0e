"""docs/consuming.md is executable: every Python block runs, in order, against a month of the
tiny world published where the page says (./data), and its data dictionary is the one
engine_core.schemas generates."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from engine_core import schemas
from engine_core.pipeline import Run, RunConfig
from engine_core.pipeline.run import run_all

DOC = Path(__file__).resolve().parents[2] / "docs" / "consuming.md"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def test_the_data_dictionary_is_generated_from_the_schemas():
    text = DOC.read_text()
    for dataset in ("arrival_events", "bucket_counts"):
        marker = f"<!-- dictionary:{dataset} -->\n\n"
        assert marker + schemas.data_dictionary_markdown(dataset) + "\n" in text, dataset


def test_every_column_of_every_dataset_has_a_description():
    for dataset, schema in schemas.DATASETS.items():
        described = schemas.COLUMN_DESCRIPTIONS[dataset]
        assert list(described) == schema.names, dataset
        assert all(len(d) > 10 for d in described.values())


def test_the_python_examples_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    summary = run_all(Run.open(RunConfig(
        world="tiny", scenario="baseline", start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(2026, 2, 1, tzinfo=dt.UTC), storage_root="./data")))
    assert summary["passed"]
    blocks = BLOCK.findall(DOC.read_text())
    assert len(blocks) >= 5
    namespace: dict = {}
    for i, code in enumerate(blocks):
        try:
            exec(compile(code, f"{DOC.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # name the block that broke
            pytest.fail(f"block {i} of {DOC.name} failed: {exc!r}\n{code}")
    assert namespace["per_zone"]["arrivals"].sum() == summary["events"]
    assert namespace["hourly"]["count"].sum() == summary["events"]
    assert len(namespace["files"]) >= 1 and namespace["ids"].num_rows == summary["events"]
