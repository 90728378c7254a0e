"""The S4 rules over merchant shards (engine_core/checks/rules_s4.py, event_shards.py): the
merged verdicts of any number of shards are the single pass's, and what lies across shards —
a duplicate id in two shards, a row among another shard's rows, an order break exactly at a
shard boundary — still fails.

``tests/data/s4_single_pass_verdicts.json`` holds the verdicts of the rules as one pass over
the partition (recorded before the rules were sharded) for the runs below."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine_core.checks import evaluate
from engine_core.checks.event_shards import drop_ids, plan_s4_rules, rule_shards
from engine_core.checks.rules_s4 import s4_rules
from engine_core.pipeline import Run, RunConfig
from tests.pipeline.conftest import run_states

UTC = dt.UTC
YEAR = 2026
RUNS = {
    "tiny": (dt.datetime(2026, 1, 1, tzinfo=UTC), dt.datetime(2026, 2, 1, tzinfo=UTC)),
    "small": (dt.datetime(2026, 3, 1, tzinfo=UTC), dt.datetime(2026, 3, 8, tzinfo=UTC)),
}
SINGLE_PASS = json.loads(
    (Path(__file__).parents[1] / "data" / "s4_single_pass_verdicts.json").read_text()
)["verdicts"]
# figures that name the environment, not the data
ENVIRONMENT = ("reference", "tzdata_version")


def comparable(verdicts: list[dict]) -> list[dict]:
    return [{**v, "figures": {k: x for k, x in v["figures"].items() if k not in ENVIRONMENT}}
            for v in verdicts]


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, str]:
    out = {}
    for world, (start, end) in RUNS.items():
        out[world] = str(tmp_path_factory.mktemp(world) / "data")
        run_states(out[world], start, end, world=world)
    return out


def open_run(root: str, world: str = "tiny") -> Run:
    start, end = RUNS[world]
    return Run.open(RunConfig(world=world, scenario="baseline", start=start, end=end,
                              storage_root=root))


@pytest.mark.parametrize("world", list(RUNS))
def test_merged_verdicts_of_k_shards_equal_the_single_pass(roots, world):
    eng = open_run(roots[world], world)
    want = comparable(SINGLE_PASS[world])
    assert all(v["passed"] for v in want)
    for k in (1, 3, 7):
        got = comparable([r.to_dict() for r in s4_rules(eng.ctx, eng.store, YEAR, shards=k)])
        assert got == want, f"{k} shards"


@pytest.fixture
def eng(roots, tmp_path) -> Run:
    """A private copy of the tiny run."""
    root = str(tmp_path / "data")
    shutil.copytree(roots["tiny"], root)
    return open_run(root)


def shard_ids(eng: Run, k: int) -> list[tuple[int, int]]:
    """The merchant ids [lo, hi] each rule shard owns when ``k`` are asked for (balanced by
    cells: a few fewer when merchants are uneven)."""
    plan = plan_s4_rules(eng.ctx, eng.store, YEAR, rule_shards(eng.ctx, YEAR, at_least=k))
    drop_ids(eng.store, plan)
    assert k - 2 <= len(plan.shards) <= k
    return [(s.id_lo, s.id_hi) for s in plan.shards]


def events(eng: Run) -> tuple[str, pa.Table]:
    (f,) = eng.store.dataset_files("arrival_events", YEAR)
    return f, pq.read_table(f)


def verdicts(eng: Run, k: int) -> dict:
    return {r.code: r for r in s4_rules(eng.ctx, eng.store, YEAR, shards=k)}


def failing(results: dict) -> set[str]:
    return {c for c, r in results.items() if not r.passed}


def test_a_duplicate_id_in_two_shards_fails(eng):
    f, t = events(eng)
    bounds = shard_ids(eng, 3)
    mid = t.column("merchant_id").to_numpy()
    first = int(np.flatnonzero(mid <= bounds[0][1])[0])
    last = int(np.flatnonzero(mid >= bounds[2][0])[-1])
    aid = t.column("arrival_id").to_numpy().copy()
    aid[last] = aid[first]  # shard 0's first id again in shard 2
    pq.write_table(t.set_column(0, "arrival_id", pa.array(aid, pa.uint64())), f)
    for k in (1, 3):
        r = verdicts(eng, k)["EVENTS_ID_UNIQUE"]
        assert not r.passed and r.figures["duplicates"] == 1
        assert r.examples == (f"arrival_id={aid[first]}; appears more than once",)


def test_a_duplicate_id_in_two_shards_fails_with_id_classes(eng, monkeypatch):
    from engine_core.checks import event_shards

    monkeypatch.setattr(event_shards, "ID_CLASS_BUDGET", 10_000)
    f, t = events(eng)
    mid = t.column("merchant_id").to_numpy()
    bounds = shard_ids(eng, 7)
    aid = t.column("arrival_id").to_numpy().copy()
    a = int(np.flatnonzero(mid <= bounds[1][1])[-1])
    b = int(np.flatnonzero(mid >= bounds[-1][0])[0])
    aid[b] = aid[a]
    pq.write_table(t.set_column(0, "arrival_id", pa.array(aid, pa.uint64())), f)
    r = verdicts(eng, 7)["EVENTS_ID_UNIQUE"]
    assert r.figures["id_classes"] > 1
    assert not r.passed and r.figures["duplicates"] == 1


def test_a_row_among_another_shards_rows_fails(eng):
    f, t = events(eng)
    bounds = shard_ids(eng, 3)
    mid = t.column("merchant_id").to_numpy()
    # the last shard's first row, moved into the middle of the first shard's rows
    j = int(np.flatnonzero(mid >= bounds[2][0])[0])
    i = int(np.flatnonzero(mid <= bounds[0][1])[-1]) // 2
    order = np.concatenate([np.arange(i), [j], np.delete(np.arange(i, t.num_rows), j - i)])
    pq.write_table(t.take(order), f)
    one, three = verdicts(eng, 1), verdicts(eng, 3)
    assert failing(one) == failing(three) and "EVENTS_SORTED" in failing(three)
    assert (three["EVENTS_SORTED"].figures["offending_rows"]
            == one["EVENTS_SORTED"].figures["offending_rows"] == 1)
    assert three["EVENTS_SORTED"].examples == one["EVENTS_SORTED"].examples


def test_a_row_of_an_unknown_merchant_fails(eng):
    f, t = events(eng)
    mid = t.column("merchant_id").to_numpy().copy()
    bounds = shard_ids(eng, 3)
    # an id no merchant has, between the first shard's merchants (owned by the first shard)
    # and above every merchant (owned by the last)
    k = int(np.flatnonzero(mid <= bounds[0][1])[-1])
    mid[k] = mid[k] + 1 if mid[k] + 1 not in mid else mid[k]
    mid[-1] = int(mid.max()) + 1000
    pq.write_table(t.set_column(t.schema.get_field_index("merchant_id"), "merchant_id",
                                pa.array(mid, pa.uint64())), f)
    one, three = verdicts(eng, 1), verdicts(eng, 3)
    assert {"EVENTS_ROUTING_MEMBERSHIP", "EVENTS_CONSERVATION"} <= failing(three)
    assert failing(one) == failing(three)
    for code in failing(one):
        assert three[code].figures.get("offending_rows") == one[code].figures.get(
            "offending_rows"), code


def test_an_order_break_exactly_at_a_shard_boundary_fails(eng):
    f, t = events(eng)
    bounds = shard_ids(eng, 3)
    mid = t.column("merchant_id").to_numpy()
    last0 = int(np.flatnonzero(mid <= bounds[0][1])[-1])  # shard 0's last row
    order = np.arange(t.num_rows)
    order[[last0, last0 + 1]] = order[[last0 + 1, last0]]  # and shard 1's first, swapped
    pq.write_table(t.take(order), f)
    one, three = verdicts(eng, 1), verdicts(eng, 3)
    assert failing(three) == failing(one) == {"EVENTS_SORTED"}
    assert three["EVENTS_SORTED"].figures == one["EVENTS_SORTED"].figures
    assert three["EVENTS_SORTED"].examples == one["EVENTS_SORTED"].examples


def test_sharded_rules_are_what_evaluate_gives(eng):
    assert [r.to_dict() for r in evaluate(eng.ctx, eng.store, "s4", YEAR)] == [
        r.to_dict() for r in s4_rules(eng.ctx, eng.store, YEAR, shards=5)]
