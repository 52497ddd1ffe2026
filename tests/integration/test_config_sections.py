"""distribution's config sections beyond storage and http, on a real server: the health checks
(file, HTTP, TCP) holding the API at 503 and showing in /debug/health."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from tests.servers import free_port, moorage_config, run_moorage


class Downstream:
    """A real HTTP server a health check probes: answers HEAD with `status`, records headers."""

    def __init__(self) -> None:
        self.status = 204
        self.seen: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                owner.seen.append(dict(self.headers))
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/ping"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not {what} after {timeout}s")
        time.sleep(0.05)


def test_file_http_and_tcp_checks_hold_the_api_at_503_while_failing(tmp_path: Path) -> None:
    downstream = Downstream()
    listener = socket.create_server(("127.0.0.1", 0))
    tcp_addr = f"127.0.0.1:{listener.getsockname()[1]}"
    flag = tmp_path / "out-of-rotation"
    debug = f"127.0.0.1:{free_port()}"
    port = free_port()
    health = {
        "file": [{"file": str(flag), "interval": "100ms"}],
        "http": [
            {
                "uri": downstream.uri,
                "statuscode": 204,
                "headers": {"Authorization": ["Basic c2VjcmV0"]},
                "timeout": "2s",
                "interval": "100ms",
                "threshold": 2,
            }
        ],
        "tcp": [{"addr": tcp_addr, "timeout": "2s", "interval": "100ms", "threshold": 1}],
    }
    config = moorage_config(tmp_path / "data", port, health=health)
    config["http"] = {"debug": {"addr": debug}}
    try:
        with run_moorage(tmp_path, config, port=port) as server:

            def api() -> requests.Response:
                return requests.get(f"{server.url}/v2/", timeout=5)

            def debug_health() -> requests.Response:
                return requests.get(f"http://{debug}/debug/health", timeout=5)

            assert api().status_code == 200
            assert (debug_health().status_code, debug_health().json()) == (200, {})
            assert downstream.seen[0]["Authorization"] == "Basic c2VjcmV0"

            flag.write_text("")  # an operator takes the replica out
            wait_for(lambda: api().status_code == 503, "503 with the file present")
            response = api()
            assert response.json()["errors"][0]["code"] == "UNAVAILABLE"
            assert response.json()["errors"][0]["detail"] == {str(flag): "file exists"}
            assert debug_health().status_code == 503
            assert debug_health().json() == {str(flag): "file exists"}
            flag.unlink()
            wait_for(lambda: api().status_code == 200, "healthy with the file gone")

            downstream.status = 500
            wait_for(lambda: api().status_code == 503, "503 with the downstream failing")
            assert debug_health().json() == {
                downstream.uri: f"{downstream.uri}: downstream service returned unexpected "
                "status: 500"
            }
            downstream.status = 204
            wait_for(lambda: api().status_code == 200, "healthy with the downstream back")

            listener.close()
            wait_for(lambda: api().status_code == 503, "503 with the TCP peer gone")
            (name, error), *_ = debug_health().json().items()
            assert name == tcp_addr
            assert error.startswith(f"{tcp_addr}: connection failed:")
    finally:
        downstream.close()
        listener.close()


def test_an_http_check_below_its_threshold_keeps_the_api_up(tmp_path: Path) -> None:
    """threshold: 1000 failures in a row: the failing check never turns the API away."""
    downstream = Downstream()
    downstream.status = 500
    port = free_port()
    health = {"http": [{"uri": downstream.uri, "interval": "50ms", "threshold": 1000}]}
    try:
        with run_moorage(tmp_path, moorage_config(tmp_path / "data", port, health=health)) as (
            server
        ):
            wait_for(lambda: len(downstream.seen) >= 5, "probed five times")
            assert requests.get(f"{server.url}/v2/", timeout=5).status_code == 200
    finally:
        downstream.close()
