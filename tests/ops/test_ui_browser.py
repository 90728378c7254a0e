"""The Dagster web UI in a real browser: headless Chromium against ``dagster dev``.

A person materialises ``baseline|2026`` of the tiny world from the asset graph (Materialize
all -> pick the partition -> Launch 1 run), then reads what the engine reports: every asset
of S1-S5 in the graph, the run's progress and ETA tags in the Runs list, the metadata of
``s4_arrival_events`` (events, events/s, the weekly-profile plot) and its passed checks.
Then a published dataset is corrupted between two runs: a duplicated row in the bucket
counts makes S4's blocking checks fail, the UI shows the failed check, S5 never runs, and
the alert sensor (running in the daemon) writes the alert to the alert log.

Screenshots go to ``artifacts/ui/``; every assertion is on page text or DOM.
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
    launch_run,
    run_by_id,
    runs,
    wait_for_run,
)
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
    expect(
        dialog.get_by_text(f"Launch runs to materialize {len(ENGINE_ASSETS)} assets")
    ).to_be_visible()
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


def _published_bucket_counts(storage_root: Path) -> Path | None:
    found = sorted(
        storage_root.glob("*/*/seed=42/bucket_counts/scenario=baseline/year=2026/*.parquet")
    )
    return found[0] if found else None


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
    table = pq.read_table(part)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), part)
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
