"""A webhook receiver for notification tests and the benchmark: a real HTTP server on loopback
that records every POST, and can be told to fail or to go away and come back on its port."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tests.servers import free_port


class _Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that goes away (a registry stopping) is no error of the receiver's."""


@dataclass
class Delivery:
    at: float  # time.monotonic() when it arrived
    path: str
    headers: dict[str, str]
    body: Any  # the JSON posted; None when it was not JSON
    status: int  # what the receiver answered


@dataclass
class Receiver:
    port: int
    status: int = 200  # what every POST is answered with
    keep: bool = True  # False: count events only (the benchmark)
    deliveries: list[Delivery] = field(default_factory=list)
    counted: int = 0  # events received with a 2xx answer
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: http.server.ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        """The events of every accepted delivery (to `path` only, when given), in arrival
        order."""
        with self.lock:
            return [
                event
                for delivery in self.deliveries
                if 200 <= delivery.status < 300 and (path is None or delivery.path == path)
                for event in (delivery.body or {}).get("events", [])
            ]

    def attempts(self) -> list[Delivery]:
        with self.lock:
            return list(self.deliveries)

    def up(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                status = receiver.status
                try:
                    body = json.loads(raw) if receiver.keep else None
                except ValueError:
                    body = None
                with receiver.lock:
                    if receiver.keep:
                        receiver.deliveries.append(
                            Delivery(time.monotonic(), self.path, dict(self.headers), body, status)
                        )
                    if 200 <= status < 300:
                        receiver.counted += raw.count(b'"action"')
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Stops listening: deliveries are refused until `up`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextlib.contextmanager
def run_receiver(*, up: bool = True, keep: bool = True) -> Iterator[Receiver]:
    receiver = Receiver(free_port(), keep=keep)
    if up:
        receiver.up()
    try:
        yield receiver
    finally:
        receiver.down()


def endpoint(name: str, receiver: Receiver, path: str = "", **settings: Any) -> dict[str, Any]:
    """A `notifications.endpoints` entry for the receiver (at `path` below its URL)."""
    return {"name": name, "url": receiver.url + path, "timeout": "2s", **settings}


def wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not in {timeout}s: {what}"
        time.sleep(0.05)
