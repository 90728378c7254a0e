"""Fixtures of the Dagster tests: resources on a temporary storage root, a test instance,
a local webhook receiver, and one shared materialisation of the tiny world's baseline|2026."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from engine_assets.definitions import ENGINE_ASSETS
from engine_assets.partitions import EnginePartition
from engine_assets.resources import AlertSettings, EngineSettings, EngineStorage

TINY = "tiny"
PARTITION = EnginePartition(year=2026, scenario="baseline")


def engine_resources(root: str | Path, world: str = TINY, **alerts) -> dict:
    return {
        "storage": EngineStorage(root=str(root)),
        "engine": EngineSettings(world=world, seed=42),
        "alerts": AlertSettings(**alerts),
    }


class WebhookReceiver:
    """An HTTP server on 127.0.0.1 recording every JSON POST it receives."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append(
                    {"content_type": self.headers.get("Content-Type"), "json": json.loads(body)}
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """world -> s5 of the tiny world, baseline|2026, materialised once for the session."""
    root = tmp_path_factory.mktemp("tiny-storage")
    with dg.instance_for_test() as inst:
        result = dg.materialize(
            ENGINE_ASSETS,
            partition_key=PARTITION.key,
            resources=engine_resources(root),
            instance=inst,
            raise_on_error=False,
        )
        yield {"result": result, "root": str(root), "instance": inst}
