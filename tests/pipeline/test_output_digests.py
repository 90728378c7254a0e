"""The output of a tiny-world year and a reference-world week equals the recorded digests.

A refactor must leave every published byte as it was; a change meant to alter the output
records new digests (``python -m tests.pipeline.output_digests record``) in a commit that says
why.
"""

from __future__ import annotations

import json
import os

import polars as pl
import pyarrow as pa
import pytest

from tests.pipeline.output_digests import DIGESTS, RUNS, digest_run, realise

RECORDED = json.loads(DIGESTS.read_text())


@pytest.mark.slow
@pytest.mark.parametrize("name,world,start,end", RUNS, ids=[r[0] for r in RUNS])
def test_output_equals_recorded_digests(tmp_path, name, world, start, end):
    run_dir = realise(world, start, end, str(tmp_path))
    assert os.path.relpath(run_dir, tmp_path) == RECORDED["identity"][name]
    got = digest_run(run_dir)
    want = RECORDED["runs"][name]
    assert sorted(got) == sorted(want), "the run published other files"
    # bytes hold for the pyarrow that wrote them and the polars the report names
    same_writer = (RECORDED["pyarrow"] == pa.__version__
                   and RECORDED["polars"] == pl.__version__)
    for rel, digest in want.items():
        if "content" in digest:
            assert got[rel]["content"] == digest["content"], f"rows of {rel} changed"
        if same_writer or "content" not in digest:
            assert got[rel]["sha256"] == digest["sha256"], f"bytes of {rel} changed"
