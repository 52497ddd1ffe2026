"""distribution's config sections beyond storage and http, on a real server: the health checks
(file, HTTP, TCP) holding the API at 503 and showing in /debug/health; the `redirect` and
`rewrite` storage middleware sending blob GETs where distribution 2.8 sends them, to a real web
server over the same files; the URLs layers may name (`validation.manifests.urls`), decided as
2.8 decides; the manifests an index must find (`validation.manifests.indexes`)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from tests.api import Client, error_codes, sha256
from tests.servers import free_port, moorage_config, run_moorage, run_reference_registry, stop


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


@contextlib.contextmanager
def file_server(directory: Path) -> Iterator[str]:
    """Python's own static web server over `directory`: the CDN in front of the files."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", directory],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _answers(base), "the file server answering")
        yield base
    finally:
        stop(process)


def _answers(base: str) -> bool:
    try:
        requests.get(base, timeout=1)
    except requests.RequestException:
        return False
    return True


def test_redirect_middleware_sends_blobs_under_baseurl_as_distribution_does(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    data = b"served by the web server in front" * 100
    with file_server(root) as base:
        middleware = {"storage": [{"name": "redirect", "options": {"baseurl": f"{base}/"}}]}
        config = moorage_config(root, free_port(), middleware=middleware)
        with run_moorage(tmp_path / "moorage", config) as server:
            client = Client(server.url)
            digest = client.push_blob("library/cdn", data)
            ours = client.request("GET", f"/v2/library/cdn/blobs/{digest}")
            with run_reference_registry(
                tmp_path / "distribution", root, middleware=middleware
            ) as reference:
                theirs = Client(reference.url).request("GET", f"/v2/library/cdn/blobs/{digest}")
        assert (ours.status_code, theirs.status_code) == (307, 307)
        assert ours.headers["Location"] == theirs.headers["Location"]
        hexdigest = digest.removeprefix("sha256:")
        assert ours.headers["Location"] == (
            f"{base}/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
        )
        assert requests.get(ours.headers["Location"], timeout=10).content == data


def test_rewrite_middleware_changes_scheme_host_and_prefix_of_the_url_before_it(
    tmp_path: Path,
) -> None:
    root = tmp_path / "data"
    data = b"rewritten to the web server" * 10
    with file_server(root) as base:
        middleware = {
            "storage": [
                {"name": "redirect", "options": {"baseurl": "https://cdn.invalid/prefix/"}},
                {
                    "name": "rewrite",
                    "options": {
                        "scheme": "http",
                        "host": base.removeprefix("http://"),
                        "trimpathprefix": "/prefix",
                    },
                },
            ]
        }
        with run_moorage(tmp_path, moorage_config(root, free_port(), middleware=middleware)) as (
            server
        ):
            client = Client(server.url)
            digest = client.push_blob("library/rewritten", data)
            response = client.request("GET", f"/v2/library/rewritten/blobs/{digest}")
        hexdigest = digest.removeprefix("sha256:")
        assert response.status_code == 307
        location = response.headers["Location"]
        blob = f"/docker/registry/v2/blobs/sha256/{hexdigest[:2]}/{hexdigest}/data"
        assert location == base + blob
        assert requests.get(location, timeout=10).content == data


def test_redirect_middleware_yields_to_storage_redirect_disable(tmp_path: Path) -> None:
    middleware = {"storage": [{"name": "redirect", "options": {"baseurl": "http://cdn.test/"}}]}
    root = tmp_path / "data"
    config = moorage_config(root, free_port(), middleware=middleware)
    config["storage"]["redirect"] = {"disable": True}
    with run_moorage(tmp_path, config) as server:
        client = Client(server.url)
        digest = client.push_blob("library/direct", b"straight from moorage")
        response = client.request("GET", f"/v2/library/direct/blobs/{digest}")
        assert (response.status_code, response.content) == (200, b"straight from moorage")


FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"


def foreign_manifest(client: Client, name: str, url: str) -> bytes:
    """A schema 2 manifest whose one layer is a foreign layer at `url` (not in the registry)."""
    config = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    digest = client.push_blob(name, config)
    layer = {"mediaType": FOREIGN, "size": 10, "digest": "sha256:" + "a" * 64, "urls": [url]}
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": SCHEMA2,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": len(config),
                "digest": digest,
            },
            "layers": [layer],
        }
    ).encode()


