"""A loopback HTTP proxy in front of an S3 server that fails a share of the requests.

Each request is forwarded to the upstream server unchanged, answered with HTTP 500 (an S3
``InternalError`` body), or dropped (the connection is closed without an answer), by a seeded
random draw (``error_rate``, ``drop_rate``) or by a queued rule that fails the next ``count``
requests matching a method and a key fragment, whatever the draw. Every request is counted; past
``max_requests`` the proxy answers 503 to everything and records that the budget was blown,
so a client that loops forever ends instead of hanging the test.
"""

from __future__ import annotations

import http.client
import random
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

INTERNAL_ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


@dataclass
class FailNext:
    """Fail the next ``count`` requests whose method is ``method`` and path contains ``key``."""

    method: str
    key: str
    count: int
    kind: str = "error"  # "error" (HTTP 500) or "drop"


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        error_rate: float = 0.0,
        drop_rate: float = 0.0,
        seed: int = 0,
        max_requests: int = 20_000,
    ) -> None:
        split = urlsplit(upstream)
        self.upstream_host = split.hostname or "127.0.0.1"
        self.upstream_port = split.port or 80
        self.error_rate, self.drop_rate = error_rate, drop_rate
        self.max_requests = max_requests
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.rules: list[FailNext] = []
        self.counts: Counter[str] = Counter()  # requests, forwarded, error, drop, over_budget
        self.faults_by_method: Counter[str] = Counter()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, method: str, key: str, count: int, kind: str = "error") -> None:
        with self._lock:
            self.rules.append(FailNext(method, key, count, kind))

    def set_rates(self, error_rate: float, drop_rate: float) -> None:
        with self._lock:
            self.error_rate, self.drop_rate = error_rate, drop_rate

    @property
    def faults(self) -> int:
        return self.counts["error"] + self.counts["drop"]

    def _decide(self, method: str, path: str) -> str:
        with self._lock:
            self.counts["requests"] += 1
            if self.counts["requests"] > self.max_requests:
                self.counts["over_budget"] += 1
                return "over_budget"
            for rule in self.rules:
                if rule.count > 0 and rule.method == method and rule.key in path:
                    rule.count -= 1
                    outcome = rule.kind
                    break
            else:
                draw = self._random.random()
                if draw < self.error_rate:
                    outcome = "error"
                elif draw < self.error_rate + self.drop_rate:
                    outcome = "drop"
                else:
                    outcome = "forwarded"
            self.counts[outcome] += 1
            if outcome != "forwarded":
                self.faults_by_method[f"{method} {outcome}"] += 1
            return outcome

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _handle(self) -> None:
                body = self._body()
                outcome = proxy._decide(self.command, self.path)
                if outcome == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)  # no answer at all: a dropped connection
                    return
                if outcome in ("error", "over_budget"):
                    status = 500 if outcome == "error" else 503
                    self._reply(status, [("Content-Type", "application/xml")], INTERNAL_ERROR)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port,
                                                  timeout=60)  # fmt: skip
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    reply_headers = response.getheaders()
                    if self.command == "HEAD":
                        self.send_response(response.status)
                        for name, value in reply_headers:
                            if name.lower() not in HOP_BY_HOP:
                                self.send_header(name, value)
                        self.end_headers()
                    else:
                        self._reply(response.status, reply_headers, data)
                finally:
                    conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler
