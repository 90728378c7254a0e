"""Fixtures of the operations tests: a real ``dagster dev`` (web server + daemon) on the tiny
world, shared by the browser and backfill tests, and headless Chromium driven by Playwright.

The server runs from the repository's ``workspace.yaml`` with a temporary ``DAGSTER_HOME``
(the repository's ``dagster.yaml`` copied in), a temporary storage root and alert log, a local
webhook receiving the alerts, the first-visit modal dismissed and the failed-check alert sensor
started.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.bench_backfill import DagsterDev, set_nux_seen, start_sensor
from tests.assets.conftest import WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ALERT_SENSOR = "check_failure_alerts"
MAX_CONCURRENT_RUNS = 2
SCREENSHOTS = REPO / "artifacts" / "ui"


@dataclass
class EngineServer:
    """The running ``dagster dev`` and the places its runs write to."""

    dev: DagsterDev
    storage_root: Path
    alert_log: Path
    webhook: WebhookReceiver

    @property
    def url(self) -> str:
        return self.dev.url


# Package scope: the server (web server, daemon, ~1 GiB) stops once tests/ops is done.
@pytest.fixture(scope="package")
def engine_server(tmp_path_factory) -> Iterator[EngineServer]:
    base = tmp_path_factory.mktemp("dagster-dev")
    storage_root, alert_log = base / "data", base / "alerts.jsonl"
    env = {
        "ENGINE_WORLD": "tiny",
        "ENGINE_STORAGE_ROOT": str(storage_root),
        "ENGINE_ALERT_LOG": str(alert_log),
        "ENGINE_SEED": "42",
    }
    for name in ("ENGINE_THREADS", "ENGINE_POLICY"):
        env[name] = ""  # nothing from the caller's environment leaks into the runs
    with WebhookReceiver() as webhook:
        env["ENGINE_ALERT_WEBHOOK"] = webhook.url
        dev = DagsterDev(base / "dagster_home", env, max_concurrent_runs=MAX_CONCURRENT_RUNS)
        with dev:
            set_nux_seen(dev.gql)
            assert start_sensor(dev.gql, ALERT_SENSOR) == "RUNNING"
            yield EngineServer(dev, storage_root, alert_log, webhook)
    assert dev.process is not None and dev.process.poll() is not None, "dagster dev still runs"


def _install_chromium() -> str | None:
    """Install Debian's chromium when it is missing; the reason it could not be, or None."""
    if os.path.exists(CHROMIUM):
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"{CHROMIUM} is missing and apt-get cannot run here (not root or no apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-500:]}"
    return None if os.path.exists(CHROMIUM) else f"apt-get installed no {CHROMIUM}"


@pytest.fixture(scope="package")
def chromium() -> Iterator[object]:
    """Headless Debian Chromium through Playwright (skips only when it cannot be installed)."""
    reason = _install_chromium()
    if reason is not None:
        pytest.skip(f"browser tests need Chromium: {reason}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # a dev dependency: a missing one is an install error, not a skip
        pytest.fail("playwright is not installed: pip install -e '.[dev]'")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(chromium, engine_server) -> Iterator[object]:
    context = chromium.new_context(viewport={"width": 1600, "height": 1000})
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