LAYER_URLS = [
    "https://mcr.example.com/layer",
    "https://mcr.example.com/blocked/layer",
    "https://elsewhere.example.org/layer",
    "ftp://mcr.example.com/layer",
    "https://mcr.example.com/layer#part",
]


def accepted(base: str, *, monolithic: bool = True) -> list[bool]:
    """For each of LAYER_URLS, whether a manifest with a foreign layer there is taken."""
    client = Client(base, monolithic=monolithic)
    verdicts = []
    for index, url in enumerate(LAYER_URLS):
        payload = foreign_manifest(client, "foreign/app", url)
        response = client.put_manifest("foreign/app", f"v{index}", payload, SCHEMA2)
        if response.status_code != 201:
            assert "MANIFEST_BLOB_UNKNOWN" in error_codes(response), response.text
        verdicts.append(response.status_code == 201)
    return verdicts


def test_layer_urls_are_filtered_as_distribution_filters_them(tmp_path: Path) -> None:
    """distribution 2.8 takes the same decision for each URL; where it refuses it answers 500
    with UNKNOWN beside MANIFEST_BLOB_UNKNOWN, moorage 400 with MANIFEST_BLOB_UNKNOWN."""
    urls = {"allow": [r"^https://mcr\.example\.com/"], "deny": [r"/blocked/"]}
    nothing = [False] * 5
    http_only = [True, True, True, False, False]
    for validation, expected in (
        ({}, nothing),  # the default: no URL passes
        ({"manifests": {"urls": urls}}, [True, False, False, False, False]),
        ({"disabled": True, "manifests": {"urls": urls}}, http_only),
        ({"enabled": True, "disabled": True}, nothing),  # the older switch wins
    ):
        work = tmp_path / str(len(list(tmp_path.iterdir())))
        config = moorage_config(work / "ours", free_port(), validation=validation)
        with run_moorage(work, config) as server:
            ours = accepted(server.url)
        with run_reference_registry(
            work / "theirs", work / "theirs-data", validation=validation
        ) as reference:
            theirs = accepted(reference.url, monolithic=False)
        assert ours == theirs == expected, validation


OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def test_index_children_required_as_validation_manifests_indexes_says(tmp_path: Path) -> None:
    """`all` (the default): every manifest an index names must be in the repository; `none`:
    none need be; `list`: those of the listed platforms."""
    amd = {"architecture": "amd64", "os": "linux"}
    arm = {"architecture": "arm64", "os": "linux"}
    cases = [
        ({}, [False, False]),
        ({"platforms": "all"}, [False, False]),
        ({"platforms": "none"}, [True, True]),
        ({"platforms": "list", "platformlist": [amd]}, [True, False]),
    ]
    for indexes, expected in cases:
        validation = {"manifests": {"indexes": indexes}} if indexes else {}
        work = tmp_path / str(len(list(tmp_path.iterdir())))
        config = moorage_config(work / "data", free_port(), validation=validation)
        with run_moorage(work, config) as server:
            client = Client(server.url)
            pushed = client.manifest("multi/app", b'{"a":1}', [b"amd64 layer"])
            assert client.put_manifest("multi/app", "amd", pushed).status_code == 201
            missing = client.manifest("multi/app", b'{"a":2}', [b"arm64 layer"])  # never put

            def index(*children: tuple[bytes, dict[str, str]]) -> bytes:
                return json.dumps(
                    {
                        "schemaVersion": 2,
                        "mediaType": OCI_INDEX,
                        "manifests": [
                            {
                                "mediaType": OCI_MANIFEST,
                                "digest": sha256(payload),
                                "size": len(payload),
                                "platform": platform,
                            }
                            for payload, platform in children
                        ],
                    }
                ).encode()

            arm_missing = index((pushed, amd), (missing, arm))
            amd_missing = index((missing, amd), (pushed, arm))
            taken = [
                client.put_manifest("multi/app", tag, body, OCI_INDEX).status_code == 201
                for tag, body in (("arm-missing", arm_missing), ("amd-missing", amd_missing))
            ]
        assert taken == expected, indexes
