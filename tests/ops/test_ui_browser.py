"""The Dagster web UI in a real browser: headless Chromium against ``dagster dev``.

A person materialises ``baseline|2026`` of the tiny world from the asset graph (Materialize
all -> pick the partition -> Launch 1 run), then reads what the engine reports: every asset
of S1-S5 in the graph, the run's progress and ETA tags in the Runs list, the metadata of
``s4_arrival_events`` (events, events/s, the weekly-profile plot) and its passed checks.
Then a published dataset is corrupted between two runs: a duplicated row in the bucket
counts makes S4's blocking checks fail, the UI shows the failed check, S5 never runs, and
the alert sensor (running in the daemon) writes the alert to the alert log.
Last, a backfill of two partitions, one of them corrupted the same way: the Checks tab of
``s4_arrival_events`` lists each evaluation under its own partition (failed under the corrupted
one, passed under the other), and the alert (log line and webhook) names the same partition.

Screenshots go to ``artifacts/ui/``; every UI assertion is on page text or DOM.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_backfill import (
    ENGINE_ASSETS,
    TERMINAL_RUN_STATUSES,
    check_executions,
    launch_backfill,
    launch_run,
    run_by_id,
    runs,
    wait_for_backfill,
    wait_for_run,
)
from engine_assets.definitions import defs
from engine_core.checks.catalogue import rules_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

PARTITION = "baseline|2026"
PARTITION_TAGS = {"dagster/partition/scenario": "baseline", "dagster/partition/year": "2026"}
GROUP_PAGE = "/locations/arrival_engine/asset-groups/arrival_engine"
S4 = "s4_arrival_events"
S4_CHECKS = rules_for("s4")
RUN_TIMEOUT_S = 240
ALERT_TIMEOUT_S = 120  # the sensor ticks at most every 30 s


UI_EXPECT_TIMEOUT_MS = 30_000  # pages load slowly while the run worker holds both cores


def _expect():
    from playwright.sync_api import expect

    expect.set_options(timeout=UI_EXPECT_TIMEOUT_MS)
    return expect


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["tags"]}


def _shoot(page, screenshots: Path, name: str) -> Path:
    path = screenshots / name
    page.screenshot(path=str(path))
    return path


def run_row(page, run_id: str):
    """The row of a run in the Runs list (a virtualised grid of divs, not a table)."""
    link = page.locator(f'a[href="/runs/{run_id}"]')
    return page.locator("div[class*='rowGrid']").filter(has=link)


def launch_partition_from_ui(page, server, screenshots: Path) -> str:
    """Materialize all -> scenario ``baseline``, year ``2026`` -> Launch 1 run; the run id."""
    expect = _expect()
    known = {r["runId"] for r in runs(server.dev.gql)}
    page.goto(server.url + GROUP_PAGE)
    page.get_by_role("button", name="Materialize all").first.click()
    dialog = page.get_by_role("dialog")
    # every asset of the group: the engine's chain and the fidelity report after S4
    n_assets = len(defs.resolve_asset_graph().get_all_asset_keys())
    expect(dialog.get_by_text(f"Launch runs to materialize {n_assets} assets")).to_be_visible()
    year = dialog.get_by_placeholder("ex: 2024, 2025")
    year.fill("2026")
    year.press("Enter")
    dialog.get_by_text("Select a partition or create one").click()
    page.get_by_role("menuitem").filter(has_text="baseline").first.click()
    page.keyboard.press("Escape")  # closes the scenario menu, not the dialog
    expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible()
    launch = dialog.get_by_role("button", name="Launch 1 run")
    expect(launch).to_be_enabled()
    _shoot(page, screenshots, "01_launch_dialog_baseline_2026.png")
    launch.click()
    expect(page.get_by_role("dialog")).to_have_count(0, timeout=60_000)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        new = [
            r
            for r in runs(server.dev.gql, {"dagster/partition": PARTITION})
            if r["runId"] not in known
        ]
        if new:
            assert _tags(new[0]).get("dagster/from_ui") == "true"
            return new[0]["runId"]
        time.sleep(0.5)
    raise AssertionError("no run appeared after Launch 1 run")


def wait_showing_progress(page, server, run_id: str, screenshots: Path) -> dict:
    """Wait for the run, photographing the Runs list once while it reports progress."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    photographed = False
    while True:
        run = run_by_id(server.dev.gql, run_id)
        if run["status"] in TERMINAL_RUN_STATUSES:
            return run
        if not photographed and "engine/progress" in _tags(run):
            page.goto(server.url + "/runs")
            row = run_row(page, run_id)
            _expect()(row.get_by_text("engine/progress:", exact=False)).to_be_visible()
            _shoot(page, screenshots, "02_runs_list_while_running.png")
            photographed = True
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} still {run['status']} after {RUN_TIMEOUT_S}s")
        time.sleep(1.0)


def test_partition_materialised_from_the_ui(page, engine_server, screenshots):
    expect = _expect()
    server = engine_server

    # Every asset of S1-S5 (and the world) in the asset graph.
    page.goto(server.url + "/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for asset in ENGINE_ASSETS:
        expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    expect(page.get_by_role("button", name="Materialize all")).to_be_visible()
    _shoot(page, screenshots, "00_asset_graph.png")

    run_id = launch_partition_from_ui(page, server, screenshots)
    run = wait_showing_progress(page, server, run_id, screenshots)
    assert run["status"] == "SUCCESS", f"run {run_id} {run['status']}"
    tags = _tags(run)
    assert tags["engine/progress"] == "s5 100.0%" and tags["engine/eta_s"] == "0"
    events = next(
        int(e["intValue"])
        for s in run["stepStats"]
        for m in s["materializations"]
        if m["assetKey"]["path"] == [S4]
        for e in m["metadataEntries"]
        if e["label"] == "events"
    )
    assert events > 100_000

    # The run page says so.
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.get_by_text("Success", exact=True).first).to_be_visible()
    expect(page.get_by_text(f"partition: {PARTITION}").first).to_be_visible()

    # The Runs list shows the engine's progress and ETA tags of the run.
    page.goto(server.url + "/runs")
    row = run_row(page, run_id)
    expect(row).to_have_count(1)
    expect(row.get_by_text("engine/progress: s5 100.0%")).to_be_visible()
    expect(row.get_by_text("engine/eta_s: 0")).to_be_visible()
    expect(row.get_by_text("engine/rows_per_s:", exact=False)).to_be_visible()
    expect(row.get_by_text("Success")).to_be_visible()
    _shoot(page, screenshots, "03_runs_list_progress_tags.png")

    # s4_arrival_events: latest materialisation of the partition, its metadata and plot.
    page.goto(f"{server.url}/assets/{S4}")
    expect(page.get_by_text(PARTITION).first).to_be_visible()
    for key, value in (("events", str(events)), ("events_per_s", None), ("elapsed_s", None)):
        cells = page.locator("tr", has=page.get_by_text(key, exact=True)).first
        expect(cells).to_be_visible()
        if value is not None:
            expect(cells).to_contain_text(value)
    page.locator("tr", has=page.get_by_text("events_per_s", exact=True)).first.evaluate(
        "row => row.scrollIntoView({block: 'center'})"
    )
    _shoot(page, screenshots, "04_s4_metadata.png")
    page.locator("tr", has=page.get_by_text("plot_weekly_profile", exact=True)).get_by_text(
        "Show Markdown"
    ).click()
    plot = page.get_by_role("dialog")
    expect(plot.get_by_text("Weekly profile")).to_be_visible()
    image = plot.locator("img").first
    expect(image).to_be_visible()
    width, height, src = image.evaluate(
        "e => [e.naturalWidth, e.naturalHeight, e.src.slice(0, 22)]"
    )
    assert src == "data:image/png;base64," and width > 300 and height > 100
    _shoot(page, screenshots, "05_s4_weekly_profile_plot.png")
    page.keyboard.press("Escape")

    # ... and every one of its checks passed on this partition. The list's status summarises
    # all partitions, so each check's latest execution is read from its detail pane.
    page.goto(f"{server.url}/assets/{S4}?view=checks")
    expect(page.get_by_text(f"Checks ({len(S4_CHECKS)})")).to_be_visible()
    for rule in S4_CHECKS:
        page.get_by_text(rule.code.lower(), exact=True).first.click()
        expect(page.get_by_text(f"{rule.code} (", exact=False)).to_be_visible()
        expect(page.get_by_text("Evaluation result").locator("xpath=..")).to_contain_text("Passed")
        expect(page.get_by_text("Partition", exact=True).locator("xpath=..")).to_contain_text(
            PARTITION
        )
        blocking = page.get_by_text("This is a blocking asset check", exact=False)
        expect(blocking).to_have_count(1 if rule.blocking else 0)
    page.get_by_text("events_conservation", exact=True).first.click()
    expect(page.get_by_text("EVENTS_CONSERVATION (blocking)", exact=False)).to_be_visible()
    _shoot(page, screenshots, "06_s4_checks_passed.png")


