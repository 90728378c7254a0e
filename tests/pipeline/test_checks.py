"""Validation (S5): a clean run passes every rule, the report and the PASS flag, the
statistics behind the realism rules, the independent local-time reference, and the
streaming paths (many batches, many id classes, DST transitions inside a partition)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from engine_core import schemas
from engine_core.checks import evaluate, event_shards, rules_s4, world_rules
from engine_core.checks.catalogue import RULES
from engine_core.checks.local_clock import SENTINEL, LocalClockReference, zoneinfo_local
from engine_core.checks.report import publish_report
from engine_core.checks.rules_s2 import clipped_lognormal_mean
from engine_core.checks.verdicts import pearson_z, verdict
from engine_core.io import batches
from engine_core.io.store import PASSED_FLAG as FLAG
from engine_core.pipeline import Run, RunConfig
from tests.pipeline.conftest import run_states

UTC = dt.UTC
START = dt.datetime(2026, 1, 1, tzinfo=UTC)
END = dt.datetime(2026, 2, 1, tzinfo=UTC)
YEAR = 2026
US = 1_000_000


@pytest.fixture(scope="module")
def clean_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("clean") / "data")
    run_states(root, START, END)
    return root


@pytest.fixture
def eng(clean_root, tmp_path) -> Run:
    root = str(tmp_path / "data")
    shutil.copytree(clean_root, root)
    return Run.open(
        RunConfig(world="tiny", scenario="baseline", start=START, end=END, storage_root=root)
    )


def all_rules(engine: Run, year: int = YEAR):
    out = world_rules(engine.ctx, engine.store)
    for state in ("s1", "s2", "s3", "s4"):
        out += evaluate(engine.ctx, engine.store, state, year)
    return out


def validation_dir(engine: Run, year: int = YEAR) -> str:
    return engine.store.dataset_path("validation", year)


# ----------------------------------------------------------------------------- clean runs
def test_tiny_month_passes_every_rule(eng):
    results = all_rules(eng)
    assert [r.code for r in results] == [r.code for r in RULES]
    assert [r.code for r in results if not r.passed] == []
    by = {r.code: r for r in results}
    assert by["EVENTS_CONSERVATION"].figures["rows"] == by["EVENTS_SCHEMA"].figures["rows"] > 0
    assert by["COUNTS_COMPLETENESS"].figures["expected_cells"] == eng.ctx.arrays.n_series * 744
    assert by["RNG_REDERIVE_S4"].figures["sampled_events"] > 0
    assert by["RNG_REDERIVE_S3"].figures["sampled_cells"] > 0
    assert by["RNG_REDERIVE_S2"].figures["sampled"] > 0
    json.dumps([r.to_dict() for r in results], allow_nan=False)  # figures are plain JSON


def test_run_s5_publishes_report_issues_and_flag(eng):
    res = eng.state("s5")
    merged, passed = res.report, res.passed
    assert passed and merged["passed"]
    d = validation_dir(eng)
    assert sorted(os.listdir(d)) == sorted(["report.json", "issues.parquet", FLAG])
    report = json.loads(open(os.path.join(d, "report.json")).read())
    assert report["verdict"] == "PASS" and report["year"] == YEAR
    assert report["identity"] == eng.ctx.identity()
    assert report["created_from"]["arrival_events"]["events"] > 0
    assert report["created_from"]["bucket_counts"]["cells_sampled"] > 0
    assert [r["code"] for r in report["rules"]] == [r.code for r in RULES]
    issues = pq.read_table(os.path.join(d, "issues.parquet"))
    assert issues.schema.equals(schemas.VALIDATION_ISSUES) and issues.num_rows == 0
    flag = json.loads(open(os.path.join(d, FLAG)).read())
    assert flag["passed"] is True and flag["identity"] == eng.ctx.identity()


def test_report_bytes_are_reproducible(eng):
    results = all_rules(eng)
    _, paths = publish_report(eng.ctx, eng.store, YEAR, results)
    first = {p: open(p, "rb").read() for p in paths}
    _, paths = publish_report(eng.ctx, eng.store, YEAR, all_rules(eng))
    assert {p: open(p, "rb").read() for p in paths} == first


def test_a_blocking_failure_withholds_the_flag_and_lists_issues(eng):
    (f,) = eng.store.dataset_files("arrival_events", YEAR)
    t = pq.read_table(f)
    pq.write_table(pa.concat_tables([t.slice(0, 10), t.slice(11)]), f)
    publish_report(eng.ctx, eng.store, YEAR, all_rules(eng))  # an earlier flag ...
    assert not eng.state("s5").passed
    d = validation_dir(eng)
    assert not os.path.exists(os.path.join(d, FLAG))  # ... does not survive
    report = json.loads(open(os.path.join(d, "report.json")).read())
    assert report["verdict"] == "FAIL" and not report["blocking_passed"]
    assert "EVENTS_CONSERVATION" in report["rules_failed"]
    issues = pq.read_table(os.path.join(d, "issues.parquet")).to_pylist()
    rows = [r for r in issues if r["rule"] == "EVENTS_CONSERVATION"]
    assert rows and all(r["severity"] == "error" and r["dataset"] == "arrival_events" for r in rows)
    assert rows[0]["key"].startswith("series=") and "S3 count" in rows[0]["detail"]


def test_a_non_blocking_failure_also_withholds_the_flag(eng):
    results = all_rules(eng)
    results = [
        verdict("EVENTS_UNIFORMITY", False, {"z": 9.0}, ["arrival_events; z=9"])
        if r.code == "EVENTS_UNIFORMITY"
        else r
        for r in results
    ]
    report, paths = publish_report(eng.ctx, eng.store, YEAR, results)
    assert not report["passed"] and report["blocking_passed"]
    assert not any(p.endswith(FLAG) for p in paths)
    issues = pq.read_table(os.path.join(validation_dir(eng), "issues.parquet")).to_pylist()
    assert issues == [
        {
            "rule": "EVENTS_UNIFORMITY",
            "severity": "warning",
            "dataset": "arrival_events",
            "key": "arrival_events",
            "detail": "z=9",
        }
    ]


def test_a_rule_without_a_verdict_fails(eng):
    results = [r for r in all_rules(eng) if r.code != "EVENTS_SORTED"]
    report, _ = publish_report(eng.ctx, eng.store, YEAR, results)
    assert report["rules_failed"] == ["EVENTS_SORTED"]
    rule = next(r for r in report["rules"] if r["code"] == "EVENTS_SORTED")
    assert rule["blocking"] and not rule["passed"] and rule["figures"]["error"]


def test_rules_over_an_unpublished_partition_fail_without_raising(tmp_path):
    empty = Run.open(
        RunConfig(
            world="tiny",
            scenario="baseline",
            start=START,
            end=END,
            storage_root=str(tmp_path / "none"),
        )
    )
    for state in ("s1", "s2", "s3", "s4"):
        results = evaluate(empty.ctx, empty.store, state, YEAR)
        assert results and not any(r.passed for r in results)
        assert all(r.examples for r in results)


def test_a_window_with_dst_changes_passes_every_rule(tmp_path):
    # US clocks change on 8 March, European ones on 29 March 2026
    start, end = dt.datetime(2026, 3, 2, tzinfo=UTC), dt.datetime(2026, 4, 6, tzinfo=UTC)
    engine = run_states(str(tmp_path / "dst"), start, end)
    assert [r.code for r in all_rules(engine) if not r.passed] == []


def test_local_times_converted_row_by_row_are_judged_alike(eng, monkeypatch):
    # transitions at whole UTC hours never split a bucket; force the per-row path everywhere
    class RowByRow(LocalClockReference):
        def __init__(self, *args):
            super().__init__(*args)
            self.offset[:] = SENTINEL

    monkeypatch.setattr(rules_s4, "LocalClockReference", RowByRow)
    local = next(r for r in evaluate(eng.ctx, eng.store, "s4", YEAR)
                 if r.code == "EVENTS_LOCAL_TIME")
    assert local.passed and local.figures["rows_converted_per_row"] >= local.figures["rows"]
    (f,) = eng.store.dataset_files("arrival_events", YEAR)
    t = pq.read_table(f)
    i = t.schema.get_field_index("ts_local")
    loc = t.column(i).combine_chunks().view(pa.int64()).to_numpy().copy()
    loc[5] -= 3600 * US
    pq.write_table(
        t.set_column(i, t.schema.field(i), pa.array(loc, pa.int64()).view(schemas.TS_LOCAL)), f
    )
    local = next(r for r in evaluate(eng.ctx, eng.store, "s4", YEAR)
                 if r.code == "EVENTS_LOCAL_TIME")
    assert not local.passed and local.figures["offending_rows"] == 1
    assert "reference" in local.examples[0]


def test_many_batches_and_id_classes_change_nothing(eng, monkeypatch):
    monkeypatch.setattr(batches, "MAX_GROUP_ROWS", 5000)
    monkeypatch.setattr(batches, "BATCH_ROWS", 3333)
    monkeypatch.setattr(event_shards, "ID_CLASS_BUDGET", 20_000)
    results = evaluate(eng.ctx, eng.store, "s4", YEAR)
    assert [r.code for r in results if not r.passed] == []
    assert next(r for r in results if r.code == "EVENTS_ID_UNIQUE").figures["id_classes"] > 1
    # a duplicate id and an unsorted pair, both straddling batch boundaries
    (f,) = eng.store.dataset_files("arrival_events", YEAR)
    t = pq.read_table(f)
    aid = t.column("arrival_id").to_numpy().copy()
    aid[-1] = aid[0]
    order = np.arange(t.num_rows)
    order[[3332, 3333]] = order[[3333, 3332]]
    t = t.set_column(0, "arrival_id", pa.array(aid, pa.uint64())).take(order)
    pq.write_table(t, f)
    bad = {r.code for r in evaluate(eng.ctx, eng.store, "s4", YEAR) if not r.passed}
    assert {"EVENTS_ID_UNIQUE", "EVENTS_SORTED"} <= bad


# ----------------------------------------------------------------------------- statistics
@pytest.mark.parametrize(("mu", "kappa"), [(0.3, 30.0), (4.0, 12.0), (250.0, 4.8)])
def test_nb2_fourth_cumulant_behind_the_dispersion_z(mu, kappa):
    a = mu / kappa
    v = mu * (1 + a)
    k4 = v * (1 + 6 * a + 6 * a * a)
    nb = stats.nbinom(kappa, kappa / (kappa + mu))
    mean, var, _, kurt = nb.stats(moments="mvsk")
    mu4 = (float(kurt) + 3.0) * float(var) ** 2
    assert math.isclose(float(mean), mu) and math.isclose(float(var), v, rel_tol=1e-12)
    # Var[(N - μ)²] = μ4 - v² = k4 + 2v²
    assert math.isclose(mu4 - float(var) ** 2, k4 + 2 * v * v, rel_tol=1e-9)


def test_pearson_variance_is_exact_for_small_samples():
    rng = np.random.default_rng(7)
    p = np.array([0.5, 0.3, 0.15, 0.05])
    n = 12
    draws = rng.multinomial(n, p, size=200_000)
    e = n * p
    x2 = ((draws - e) ** 2 / e).sum(axis=1)
    stat, mean, var, _ = pearson_z(draws[0], p)
    assert mean == 3.0
    assert math.isclose(x2.mean(), mean, rel_tol=0.01)
    assert math.isclose(x2.var(), var, rel_tol=0.03)


@pytest.mark.parametrize("sigma", [0.25, 0.6, 1.2])
def test_clipped_lognormal_mean(sigma):
    z = np.random.default_rng(3).standard_normal(2_000_000)
    mc = np.clip(np.exp(sigma * z - sigma**2 / 2), 0.2, 5.0).mean()
    assert math.isclose(clipped_lognormal_mean(sigma, 0.2, 5.0), mc, abs_tol=3e-3)


# ----------------------------------------------------------------------------- local clocks
@pytest.mark.parametrize(
    "tzid",
    ["America/Vancouver", "Europe/London", "Asia/Kolkata", "Australia/Lord_Howe", "America/Havana"],
)
def test_local_reference_agrees_with_tzdata(tzid):
    # Oct-Dec 2026 holds transitions, some of them newer than polars' bundled database
    first = int(dt.datetime(2026, 10, 1, tzinfo=UTC).timestamp()) // 3600
    n = 24 * 92
    ref = LocalClockReference([tzid], first, n, 3600)
    starts = (first + np.arange(n, dtype=np.int64)) * 3600 * US
    off = ref.offset[0]
    table = off != SENTINEL
    want = zoneinfo_local(starts, tzid) - starts
    assert np.array_equal(off[table], want[table])
    # buckets with a transition go row by row; probe their inside
    inside = starts[~table] + 1_799 * US
    if len(inside):
        assert np.array_equal(ref.convert(inside, tzid), zoneinfo_local(inside, tzid))
    assert ref.figures()["tzdata_version"]


@pytest.mark.parametrize(
    ("state", "dataset"),
    [("s2", "latent_intensity"), ("s3", "bucket_counts"), ("s4", "bucket_counts")],
)
def test_rules_over_an_unpublished_state_fail_naming_it(eng, state, dataset):
    """Every rule of the state fails (none passes unevaluated), each naming the missing
    upstream dataset with UPSTREAM_MISSING rather than a raw file-system error."""
    for name in ("latent_intensity", "bucket_counts", "arrival_events"):
        if name != "latent_intensity" or state == "s2":
            shutil.rmtree(os.path.dirname(eng.store.dataset_path(name, YEAR)))
    results = evaluate(eng.ctx, eng.store, state, YEAR)
    assert results and not any(r.passed for r in results)
    named = [r for r in results if r.examples and "UPSTREAM_MISSING" in r.examples[0]]
    assert named, [r.examples for r in results]
    assert all(r.examples[0].startswith(f"{dataset};") for r in named if "_SCHEMA" not in r.code)
