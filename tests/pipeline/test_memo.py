"""S5 reusing the verdicts the state checks recorded: only for exactly the files they judged."""

from __future__ import annotations

import datetime as dt
import os
import shutil

import pyarrow.parquet as pq
import pytest

from engine_core.checks import memo
from engine_core.pipeline import Run, RunConfig
from tests.pipeline.conftest import run_states

UTC = dt.UTC
START = dt.datetime(2026, 1, 1, tzinfo=UTC)
END = dt.datetime(2026, 1, 15, tzinfo=UTC)
YEAR = 2026
STATES = ("s1", "s2", "s3", "s4")


@pytest.fixture(scope="module")
def checked_root(tmp_path_factory) -> str:
    """S1–S4 published and every state's rules evaluated (and recorded) once."""
    root = str(tmp_path_factory.mktemp("memo") / "data")
    eng = run_states(root, START, END)
    for state in STATES:
        assert all(r.passed for r in eng.check(state, YEAR))
    return root


@pytest.fixture
def eng(checked_root, tmp_path) -> Run:
    root = str(tmp_path / "data")
    shutil.copytree(checked_root, root)  # copy2: sizes and modification times kept
    return Run.open(
        RunConfig(world="tiny", scenario="baseline", start=START, end=END, storage_root=root)
    )


def report_bytes(eng: Run) -> bytes:
    with open(os.path.join(eng.store.dataset_path("validation", YEAR), "report.json"), "rb") as fh:
        return fh.read()


def test_s5_reuses_recorded_verdicts_and_writes_the_same_report(eng):
    res = eng.state("s5", reuse=True)
    assert res.passed
    assert res.metrics["reused_verdicts"] == [f"{s}|{YEAR}" for s in STATES]
    reused = report_bytes(eng)
    res = eng.state("s5", reuse=False)
    assert res.passed and res.metrics["reused_verdicts"] == []
    assert report_bytes(eng) == reused


def test_recall_matches_fresh_evaluation(eng):
    for state in STATES:
        recalled = memo.recall(eng.ctx, eng.store, state, YEAR)
        assert recalled is not None
        assert recalled == eng.check(state, YEAR, remember=False, reuse=False)


def test_a_changed_file_is_judged_again(eng):
    """Corrupt the counts after their checks passed: S5 must not vouch for them."""
    (f,) = eng.store.dataset_files("bucket_counts", YEAR)
    t = pq.read_table(f)
    pq.write_table(t.slice(0, t.num_rows - 1), f)
    assert memo.recall(eng.ctx, eng.store, "s3", YEAR) is None
    assert memo.recall(eng.ctx, eng.store, "s4", YEAR) is None  # S4's rules read the counts too
    assert memo.recall(eng.ctx, eng.store, "s2", YEAR) is not None  # upstream verdicts still hold
    res = eng.state("s5", reuse=True)
    report = res.report
    assert not res.passed
    assert "s3|2026" not in res.metrics["reused_verdicts"]
    failed = {r["code"] for r in report["rules"] if not r["passed"]}
    assert {"COUNTS_COMPLETENESS", "EVENTS_CONSERVATION"} <= failed
    assert not os.path.exists(eng.store.passed_flag_path(YEAR))


def test_same_size_rewrite_is_judged_again(eng):
    (f,) = eng.store.dataset_files("latent_intensity", YEAR)
    st = os.stat(f)
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert memo.recall(eng.ctx, eng.store, "s2", YEAR) is None


def test_another_seed_or_a_tampered_memo_is_not_reused(eng, tmp_path):
    path = memo._path(eng.ctx, eng.store, "s4", YEAR)
    with open(path, "r+", encoding="utf-8") as fh:
        text = fh.read()
        fh.seek(0)
        fh.write(text.replace('"passed": true', '"passed": false', 1))
        fh.truncate()
    # signature intact: stored as is
    assert memo.recall(eng.ctx, eng.store, "s4", YEAR)[0].passed is False
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("{not json")
    assert memo.recall(eng.ctx, eng.store, "s4", YEAR) is None
    other = Run.open(
        RunConfig(
            world="tiny",
            scenario="baseline",
            start=START,
            end=END,
            storage_root=eng.store.storage.uri,
            seed=7,
        )
    )
    assert memo.recall(other.ctx, other.store, "s1", YEAR) is None


def test_unwritable_memo_never_fails_a_check(eng):
    blocker = eng.store.storage.join(memo.MEMO_DIR)
    shutil.rmtree(blocker)
    with open(blocker, "w") as fh:  # a file where the directory should be
        fh.write("x")
    assert all(r.passed for r in eng.check("s1", YEAR))
    assert memo.recall(eng.ctx, eng.store, "s1", YEAR) is None