def _published_bucket_counts(
    storage_root: Path, scenario: str = "baseline", year: int = 2026
) -> Path | None:
    found = sorted(
        storage_root.glob(f"*/*/seed=42/bucket_counts/scenario={scenario}/year={year}/*.parquet")
    )
    return found[0] if found else None


def _duplicate_first_row(part: Path) -> None:
    """Damage a published S3 dataset: one (series, bucket) row twice."""
    table = pq.read_table(part)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), part)


def _alerts(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_failed_blocking_check_shows_in_the_ui_and_alerts(page, engine_server, screenshots):
    expect = _expect()
    server = engine_server
    gql = server.dev.gql
    if _published_bucket_counts(server.storage_root) is None:  # this test run alone
        upstream = list(ENGINE_ASSETS[: ENGINE_ASSETS.index("s3_bucket_counts") + 1])
        first = wait_for_run(gql, launch_run(gql, upstream, PARTITION, PARTITION_TAGS), 240)
        assert first["status"] == "SUCCESS"
    part = _published_bucket_counts(server.storage_root)
    assert part is not None

    # Damage the published S3 dataset between two runs: one (series, bucket) row twice.
    _duplicate_first_row(part)
    alerts_before = len(_alerts(server.alert_log))

    run_id = launch_run(gql, [S4, "s5_validation_report"], PARTITION, PARTITION_TAGS)
    run = wait_for_run(gql, run_id, RUN_TIMEOUT_S)
    assert run["status"] == "FAILURE"
    steps = {s["stepKey"]: s["status"] for s in run["stepStats"]}
    assert steps == {S4: "FAILURE"}, f"S5 must not run after a failed blocking check: {steps}"

    # The run page: failed, S4 errored, S5 never executed.
    page.goto(f"{server.url}/runs/{run_id}")
    expect(page.get_by_text("Failure", exact=True).first).to_be_visible()
    expect(page.get_by_text("Errored (1)")).to_be_visible()
    expect(page.get_by_text("Not executed (1)")).to_be_visible()
    expect(page.get_by_text("events_id_unique", exact=False).first).to_be_visible()
    _shoot(page, screenshots, "07_failed_run.png")

    # The asset's checks: the blocking check failed, with the offending ids.
    page.goto(f"{server.url}/assets/{S4}?view=checks")
    item = page.get_by_text("events_id_unique", exact=True).first
    expect(item).to_be_visible()
    item.click()
    expect(page.get_by_text("This is a blocking asset check", exact=False)).to_be_visible()
    expect(page.get_by_text("Evaluation result").locator("xpath=..")).to_contain_text("Failed")
    expect(page.get_by_text(PARTITION).first).to_be_visible()
    expect(page.get_by_text("duplicates", exact=True).first).to_be_visible()
    _shoot(page, screenshots, "08_failed_blocking_check.png")
    page.get_by_text("Show JSON").first.click()
    expect(page.get_by_role("dialog")).to_contain_text("appears more than once")
    page.keyboard.press("Escape")

    # The alert sensor, ticking in the daemon, turned it into an alert.
    deadline = time.monotonic() + ALERT_TIMEOUT_S
    while True:
        new = [a for a in _alerts(server.alert_log)[alerts_before:] if a["run_id"] == run_id]
        if any(a["check"] == "events_id_unique" for a in new):
            break
        assert time.monotonic() < deadline, f"no alert in {server.alert_log} for run {run_id}"
        time.sleep(2.0)
    alert = next(a for a in new if a["check"] == "events_id_unique")
    assert alert["asset"] == S4
    assert alert["partition"] == PARTITION
    assert alert["blocking"] is True and alert["severity"] == "ERROR"
    assert {a["check"] for a in new} <= {"events_id_unique", "events_sorted", "events_seq"}
    assert len(new) == len({a["check"] for a in new}), "an alert was sent twice"


CLEAN, CORRUPTED = "baseline|2024", "stress|2024"
BLOCKING_CHECK = "events_id_unique"
BACKFILL_TIMEOUT_S = 300


def _partition_tags(key: str) -> dict[str, str]:
    scenario, year = key.split("|")
    return {"dagster/partition/scenario": scenario, "dagster/partition/year": year}


def test_backfill_shows_each_partitions_check_results(page, engine_server, screenshots):
    expect = _expect()
    server = engine_server
    gql = server.dev.gql

    # Upstream of S4 for both partitions (two plain runs), then one of them corrupted.
    upstream = list(ENGINE_ASSETS[: ENGINE_ASSETS.index("s3_bucket_counts") + 1])
    firsts = [launch_run(gql, upstream, k, _partition_tags(k)) for k in (CLEAN, CORRUPTED)]
    for run_id in firsts:
        assert wait_for_run(gql, run_id, RUN_TIMEOUT_S)["status"] == "SUCCESS"
    part = _published_bucket_counts(server.storage_root, "stress", 2024)
    assert part is not None
    _duplicate_first_row(part)
    alerts_before, posts_before = len(_alerts(server.alert_log)), len(server.webhook.posts)

    # An asset backfill of S4 and S5 over both partitions, through the daemon and the queue.
    backfill_id = launch_backfill(
        gql, [CLEAN, CORRUPTED], assets=[S4, "s5_validation_report"], title="two partitions"
    )
    status, backfill_runs = wait_for_backfill(gql, backfill_id, BACKFILL_TIMEOUT_S)
    assert status["status"] == "COMPLETED_FAILED", status
    run_of = {_tags(r)["dagster/partition"]: r for r in backfill_runs}
    assert sorted(run_of) == sorted([CLEAN, CORRUPTED]), "one run per partition"
    for key, run in run_of.items():
        tags = _tags(run)
        assert {k: tags[k] for k in _partition_tags(key)} == _partition_tags(key)
        assert not any(t.startswith("dagster/asset_partition_range") for t in tags)
    assert run_of[CLEAN]["status"] == "SUCCESS"
    assert run_of[CORRUPTED]["status"] == "FAILURE"
    assert {s["stepKey"]: s["status"] for s in run_of[CORRUPTED]["stepStats"]} == {S4: "FAILURE"}

    # Every S4 check evaluation of the backfill is recorded under its run's partition.
    for rule in S4_CHECKS:
        for key, run in run_of.items():
            mine = [
                e
                for e in check_executions(gql, S4, rule.code.lower(), partition=key)
                if e["runId"] == run["runId"]
            ]
            assert [e["partition"] for e in mine] == [key], (rule.code, key, mine)
    latest = {k: check_executions(gql, S4, BLOCKING_CHECK, partition=k)[0] for k in run_of}
    assert latest[CORRUPTED]["status"] == "FAILED"
    assert latest[CORRUPTED]["runId"] == run_of[CORRUPTED]["runId"]
    assert latest[CLEAN]["status"] == "SUCCEEDED"
    assert latest[CLEAN]["runId"] == run_of[CLEAN]["runId"]

    # The Checks tab: the execution history lists the failed evaluation under the corrupted
    # partition and the passed one under the other, each linked to its own backfill run.
    page.goto(f"{server.url}/assets/{S4}?view=checks&checkDetail={BLOCKING_CHECK}")
    expect(page.get_by_text(f"{BLOCKING_CHECK.upper()} (blocking)", exact=False)).to_be_visible()
    page.get_by_role("tab", name="Execution history").click()
    expect(page.get_by_role("columnheader", name="Partition")).to_be_visible()
    for key, result in ((CORRUPTED, "Failed"), (CLEAN, "Passed")):
        row = page.locator("tbody tr").filter(has=page.get_by_role("cell", name=key, exact=True))
        expect(row).to_have_count(1)
        expect(row.locator("td").first).to_have_text(result)
        run_link = row.locator(f'a[href^="/runs/{run_of[key]["runId"]}"]')
        expect(run_link.first).to_be_visible()
    _shoot(page, screenshots, "09_backfill_check_history_by_partition.png")

    # The Partitions tab draws each partition's status; pick a scenario, then the year.
    page.locator('button[role="tab"]', has_text="Partitions").click()
    for key, result, shot in (
        (CORRUPTED, "Failed", "10_backfill_check_partition_failed.png"),
        (CLEAN, "Passed", "11_backfill_check_partition_passed.png"),
    ):
        for dimension, value in zip(("scenario", "year"), key.split("|"), strict=True):
            column = (
                page.locator("div")
                .filter(has=page.get_by_placeholder(f"Filter by {dimension}…"))
                .filter(has=page.get_by_text(value, exact=True))
                .last
            )
            column.get_by_text(value, exact=True).filter(visible=True).click()
        detail = (
            page.locator("div")
            .filter(has=page.get_by_text("Latest execution", exact=True))
            .filter(has=page.get_by_text(key, exact=True))
            .last
        )
        expect(detail).to_contain_text(result)
        expect(detail.get_by_role("link", name=run_of[key]["runId"][:8])).to_be_visible()
        _shoot(page, screenshots, shot)

    # The alert of the failed check names the partition the UI shows, in the log and the
    # webhook payload; the clean partition raised none.
    deadline = time.monotonic() + ALERT_TIMEOUT_S
    while True:
        new = _alerts(server.alert_log)[alerts_before:]
        posted = [p["json"] for p in server.webhook.posts[posts_before:]]
        failed_run = run_of[CORRUPTED]["runId"]
        if any(a["run_id"] == failed_run and a["check"] == BLOCKING_CHECK for a in new) and any(
            p["run_id"] == failed_run and p["check"] == BLOCKING_CHECK for p in posted
        ):
            break
        assert time.monotonic() < deadline, f"no alert for run {failed_run} of the backfill"
        time.sleep(2.0)
    line = next(a for a in new if a["run_id"] == failed_run and a["check"] == BLOCKING_CHECK)
    payload = next(p for p in posted if p["run_id"] == failed_run and p["check"] == BLOCKING_CHECK)
    assert line["partition"] == payload["partition"] == latest[CORRUPTED]["partition"] == CORRUPTED
    assert line["webhook"].startswith("delivered")
    assert not [a for a in new if a["run_id"] == run_of[CLEAN]["runId"]]
